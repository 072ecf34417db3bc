"""The HTTP server the prediction service runs under: uvicorn, with the bounds a service that binds its port itself
(``make serve``, ``make up-prod``) needs to hold against clients that connect and never finish a request.

uvicorn alone keeps a connection open for as long as its client sends a request line and headers slowly or not at
all (its keep-alive timeout starts only after a response), accepts connections until the process runs out of file
descriptors, and then the service can open no file either (the registry's store, ``rollout.json``). Here:

- at most ``max_connections`` connections are open (``MLOPS_SERVE_MAX_CONNECTIONS``; default 1000, or the
  process's open-file limit less ``FD_RESERVE`` where that is lower). At start the soft limit is raised to the
  hard one; a setting that leaves fewer than ``FD_RESERVE`` descriptors for files is refused. A new connection
  beyond the limit closes the connection that has waited longest for a request (its headers not complete, or idle
  between requests): connections that are busy are never closed, and a client that sends its request at once
  (``/health``, a scraper) gets in while idle ones are held. Only when every open connection is in a request is
  the new one refused, with a 503;
- a request's line and headers must be complete within ``header_timeout_s`` (``MLOPS_SERVE_HEADER_TIMEOUT_S``,
  10 s) of the connection's start or, on a kept-alive connection, of the request's first byte: else a 408 and
  the connection is closed; headers over ``max_header_bytes`` (64 KiB) get a 431;
- a request's body must be complete within ``body_timeout_s`` (``MLOPS_SERVE_BODY_TIMEOUT_S``, 60 s) of its
  headers: else a 408 and the connection is closed;
- a kept-alive connection with no new request for ``keepalive_s`` (``MLOPS_SERVE_KEEPALIVE_S``, 5 s) is closed.

Each connection closed or refused this way is counted in ``mlops_serve_connections_refused_total{reason}``
(``limit``, ``evicted``, ``header_timeout``, ``header_too_large``, ``body_timeout``, ``idle``), the open ones in
``mlops_serve_connections_open``. The access log never shows a query string (a token sent there by mistake
would be written in full): ``/predict?[query redacted]``.
"""

from __future__ import annotations

import asyncio
import logging
import resource
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from ..core.config import ServeSettings

DEFAULT_MAX_CONNECTIONS = 1000
DEFAULT_HEADER_TIMEOUT_S = ServeSettings.header_timeout_s
DEFAULT_KEEPALIVE_S = ServeSettings.keepalive_s
DEFAULT_BODY_TIMEOUT_S = ServeSettings.body_timeout_s
DEFAULT_MAX_HEADER_BYTES = 64 * 1024
FD_RESERVE = 256  # descriptors kept for files: the registry's store, rollout.json, models, the log writer, spills
REASONS = ("limit", "evicted", "header_timeout", "header_too_large", "body_timeout", "idle")

_REFUSED = b"HTTP/1.1 503 Service Unavailable\r\nretry-after: 1\r\nconnection: close\r\ncontent-length: 0\r\n\r\n"
_TIMED_OUT = b"HTTP/1.1 408 Request Timeout\r\nconnection: close\r\ncontent-length: 0\r\n\r\n"
_TOO_LARGE = b"HTTP/1.1 431 Request Header Fields Too Large\r\nconnection: close\r\ncontent-length: 0\r\n\r\n"

log = logging.getLogger("mlops.serving")


@dataclass(frozen=True)
class Limits:
    """How many connections the server holds and how long it waits for a request."""

    max_connections: int = DEFAULT_MAX_CONNECTIONS
    header_timeout_s: float = DEFAULT_HEADER_TIMEOUT_S
    keepalive_s: float = DEFAULT_KEEPALIVE_S
    body_timeout_s: float = DEFAULT_BODY_TIMEOUT_S
    max_header_bytes: int = DEFAULT_MAX_HEADER_BYTES

    def __post_init__(self):
        for name in ("max_connections", "header_timeout_s", "keepalive_s", "body_timeout_s", "max_header_bytes"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be above 0, got {getattr(self, name)!r}")

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, fd_limit: int | None = None) -> Limits:
        """The limits of the environment's settings (``core.config.ServeSettings``)."""
        return cls.of(ServeSettings.from_env(env), fd_limit)

    @classmethod
    def of(cls, settings: ServeSettings, fd_limit: int | None = None) -> Limits:
        """The limits of ``settings``; ``fd_limit``: the process's open-file limit (None: read it). Connections that
        would leave fewer than ``FD_RESERVE`` descriptors for files are a ValueError naming the variable, its value
        and the rule."""
        fd_limit = open_file_limit() if fd_limit is None else fd_limit
        room = fd_limit - FD_RESERVE
        if room < 1:
            raise ValueError(
                f"the process may open only {fd_limit} files (ulimit -n): the service keeps {FD_RESERVE} for files "
                "and needs more for connections; raise the limit"
            )
        max_connections = settings.max_connections or min(DEFAULT_MAX_CONNECTIONS, room)
        if max_connections > room:
            raise ValueError(
                f"MLOPS_SERVE_MAX_CONNECTIONS={max_connections} leaves fewer than {FD_RESERVE} of the process's "
                f"{fd_limit} file descriptors (ulimit -n) for files (the registry, rollout.json, the prediction log): "
                f"at most {room}, or raise the limit"
            )
        return cls(
            max_connections=max_connections,
            header_timeout_s=settings.header_timeout_s,
            keepalive_s=settings.keepalive_s,
            body_timeout_s=settings.body_timeout_s,
        )


def open_file_limit(raise_soft: bool = False) -> int:
    """The process's open-file limit (RLIMIT_NOFILE's soft limit); with ``raise_soft``, first raised to the hard
    limit, so that connections and files have all the room the system allows."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if raise_soft and soft != hard:
        target = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError) as exc:  # kept as it is: the limits are checked against what it is
            log.warning("could not raise the open-file limit from %s to %s: %s", soft, target, exc)
    return soft


class ConnectionGuard:
    """The server's connections, shared by their protocols (all on the event loop's thread): how many are open,
    which wait for a request (oldest first), and where a closed or refused one is counted."""

    def __init__(self, limits: Limits, dropped: Callable[[str], None] = lambda reason: None):
        self.limits, self._dropped = limits, dropped
        self.open = 0
        self.waiting: OrderedDict[Any, None] = OrderedDict()

    def dropped(self, reason: str) -> None:
        self._dropped(reason)

    def make_room(self) -> bool:
        """Room for one more connection: True at once below the limit, else after closing the connection that has
        waited longest for a request; False when every open connection is in a request."""
        while self.open >= self.limits.max_connections:
            if not self.waiting:
                return False
            oldest, _ = self.waiting.popitem(last=False)
            oldest.drop("evicted", None)
        return True


class GuardedProtocol:
    """Mixed in ahead of uvicorn's HTTP protocol (httptools' or h11's, as uvicorn would pick): the limit on open
    connections, the time and size a request's headers may take, the idle time between requests, counted."""

    guard: ConnectionGuard  # set on the class made for one server (``protocol_for``)

    def connection_made(self, transport) -> None:
        self._accepted = False
        self._timer: asyncio.TimerHandle | None = None  # the request's headers, then its body
        self._timer_for = None  # the request whose body is timed
        self._header_bytes = 0
        if not self.guard.make_room():
            self.transport = transport
            transport.write(_REFUSED)
            transport.close()
            self.guard.dropped("limit")
            return
        self._accepted = True
        self.guard.open += 1
        super().connection_made(transport)
        self._wait()
        self._time_headers()

    def data_received(self, data: bytes) -> None:
        if not self._accepted:
            return
        waiting = not self._busy()
        if waiting:
            self._time_headers()  # from the first byte of a request on a kept-alive connection
            self._header_bytes += len(data)
        super().data_received(data)
        if self._busy():  # a request's headers are complete: its body is timed, then it is answered
            self._header_bytes = 0
            self.guard.waiting.pop(self, None)
            if not self.cycle.more_body:
                self._stop_timer()
            elif self._timer_for is not self.cycle:
                self._stop_timer()
                self._timer_for = self.cycle
                self._timer = self.loop.call_later(self.guard.limits.body_timeout_s, self._body_late)
        elif waiting and self._header_bytes > self.guard.limits.max_header_bytes:
            self.drop("header_too_large", _TOO_LARGE)

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._stop_timer()  # its body no longer matters; the next request's headers are timed from its first byte
        if self._accepted and not self.transport.is_closing() and not self._busy():
            self._wait()  # idle until the next request: uvicorn's keep-alive timeout runs

    def timeout_keep_alive_handler(self) -> None:
        if self._accepted and not self.transport.is_closing():
            self._release()
            self.guard.dropped("idle")
        super().timeout_keep_alive_handler()  # closes it

    def connection_lost(self, exc: Exception | None) -> None:
        self._release()
        if self.flow is not None:  # a refused one never reached uvicorn's protocol
            super().connection_lost(exc)

    # ---------------------------------------------------------------------------------------------------------
    def drop(self, reason: str, answer: bytes | None) -> None:
        """Close the connection (with ``answer`` first, when given) and count it under ``reason``."""
        if not self._accepted:
            return
        self._release()
        if not self.transport.is_closing():
            if answer:
                self.transport.write(answer)
            self.transport.close()
        self.guard.dropped(reason)

    def _busy(self) -> bool:
        return self.cycle is not None and not self.cycle.response_complete

    def _wait(self) -> None:
        self.guard.waiting[self] = None
        self.guard.waiting.move_to_end(self)

    def _time_headers(self) -> None:
        if self._timer is None:
            self._header_bytes = 0
            self._timer_for = None
            self._timer = self.loop.call_later(self.guard.limits.header_timeout_s, self._headers_late)

    def _headers_late(self) -> None:
        self._timer = None
        if not self._busy():
            self.drop("header_timeout", _TIMED_OUT)

    def _body_late(self) -> None:
        self._timer = None
        if self._busy() and self.cycle is self._timer_for and self.cycle.more_body:
            self.drop("body_timeout", _TIMED_OUT)

    def _stop_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._timer_for = None

    def _release(self) -> None:
        self._stop_timer()
        self.guard.waiting.pop(self, None)
        if self._accepted:
            self._accepted = False
            self.guard.open -= 1


def protocol_for(guard: ConnectionGuard) -> type:
    """The HTTP protocol class of one server: uvicorn's own (httptools' when installed, else h11's), guarded."""
    from uvicorn.protocols.http.auto import AutoHTTPProtocol

    return type("Guarded" + AutoHTTPProtocol.__name__, (GuardedProtocol, AutoHTTPProtocol), {"guard": guard})


class RedactQuery(logging.Filter):
    """Drops the query string from uvicorn's access log lines (``"GET /path?... HTTP/1.1"``): the service reads
    none, and one could carry a secret."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple) and len(args) >= 3 and isinstance(args[2], str) and "?" in args[2]:
            record.args = (*args[:2], args[2].split("?", 1)[0] + "?[query redacted]", *args[3:])
        return True


def redact_access_log() -> None:
    access = logging.getLogger("uvicorn.access")
    if not any(isinstance(f, RedactQuery) for f in access.filters):
        access.addFilter(RedactQuery())


def make_server(app, host: str, port: int, limits: Limits, log_level: str = "info"):
    """A uvicorn server for ``app`` bounded by ``limits``; a closed or refused connection is counted in the app's
    metrics (``app.metrics``, when it has them)."""
    import uvicorn

    metrics = getattr(app, "metrics", None)
    guard = ConnectionGuard(limits, metrics.connection_refused if metrics is not None else lambda reason: None)
    if metrics is not None:
        metrics.count_open_connections(lambda: guard.open)
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level=log_level,
        http=protocol_for(guard),
        timeout_keep_alive=limits.keepalive_s,  # (the kernel's queue of connections not yet accepted, uvicorn's
        h11_max_incomplete_event_size=limits.max_header_bytes,  # backlog of 2048, holds no descriptor of ours)
    )
    redact_access_log()  # after the config: it sets up uvicorn's loggers
    return uvicorn.Server(config)
