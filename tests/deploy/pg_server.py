"""PostgreSQL for the deployment tests: the server at ``MLOPS_TEST_PG`` when one answers there, otherwise a
throw-away server of the tests' own, started from server binaries that came with the Python packages.

``ThrowawayPostgres`` runs ``initdb`` into a fresh temporary folder and ``pg_ctl start`` on 127.0.0.1 and a free
port (trust authentication, user ``postgres``, fsync off: nothing in it outlives the tests); ``stop()`` stops it,
waits until the server process is gone and removes the folder. Binaries, first found wins: ``MLOPS_TEST_PG_BIN``
(a folder holding ``initdb``, ``pg_ctl`` and ``postgres``), the ``pgserver`` package (requirements-dev.txt: it
ships PostgreSQL 16's binaries in its wheel), Debian's ``/usr/lib/postgresql/<version>/bin``. PostgreSQL refuses
to run as root, so as root the server runs as the ``postgres`` user, or ``nobody`` where there is none; binaries
that user cannot reach (a virtualenv under /root) are copied into the temporary folder first.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

DEFAULT_URL = "postgresql://postgres@127.0.0.1:5432"


class PostgresUnavailable(RuntimeError):
    """No server answers and none can be started here."""


def reachable(url: str, timeout_s: int = 3) -> str | None:
    """``None`` when a server at ``url`` (``postgresql://user@host:port``) accepts a connection, else why not."""
    import psycopg2

    try:
        psycopg2.connect(f"{url}/postgres", connect_timeout=timeout_s).close()
    except psycopg2.OperationalError as exc:
        return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return None


def server_binaries() -> Path | None:
    """The first folder with ``initdb``, ``pg_ctl`` and ``postgres`` (see the module's doc for the order)."""
    candidates: list[Path] = []
    if os.environ.get("MLOPS_TEST_PG_BIN"):
        candidates.append(Path(os.environ["MLOPS_TEST_PG_BIN"]))
    spec = importlib.util.find_spec("pgserver")  # located, not imported: importing it starts its own machinery
    if spec and spec.origin:
        candidates.append(Path(spec.origin).parent / "pginstall" / "bin")
    debian = Path("/usr/lib/postgresql")
    if debian.is_dir():
        versions = sorted((p for p in debian.iterdir() if p.name.isdigit()), key=lambda p: int(p.name), reverse=True)
        candidates += [p / "bin" for p in versions]
    for c in candidates:
        if all((c / exe).is_file() for exe in ("initdb", "pg_ctl", "postgres")):
            return c
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _alive(pid: int) -> bool:
    import psutil

    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


class ThrowawayPostgres:
    """One PostgreSQL server in a temporary folder, on 127.0.0.1; ``url`` like ``postgresql://postgres@…:port``."""

    def __init__(self, bindir: Path, host: str = "127.0.0.1"):
        self.bindir = Path(bindir)
        self.host = host
        self.port: int | None = None
        self.base: Path | None = None
        self.pid: int | None = None
        self.run_as: str | None = None
        self.start_s: float | None = None
        self.stop_s: float | None = None

    @property
    def url(self) -> str:
        return f"postgresql://postgres@{self.host}:{self.port}"

    @property
    def data_dir(self) -> Path:
        assert self.base is not None
        return self.base / "data"

    # running the binaries ----------------------------------------------------------------------------------
    def _user(self) -> pwd.struct_passwd | None:
        if os.geteuid() != 0:
            return None
        for name in ("postgres", "nobody"):
            try:
                return pwd.getpwnam(name)
            except KeyError:
                continue
        raise PostgresUnavailable(
            "running as root with neither a 'postgres' nor a 'nobody' user to run PostgreSQL as (it refuses root)"
        )

    def _run(self, exe: str, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
        user = self._user()
        ids = {"user": user.pw_uid, "group": user.pw_gid, "extra_groups": []} if user else {}
        env = {"PATH": f"{self.bindir}:/usr/bin:/bin", "LC_ALL": "C", "LANG": "C", "TZ": "UTC", "HOME": str(self.base)}
        # pg_ctl leaves the server running with the output handles it was given: files, never pipes
        with tempfile.TemporaryFile() as out:
            proc = subprocess.run(
                [str(self.bindir / exe), *args],
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=env,
                cwd=str(self.base),
                timeout=timeout,
                **ids,
            )
            out.seek(0)
            proc.stdout = out.read().decode(errors="replace")
        return proc

    def _usable_binaries(self) -> None:
        """As root: make sure the unprivileged user can run the binaries, copying them where it cannot."""
        if os.geteuid() != 0:
            return
        try:
            ok = self._run("initdb", "--version", timeout=30).returncode == 0
        except PermissionError:
            ok = False
        if not ok:
            install = self.bindir.parent  # e.g. site-packages/pgserver/pginstall
            package = install.parent
            copy = self.base / "pg"
            shutil.copytree(install, copy / package.name / install.name, symlinks=True)
            libs = package.parent / f"{package.name}.libs"  # a wheel's shared libraries, found by relative RPATH
            if libs.is_dir():
                shutil.copytree(libs, copy / libs.name, symlinks=True)
            for p in [copy, *copy.rglob("*")]:
                if not p.is_symlink():
                    mode = p.stat().st_mode
                    p.chmod(mode | (0o555 if p.is_dir() or mode & 0o100 else 0o444))
            self.bindir = copy / package.name / install.name / "bin"

    # lifecycle ---------------------------------------------------------------------------------------------
    def __enter__(self) -> ThrowawayPostgres:
        return self if self.pid else self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def start(self) -> ThrowawayPostgres:
        t0 = time.monotonic()
        self.base = Path(tempfile.mkdtemp(prefix="mlops-test-pg-"))
        user = self._user()
        if user:
            self.run_as = user.pw_name
            os.chown(self.base, user.pw_uid, user.pw_gid)
        self.base.chmod(0o755)
        try:
            self._usable_binaries()
            init = self._run(
                "initdb",
                "-D",
                str(self.data_dir),
                "-U",
                "postgres",
                "--auth=trust",
                "--encoding=UTF8",
                "--locale=C",
                "--no-sync",
            )
            if init.returncode != 0:
                raise PostgresUnavailable(f"initdb failed ({init.returncode}):\n{init.stdout[-2000:]}")
            for _attempt in range(3):  # a free port can be taken between choosing and binding it
                self.port = _free_port()
                opts = f"-h {self.host} -p {self.port} -k {self.base} -F -c max_connections=200"
                up = self._run(
                    "pg_ctl",
                    "-D",
                    str(self.data_dir),
                    "-l",
                    str(self.base / "postgres.log"),
                    "-w",
                    "-t",
                    "90",
                    "-o",
                    opts,
                    "start",
                )
                if up.returncode == 0:
                    break
            else:
                log = (
                    (self.base / "postgres.log").read_text(errors="replace")[-2000:]
                    if (self.base / "postgres.log").exists()
                    else ""
                )
                raise PostgresUnavailable(f"pg_ctl start failed ({up.returncode}):\n{up.stdout[-2000:]}\n{log}")
            self.pid = int((self.data_dir / "postmaster.pid").read_text().split()[0])
        except BaseException:
            self.stop()
            raise
        self.start_s = time.monotonic() - t0
        return self

    def stop(self) -> dict:
        """Stop the server (fast shutdown, then SIGKILL for a server that does not go) and remove its folder, once;
        returns what is left: the server's pid, whether it still runs, whether its folder still exists."""
        if self.stop_s is None:
            t0 = time.monotonic()
            if self.base is not None and (self.data_dir / "postmaster.pid").exists():
                self._run("pg_ctl", "-D", str(self.data_dir), "-m", "fast", "-w", "-t", "60", "stop")
            if self.pid is not None:
                deadline = time.monotonic() + 30
                while _alive(self.pid) and time.monotonic() < deadline:
                    time.sleep(0.2)
                if _alive(self.pid):
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(self.pid, signal.SIGKILL)
                    time.sleep(1)
            if self.base is not None:
                shutil.rmtree(self.base, ignore_errors=True)
            self.stop_s = time.monotonic() - t0
        return {
            "pid": self.pid,
            "port": self.port,
            "folder": str(self.base) if self.base else None,
            "run_as": self.run_as,
            "process_alive": bool(self.pid and _alive(self.pid)),
            "folder_exists": bool(self.base and self.base.exists()),
            "start_s": round(self.start_s, 1) if self.start_s else None,
            "stop_s": round(self.stop_s, 1),
        }


@contextlib.contextmanager
def postgres_for_tests(url: str | None = None) -> Iterator[tuple[str, ThrowawayPostgres | None]]:
    """``(url, None)`` when a server answers at ``url`` (default ``MLOPS_TEST_PG``, else 127.0.0.1:5432);
    otherwise ``(its url, server)`` for a throw-away server started here and removed on exit."""
    url = (url or os.environ.get("MLOPS_TEST_PG") or DEFAULT_URL).rstrip("/")
    why = reachable(url)
    if why is None:
        yield url, None
        return
    bindir = server_binaries()
    if bindir is None:
        raise PostgresUnavailable(
            f"PostgreSQL is not reachable at {url} ({why}) and no server binaries were found to start a "
            "throw-away one: `pip install -r requirements-dev.txt` (the pgserver package brings them), or "
            "`apt-get install postgresql`, or set MLOPS_TEST_PG_BIN to a folder with initdb, pg_ctl and postgres, "
            "or MLOPS_TEST_PG to a server that lets its user create databases"
        )
    server = ThrowawayPostgres(bindir).start()
    try:
        yield server.url, server
    finally:
        server.stop()
