"""The prediction log as the service sees it: requests hand over their flights and answers, a feeder thread sends
them to the writer process (``serve.logwriter``) over a pipe (``serve.protocol``) and keeps count of what it did;
the log's part of ``/health``."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import msgspec

from ..core.lake import Lake
from . import protocol
from .logwriter import Writer
from .protocol import Counters, Frame, Logged

log = logging.getLogger("mlops.serving")


class PredictionLog:
    """Writes prediction records to the lake in batches, without losing one and within a bounded memory, from a
    child process (``serve.logwriter``): building frames and writing Parquet never hold the requests' interpreter.

    A request hands over its flights and answers in one piece (``put``, a ``protocol.Logged``; ``fields``: the
    request fields the log keeps); a feeder thread sends what is there to the writer, one frame per round, and
    keeps each frame until the writer says it is written or spilled. At most ``max_rows`` rows wait (here or in the
    writer): beyond that a request's records go straight to the spill folder (``spill_dir``, local disk under
    MLOPS_HOME, 0700, its files 0600). When the lake refuses a flight date's write, the writer spills that date's
    rows and, until a retry of that date succeeds (after ``retry_s``, then with backoff), that date's later rows
    without trying the lake; the other dates keep going to the lake. It writes the spilled files of the dates due
    to the lake and removes them. Spilled files left by an earlier process are written the same way. When the
    writer dies, the frames it had not finished are spilled from here (counted in ``writer_crashes``, logged) and
    a new writer is started. ``close`` has the writer write what is left, or spill it when the lake still refuses;
    a writer stuck longer than the timeout is stopped and what it held is spilled from here. The writer reads its
    frames from a pipe: when the service dies, it writes what it holds and exits."""

    def __init__(
        self,
        lake: Lake,
        fields: Sequence[str],
        flush_rows: int = 500,
        flush_s: float = 5.0,
        max_rows: int = 100_000,
        spill_dir: Path | None = None,
        retry_s: float = 2.0,
    ):
        self.lake, self.flush_rows, self.flush_s, self.max_rows = lake, flush_rows, flush_s, max_rows
        self.fields = list(fields)
        self.spill_dir = Path(spill_dir) if spill_dir else Path(tempfile.mkdtemp(prefix="prediction-spill-"))
        self.retry_s = retry_s
        self._local = Writer(lake, self.spill_dir, retry_s)  # spills from here: overflow, a dead writer
        self._items: list[Logged] = []  # handed over by requests, not yet sent to the writer
        self._waiting = 0  # their rows
        self._wake = threading.Event()
        self.peak_pending = 0
        self.writer_crashes = 0
        self._queued = 0  # rows in memory here or in the writer, not yet written or spilled
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._encoder = msgspec.msgpack.Encoder()
        self._seq = 0
        # frames sent, not yet done: the bytes sent (compact while the writer holds them) and their rows
        self._unacked: dict[int, tuple[bytes, int]] = {}
        self._parts: set[tuple[int, str | None]] = set()  # (frame, flight date) done of frames not done whole
        self._gone = Counters()  # the writers' that are gone ...
        self._child = Counters()  # ... and the current one's
        self._refusing: list[str] = []  # the flight dates the lake refuses now (the writer says)
        self._proc: subprocess.Popen | None = None
        self._reader: threading.Thread | None = None
        self._start_at = 0.0
        self._start_writer()
        self._thread = threading.Thread(target=self._run, name="prediction-log", daemon=True)
        self._thread.start()

    # state ---------------------------------------------------------------------------------------------------------
    @property
    def pending(self) -> int:
        """Rows in memory, waiting to be written."""
        return self._queued

    @property
    def spilled(self) -> int:
        """Rows in the spill folder (claimed ones too: being written), waiting for the lake. The writer renames a
        file while it tries it (claimed) and back when the lake still refuses: the folder is listed for spilled,
        claimed and spilled files again, each file counted once, so that a rename between two listings neither
        hides a file nor counts it twice."""
        names = [f.name for f in self._local.spill_files()]
        names += [f.name for f in self.spill_dir.glob(protocol.CLAIM_GLOB)]
        names += [f.name for f in self._local.spill_files()]
        return protocol.spilled_rows(names)

    @property
    def counters(self) -> Counters:
        """What the writers did (those gone and the current one) and what was spilled from here."""
        return self._gone.plus(self._child).plus(self._local.counters)

    @property
    def written(self) -> int:
        return self.counters.written

    @property
    def spilled_total(self) -> int:
        return self.counters.spilled_total

    @property
    def lake_failures(self) -> int:
        return self.counters.lake_failures

    @property
    def lost(self) -> int:
        return self.counters.lost

    @property
    def refusing(self) -> list[str]:
        """The flight dates whose last write the lake refused (spilled, retried with backoff)."""
        return self._refusing

    def health(self) -> LogHealth:
        counters = self.counters
        return LogHealth(
            counters.written,
            self.pending,
            self.spilled,
            self.peak_pending,
            counters.lake_failures,
            list(self.refusing),
            counters.lost,
            self.writer_crashes,
        )

    # intake (request threads) ----------------------------------------------------------------------------------------
    def put(self, request: Logged) -> None:
        """One request's flights and answers."""
        n = len(request.keys)
        with self._lock:  # no thread wakes up per request: the feeder takes what is there when it comes round
            room = self._queued + n <= self.max_rows
            if room:
                self._queued += n
                self.peak_pending = max(self.peak_pending, self._queued)
                self._items.append(request)
                self._waiting += n
                if self._waiting >= self.flush_rows:
                    self._wake.set()
        if not room:  # memory is full: straight to local disk, never dropped, never blocking on the lake
            self._spill_here(lambda: protocol.records(Frame(0, self.fields, [request])), n)

    def _spill_here(self, rows: Callable[[], list[dict[str, Any]]], n: int) -> None:
        try:
            self._local.spill(rows())
        except OSError:  # the lake is behind and the local disk refuses too: the last resort, counted
            self._local.lost += n
            log.exception("could not spill %d prediction record(s): lost (%d so far)", n, self.lost)

    # the writer process ------------------------------------------------------------------------------------------
    def _start_writer(self) -> None:
        root = Path(__file__).resolve().parents[len(__package__.split("."))]
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(root), os.environ.get("PYTHONPATH")]))}
        config = {
            "lake": self.lake.url,
            "spill_dir": str(self.spill_dir),
            "retry_s": self.retry_s,
            "flush_rows": self.flush_rows,
            "flush_s": self.flush_s,
        }
        self._start_at = time.monotonic() + self.retry_s  # a writer that keeps dying: a new one at most this often
        try:
            proc = subprocess.Popen(
                [sys.executable, "-m", f"{__package__}.logwriter", json.dumps(config)],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                env=env,
            )
        except OSError:
            log.exception("could not start the prediction log's writer; records wait in memory (then spill)")
            return
        self._child = Counters()
        self._proc = proc
        self._reader = threading.Thread(target=self._read, args=(proc,), name="prediction-log-acks", daemon=True)
        self._reader.start()

    def _read(self, proc: subprocess.Popen) -> None:
        """The writer's acknowledgements; at their end (the writer exited), what it did not finish is spilled."""
        while (data := protocol.receive(proc.stdout)) is not None:
            ack = protocol.decode_ack(data)
            with self._lock:
                self._child, self._refusing = ack.counters, ack.refusing
                self._parts.update(ack.parts)
                for seq in ack.seqs:
                    _, n = self._unacked.pop(seq)
                    self._queued -= n
                    self._parts = {p for p in self._parts if p[0] != seq}
        code = proc.wait()
        with self._lock:
            unacked, parts = self._unacked, self._parts
            self._unacked, self._parts = {}, set()
            self._gone, self._child, self._refusing = self._gone.plus(self._child), Counters(), []
            self._proc = None
        n = sum(rows for _, rows in unacked.values())
        if not unacked and code == 0 and self._stop.is_set():
            return
        if not self._stop.is_set():
            self.writer_crashes += 1
        # the frames the writer did not finish, from the bytes it was sent, less the flight dates it did
        left = [
            r
            for seq, (payload, _) in sorted(unacked.items())
            for r in protocol.records(protocol.decode_frame(payload))
            if (seq, r[protocol.date_field()]) not in parts
        ]
        log.error(
            "the prediction log's writer exited (code %s) with %d record(s) not written: spilling %d from the "
            "service (%d part(s) it had finished)",
            code,
            n,
            len(left),
            n - len(left),
        )
        self._spill_here(lambda: left, len(left))
        with self._lock:
            self._queued -= n
        self._wake.set()

    def _send(self, proc: subprocess.Popen, items: list[Logged], n: int) -> None:
        self._seq += 1
        payload = self._encoder.encode(Frame(self._seq, self.fields, items))
        with self._lock:
            if self._proc is not proc:  # the writer is gone meanwhile: for the next one
                self._items[:0] = items
                self._waiting += n
                return
            self._unacked[self._seq] = (payload, n)  # from here on, the reader answers for it
        try:
            protocol.write(proc.stdin, payload)
        except (OSError, ValueError):  # the writer is gone: its reader spills what it did not finish
            pass

    def _run(self) -> None:
        while True:
            stopping = self._stop.is_set()
            self._wake.wait(min(0.2, self.flush_s))
            self._wake.clear()
            if self._proc is None and not stopping and time.monotonic() >= self._start_at:
                self._start_writer()
            proc = self._proc
            if proc is not None:
                items, n = self._take()
                if items:
                    self._send(proc, items, n)
            if stopping:
                break
        proc = self._proc
        if proc is not None:
            try:
                proc.stdin.close()  # the end of input: the writer writes what it holds and exits
            except OSError:
                pass

    def _take(self) -> tuple[list[Logged], int]:
        with self._lock:
            items, n = self._items, self._waiting
            self._items, self._waiting = [], 0
        return items, n

    def close(self, timeout: float = 30) -> None:
        """Write what is queued (spill it when the lake refuses), then stop. When the writer is stuck longer than
        ``timeout`` (a lake that hangs), it is stopped and what it had not finished is spilled from here."""
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout)
        proc, reader = self._proc, self._reader
        if proc is not None:
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                log.warning("the prediction log's writer did not finish in %.0f s: stopping it", timeout)
                proc.kill()
            if reader is not None:
                reader.join(timeout)
        items, n = self._take()  # never sent (no writer): spilled from here
        if items:
            self._spill_here(lambda: protocol.records(Frame(0, self.fields, items)), n)
            with self._lock:
                self._queued -= n
            log.warning("%d prediction record(s) never reached the writer: spilled to %s", n, self.spill_dir)


class LogHealth(NamedTuple):
    """The prediction log's part of ``/health`` (all nothing before the log is started)."""

    logged: int = 0  # records written to the lake
    pending_log: int = 0  # records waiting in memory
    spilled_log: int = 0  # records in the spill folder, waiting for the lake
    log_peak_pending: int = 0
    log_lake_failures: int = 0  # writes the lake refused
    log_refused_dates: list[str] = []  # flight dates whose last write the lake refused
    log_lost: int = 0
    log_writer_crashes: int = 0

    def reasons(self) -> list[str]:
        """Why the log is behind (empty: it keeps up): flight dates the lake refuses, records in the spill folder."""
        reasons = []
        refusing = self.log_refused_dates
        if refusing:
            reasons.append(
                f"the lake refuses prediction records of flight date(s) {', '.join(refusing[:10])}"
                + (f" and {len(refusing) - 10} more" if len(refusing) > 10 else "")
                + f": spilled, retried with backoff ({self.log_lake_failures} refused write(s) so far)"
            )
        if self.spilled_log:
            reasons.append(f"{self.spilled_log} prediction record(s) in the spill folder, waiting for the lake")
        return reasons


def default_spill_dir(lake: Lake) -> Path:
    """Where the prediction log spills while the lake refuses writes: local disk under MLOPS_HOME, one folder per
    lake (records spilled for one lake are never written to another)."""
    from ..core.config import Settings

    key = hashlib.sha256(lake.url.encode()).hexdigest()[:16]
    return Settings.from_env().home / "serve" / "prediction-spill" / key
