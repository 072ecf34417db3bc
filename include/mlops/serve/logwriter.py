"""The prediction log's writer: a child process of the service that turns the requests' records into Parquet in
the lake, spills to local disk while the lake refuses and writes the spilled files once it takes them again.

It runs out of the serving interpreter so that building frames and writing Parquet never hold the requests' GIL.
The service (``logclient.PredictionLog``) sends it frames on its stdin and reads its acknowledgements on its
stdout (``serve.protocol``: the frames, the acknowledgements and the spill files' names).

The lake is judged per flight date: a date whose write is refused (its folder unwritable, say) is spilled and
retried with backoff (``retry_s``, doubling after each refusal in a row, at most ``BACKOFF`` times ``retry_s``),
while the other dates keep going to the lake at once. A spill file holds one flight date (its name says which),
so that the replay of a refused date never holds back another's.

What is spilled holds requests' features: the spill folder is 0700 and its files 0600 whatever the umask.

End of input (the service closed the pipe, or died) writes what is held, or spills it, and exits: the writer
never outlives the service by more than its last flush.

    python -m include.mlops.serve.logwriter '{"lake": URL, "spill_dir": DIR, ...}'   # started by the service
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import stat
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import msgspec
import numpy as np

from ..core import layout
from ..core.lake import Lake
from . import protocol
from .protocol import SEQ, Ack, Counters

log = logging.getLogger("mlops.serving")

BACKOFF = 32  # a refused flight date waits retry_s, then twice that after each refusal in a row, at most this times
RECOVER_FILES = 20  # spill files written back per round


# private files -------------------------------------------------------------------------------------------------
def private_dir(path: Path) -> None:
    """Make ``path`` (and its parents) and leave it readable by its owner only (0700), whatever the umask; a folder
    that exists with a wider mode is narrowed."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    if stat.S_IMODE(path.stat().st_mode) != 0o700:
        path.chmod(0o700)


def write_private(path: Path, data: bytes) -> None:
    """A new file only its owner may read (0600, whatever the umask), written and synced."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o600)
    try:
        os.fchmod(fd, 0o600)  # the umask may have taken more than group and others
        with os.fdopen(fd, "wb") as f:
            fd = -1
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
    finally:
        if fd >= 0:
            os.close(fd)


def _frame(frames: list, fresh: list[dict]):
    """One DataFrame of the frames left over and the columns taken: lists joined first, one frame built."""
    import pandas as pd

    groups: list[dict] = []
    for cols in fresh:
        if groups and list(groups[-1]) == list(cols):
            for c, v in cols.items():
                groups[-1][c].append(v)
        else:
            groups.append({c: [v] for c, v in cols.items()})
    for g in groups:
        frames.append(
            pd.DataFrame(
                {c: np.concatenate(v) if c == "score" else [x for part in v for x in part] for c, v in g.items()}
            )
        )
    return frames[0] if len(frames) == 1 else pd.concat(frames, ignore_index=True)


# the writer ----------------------------------------------------------------------------------------------------------
class Writer:
    """Writes records to the lake by flight date; what the lake refuses goes to the spill folder, one file per
    flight date. A refused date is tried again after ``retry_s``, doubling after each refusal in a row (at most
    ``BACKOFF`` times): it never holds back the other dates. Used in the child process, and by the service itself
    for spilling (``spill``) when memory is full or the child is gone."""

    def __init__(self, lake: Lake, spill_dir: Path, retry_s: float = 2.0):
        self.lake, self.spill_dir, self.retry_s = lake, Path(spill_dir), retry_s
        try:
            private_dir(self.spill_dir)
        except OSError:  # each spill says so (and counts what it loses)
            log.exception("the spill folder %s cannot be made", self.spill_dir)
        self.written = 0  # rows written to the lake
        self.spilled_total = 0  # rows ever spilled to local disk
        self.lake_failures = 0
        self.lost = 0  # rows neither written nor spilled (the lake and the local disk both refused)
        self._spill_lock = threading.Lock()
        self._refused: dict[str, tuple[float, float]] = {}  # flight date -> (when to try it again, the wait)
        self._recover_at = 0.0  # when to look at the spill folder again
        self.maybe_spilled = bool(self.spill_files())

    @property
    def counters(self) -> Counters:
        return Counters(self.written, self.spilled_total, self.lake_failures, self.lost)

    @property
    def refusing(self) -> list[str]:
        """The flight dates the lake refused at their last try."""
        return sorted(self._refused)

    def due(self, date) -> bool:
        """Whether the lake may be tried with this flight date now (never refused, or its wait is over)."""
        refused = self._refused.get(date)
        return refused is None or time.monotonic() >= refused[0]

    def flush(self, df, done) -> Any:
        """Write ``df`` (with ``_seq``) to the lake by flight date, spilling what the lake refuses; ``done(seqs,
        date)`` after each part. Returns the part that could go to neither (the local disk refused too), or None."""
        import pandas as pd

        left = []
        for date, part in df.groupby(protocol.date_field()):
            seqs = part[SEQ].unique().tolist()
            rows = part.drop(columns=SEQ)
            if self.due(date):  # a refused date waits for its retry; the others go to the lake at once
                try:
                    self.write(rows)
                    done(seqs, date)
                    continue
                except Exception as exc:  # never lose the service, nor a record, over the log
                    self.refused(date, exc)
            try:
                self.spill(rows.to_dict(orient="records"))
                done(seqs, date)
            except OSError:
                log.exception("could not spill %d prediction record(s); keeping them in memory", len(part))
                left.append(part)
        return pd.concat(left, ignore_index=True) if left else None

    def write(self, part, name: str | None = None) -> None:
        """One flight date's rows to the lake; ``name``: the Parquet file's (a spill file's own, so that writing
        the same spill file again replaces its part instead of adding one)."""
        date = part[protocol.date_field()].iloc[0]
        name = name or f"part-{dt.datetime.now(dt.UTC):%Y%m%dT%H%M%S%f}-{uuid.uuid4().hex[:8]}.parquet"
        self.lake.write_parquet(part.reset_index(drop=True), layout.predictions(date), name)
        self.written += len(part)
        if self._refused.pop(date, None) is not None:
            log.info("the lake takes prediction records of flight date %s again", date)

    def refused(self, date, exc: Exception) -> None:
        """The lake refused a write of ``date``: its next try waits, twice as long as the last time."""
        self.lake_failures += 1
        wait = self._refused.get(date, (0.0, 0.0))[1]
        first = not wait
        wait = min(wait * 2, self.retry_s * BACKOFF) if wait else self.retry_s
        self._refused[date] = (time.monotonic() + wait, wait)
        if first:  # once per outage of the date; the count is in /health (log_lake_failures)
            log.warning(
                "the lake refuses prediction records of flight date %s (%s: %s): spilling them to %s, retrying "
                "after %.1f s, then with backoff (the other dates go on)",
                date,
                type(exc).__name__,
                str(exc)[:200],
                self.spill_dir,
                wait,
            )

    # the spill folder ------------------------------------------------------------------------------------------------
    def spill_files(self) -> list[Path]:
        return sorted(self.spill_dir.glob(protocol.SPILL_GLOB))

    def spill(self, rows: list[dict[str, Any]]) -> None:
        """``rows`` to the spill folder, one file per flight date (0600), all of them or none (OSError)."""
        if not rows:
            return
        by_date: dict[Any, list] = {}
        for r in rows:
            by_date.setdefault(r.get(protocol.date_field()), []).append(r)
        with self._spill_lock:
            made: list[tuple[Path, Path]] = []
            try:
                for date, part in by_date.items():
                    name = protocol.spill_name(date, len(part))
                    tmp = self.spill_dir / f".{name}.tmp"
                    write_private(tmp, b"\n".join(msgspec.json.encode(r) for r in part))
                    made.append((tmp, self.spill_dir / name))
            except OSError:
                for tmp, _ in made:
                    tmp.unlink(missing_ok=True)
                raise
            for tmp, name in made:
                tmp.rename(name)  # whole or absent: a reader never sees half a file
            self.spilled_total += len(rows)
            self.maybe_spilled = True

    def adopt_orphans(self) -> None:
        """Files claimed by a process that is gone (it stopped while writing them) are spilled files again."""
        for f in self.spill_dir.glob(protocol.CLAIM_GLOB):
            claim = protocol.claimed(f.name)
            if claim is None:
                continue
            name, pid = claim
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                f.rename(self.spill_dir / name)
            except PermissionError:
                pass

    def recover_if_due(self) -> None:
        """At most once a second (or ``retry_s``): the spilled files whose dates are due, to the lake."""
        if time.monotonic() < self._recover_at:
            return
        self._recover_at = time.monotonic() + min(self.retry_s, 1.0)
        if not self.maybe_spilled:  # spilled by the service itself meanwhile?
            self.maybe_spilled = bool(self.spill_files())
        if self.maybe_spilled:
            try:
                self.recover()
            except Exception:  # noqa: BLE001 - the writer must outlive any one file
                log.exception("could not write spilled prediction records; retrying later")

    def recover(self, every_date: bool = False) -> None:
        """The oldest spilled files of the dates due (``every_date``: of every date, waits or not) to the lake,
        each removed once written. A refused date stays spilled and waits for its retry; the other dates go on.
        A file is claimed first (renamed), so that two processes logging to the same lake never write it twice;
        its Parquet parts are named after it, so that writing it again (a process stopped before removing it)
        replaces them instead of adding rows twice."""
        import pandas as pd

        if every_date:
            self._refused = {d: (0.0, wait) for d, (_, wait) in self._refused.items()}
        self.maybe_spilled = False  # before listing: a file spilled meanwhile sets it again
        files = self.spill_files()
        taken = 0
        for spilled in files:
            named = protocol.spilled(spilled.name)
            date = named.date if named else None
            if (date is not None and not self.due(date)) or taken >= RECOVER_FILES:
                self.maybe_spilled = True  # waits for its date's retry, or for the next round
                continue
            taken += 1
            f = self.spill_dir / protocol.claim_name(spilled.name, os.getpid())
            try:
                spilled.rename(f)
            except FileNotFoundError:
                continue  # another process took it
            rows = [msgspec.json.decode(line) for line in f.read_bytes().splitlines() if line]
            keep, written = [], 0
            for day, part in pd.DataFrame(rows).groupby(protocol.date_field()):
                if self.due(day):
                    try:
                        self.write(part, f"part-{spilled.stem}-{day}.parquet")
                        written += len(part)
                        continue
                    except Exception as exc:  # still refused: this date waits, the others go on
                        self.refused(day, exc)
                keep.append(part)
            if keep:
                self.maybe_spilled = True
                if not written and date is not None:  # nothing of it written: the file goes back as it was
                    f.rename(spilled)
                    continue
                # the refused dates of a file of several: spilled again, one file each (the written parts are
                # not in them); should that fail, the file goes back whole and its parts are replaced next time
                try:
                    self.spill(pd.concat(keep).to_dict(orient="records"))
                except OSError:
                    f.rename(spilled)
                    raise
            f.unlink()
            log.info("wrote %d spilled prediction record(s) from %s to the lake", written, spilled.name)


# the child process ---------------------------------------------------------------------------------------------------
def run(config: dict[str, Any], inp, out) -> None:
    """Read frames until the end of input; write them every ``flush_rows`` rows or ``flush_s`` seconds."""

    writer = Writer(Lake(config["lake"]), Path(config["spill_dir"]), config["retry_s"])
    writer.adopt_orphans()
    flush_rows, flush_s = config["flush_rows"], config["flush_s"]
    frames: list = []
    cond = threading.Condition()
    eof = threading.Event()

    def reader() -> None:
        while (data := protocol.receive(inp)) is not None:
            frame = protocol.decode_frame(data)
            with cond:
                frames.append(frame)
                cond.notify()
        eof.set()
        with cond:
            cond.notify()

    threading.Thread(target=reader, name="prediction-log-reader", daemon=True).start()
    held = None  # a frame of rows that could be neither written nor spilled last time
    fresh: list[dict] = []  # the columns of the frames taken since the last flush
    rows = 0  # rows held and fresh
    dates: dict[int, set] = {}  # per frame taken: its flight dates not yet done
    last, sent = time.monotonic(), None
    gone = threading.Event()  # the service reads no more acknowledgements (it died): the writing goes on

    def tell(parts: list[tuple[int, str | None]], seqs: list[int]) -> None:
        if not gone.is_set():
            try:
                protocol.send(out, Ack(parts, seqs, writer.counters, writer.refusing))
            except OSError:
                gone.set()

    def done(seqs, date) -> None:
        finished = []
        for s in seqs:
            left = dates.get(s, set())
            left.discard(date)
            if not left:
                dates.pop(s, None)
                finished.append(s)
        tell([(s, date) for s in seqs], finished)

    while True:
        with cond:
            if not frames and not eof.is_set():
                cond.wait(min(0.2, flush_s))
            stopping = eof.is_set()  # read before taking: every frame came before the end of input
            taken, frames[:] = list(frames), []
        for frame in taken:
            cols = protocol.columns(frame)
            if not cols[SEQ]:  # an empty frame: done at once
                dates[frame.seq] = {None}
                done([frame.seq], None)
                continue
            dates[frame.seq] = set(cols[protocol.date_field()])
            fresh.append(cols)
            rows += len(cols[SEQ])
        if rows and (rows >= flush_rows or time.monotonic() - last >= flush_s or stopping):
            held = _frame(([held] if held is not None else []), fresh)  # one frame per flush, not per round
            fresh, rows = [], 0
            held, last = writer.flush(held, done), time.monotonic()
            if held is not None:
                rows = len(held)
                if stopping:  # nowhere to put them: say so
                    writer.lost += len(held)
                    log.error("%d prediction record(s) could be neither written nor spilled: lost", len(held))
                    for date, part in held.groupby(protocol.date_field()):
                        done(part[SEQ].unique().tolist(), date)
                    held, rows = None, 0
                else:
                    time.sleep(1.0)
        writer.recover_if_due()
        if (writer.counters, writer.refusing) != sent:
            tell([], [])
            sent = (writer.counters, writer.refusing)
        if stopping and not rows:
            break
    if writer.maybe_spilled:
        try:
            writer.recover(every_date=True)  # a last try of every date, waiting or not
        except Exception:  # noqa: BLE001
            log.exception("could not write spilled prediction records; the next start will")
    tell([], [])


def main() -> None:
    import gc

    import pandas  # noqa: F401 - imported before the first frame, and frozen with the rest

    gc.collect()
    gc.freeze()  # what the imports made is never garbage: the collector never walks it
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    config = json.loads(sys.argv[1])
    acks = os.fdopen(os.dup(1), "wb")  # the acknowledgements' own descriptor: a stray print cannot corrupt them
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    run(config, sys.stdin.buffer, acks)


if __name__ == "__main__":
    main()
