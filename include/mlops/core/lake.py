"""One path API over the lake, for ``file://`` and ``s3://`` alike (fsspec underneath).

Every write is whole or absent (see ``write_bytes``); every path is checked to stay under the root. Where things
are in the lake is ``core.layout``'s knowledge, not this module's.

The Airflow adapter (``plugins/mlops_airflow/blocks/connections.py``) hands in a filesystem built from the ``aws_default``
connection; outside Airflow the filesystem comes from the URL and the usual AWS environment variables.
"""

from __future__ import annotations

import datetime as dt
import io
import json
import os
import posixpath
import re
import uuid
from collections.abc import Iterable
from typing import Any

import fsspec
from fsspec.implementations.local import LocalFileSystem

TEMP_PREFIX = "."  # files being written are hidden (``.<name>.<uuid>.tmp``) until renamed into place
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


class UnsafePath(ValueError):
    """A lake path that is empty, ``.``/``..``, absolute, or would leave the lake's root."""


def as_date(value: dt.date | str) -> dt.date:
    """A date from ``YYYY-MM-DD`` or an ISO timestamp (its date part); anything else is refused, trailing text
    included."""
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    text = str(value).strip()
    try:
        if _DATE.match(text):
            return dt.date.fromisoformat(text)
        if len(text) > 10 and text[10] in "T ":
            return dt.datetime.fromisoformat(text.replace("Z", "+00:00")).date()
    except ValueError:
        pass
    raise ValueError(f"not a date (YYYY-MM-DD): {value!r}")


_RUN_KEY = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.=-]{0,199}$")


def run_key(run_id: str) -> str:
    """The lake-safe key of an Airflow run id (``manual__2013-01-02T00:00:00+00:00`` ->
    ``manual__2013-01-02T0000000000``): ``:`` and ``+`` dropped, then checked to be one plain path segment.
    Raises ``UnsafePath`` for anything else (``.``, ``..``, empty, a slash, ...)."""
    key = str(run_id).replace(":", "").replace("+", "")
    if not _RUN_KEY.match(key) or key in (".", ".."):
        raise UnsafePath(
            f"run id {run_id!r} does not make a safe lake key (letters, digits, '_', '.', '=', '-'; "
            "starting with a letter or digit; at most 200 characters)"
        )
    return key


def segments(*parts: str) -> list[str]:
    """The path segments of ``parts`` (each may hold several, separated by ``/``), checked one by one: none may
    be empty, ``.`` or ``..``, and the first may not be absolute. Raises ``UnsafePath``."""
    out: list[str] = []
    for i, part in enumerate(parts):
        text = str(part)
        if i == 0 and text.startswith("/"):
            raise UnsafePath(f"absolute path {text!r}: lake paths are relative to its root")
        for seg in text.split("/"):
            if seg in ("", ".", ".."):
                raise UnsafePath(
                    f"unsafe lake path {'/'.join(map(str, parts))!r}: segment {seg!r} (empty, '.' and '..' are refused)"
                )
            if "\x00" in seg:
                raise UnsafePath(f"unsafe lake path segment {seg!r}")
        out.extend(text.split("/"))
    return out


class Lake:
    """The data lake rooted at ``url``; every path argument is relative to that root."""

    def __init__(self, url: str, fs: fsspec.AbstractFileSystem | None = None, **storage_options: Any):
        self.url = url.rstrip("/")
        if fs is None:
            fs, root = fsspec.core.url_to_fs(self.url, **storage_options)
        else:
            root = fs._strip_protocol(self.url)
        if isinstance(fs, LocalFileSystem):
            fs = LocalFileSystem(auto_mkdir=True)
        self.fs = fs
        self.root = str(root).rstrip("/")
        self.scheme = self.url.split("://", 1)[0] if "://" in self.url else "file"

    def __repr__(self) -> str:
        return f"Lake({self.url!r})"

    # paths -------------------------------------------------------------------------------------------------
    def path(self, *parts: str) -> str:
        """The filesystem path of ``parts`` under the root; every path stays under the root (``UnsafePath``)."""
        segs = segments(*parts)
        path = posixpath.join(self.root, *segs) if segs else self.root
        if path != self.root and not path.startswith(self.root.rstrip("/") + "/"):
            raise UnsafePath(f"{'/'.join(segs)!r} is outside the lake root {self.root!r}")
        return path

    def uri(self, *parts: str) -> str:
        """The full URL of a path, for people and reports (``file:///...`` or ``s3://...``)."""
        segs = segments(*parts)
        return posixpath.join(self.url, *segs) if segs else self.url

    # queries -----------------------------------------------------------------------------------------------
    def exists(self, *parts: str) -> bool:
        return self.fs.exists(self.path(*parts))

    def ls(self, *parts: str) -> list[str]:
        """Names (not paths) directly under a folder; empty when the folder is absent."""
        base = self.path(*parts)
        try:
            entries = self.fs.ls(base, detail=False, refresh=True) if self._is_s3 else self.fs.ls(base, detail=False)
        except FileNotFoundError:
            return []
        names = (posixpath.basename(str(e).rstrip("/")) for e in entries if str(e).rstrip("/") != base)
        return sorted(n for n in names if not n.startswith(TEMP_PREFIX))  # never a file still being written

    # bytes, text, json -------------------------------------------------------------------------------------
    def read_bytes(self, *parts: str) -> bytes:
        return self.fs.cat_file(self.path(*parts))

    def write_bytes(self, data: bytes, *parts: str) -> str:
        """Write a whole file; a reader sees the old content or the new, never a part of it.

        On ``file://`` the bytes go to a hidden temporary name in the same folder (flushed to disk), then are
        renamed over the final name; a write cut short leaves the old file untouched. On S3 a single-object
        upload is atomic by itself.
        """
        path = self.path(*parts)
        if self._is_local:
            _atomic_local_write(path, data)
        else:
            self.fs.pipe_file(path, data)
        self._invalidate(path)
        return path

    def create(self, data: bytes, *parts: str) -> str:
        """Write a new file only if nothing is there yet, atomically: one of two writers of the same path wins, the
        other gets ``FileExistsError`` naming the path, and the file already there keeps its bytes. A reader sees
        the whole file or none, never a part of it. Returns the path written.

        On ``file://`` the bytes go to a hidden temporary name in the same folder (written and flushed to disk),
        which is then hard-linked to the final name: ``link`` fails when the final name exists, and the final
        name appears with its whole content at once. (``O_CREAT|O_EXCL`` on the final name would be exclusive
        too, but the file would be visible, partly written, while it is being written, and one cut short would
        stay there half done.) A filesystem without hard links makes this an ``OSError``: there is no
        fallback that would give up either property.

        On S3 the object is put with ``If-None-Match: *``, a conditional put (AWS S3 since August 2024, MinIO;
        the tests' moto server honours it, ``tests/integration/test_audit_s3.py``, though moto checks and puts
        without a lock, so two truly simultaneous puts could both succeed there: AWS decides atomically). The
        server's 412 ``PreconditionFailed``, or its 409 ``ConditionalRequestConflict`` (another conditional
        write of the key in flight, which may still fail), is the ``FileExistsError``. A store that ignored the
        header would overwrite silently: use only one that honours it. ``FileExistsError`` on S3 may also come
        from a request the client retried after a first try that did write: a caller that must know whose bytes
        are there reads them back. Other filesystems are refused (``NotImplementedError``): no exclusive create
        is known there.
        """
        import errno

        path = self.path(*parts)
        taken = f"the lake already holds {self.uri(*parts)}"
        if self._is_local:
            folder, name = posixpath.split(path)
            os.makedirs(folder, exist_ok=True)
            tmp = posixpath.join(folder, f"{TEMP_PREFIX}{name}.{uuid.uuid4().hex}.tmp")
            try:
                fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
                with os.fdopen(fd, "wb") as fh:
                    fh.write(data)
                    fh.flush()
                    os.fsync(fh.fileno())
                try:
                    os.link(tmp, path)  # fails if the name exists; the name appears with its whole content at once
                except FileExistsError:
                    raise FileExistsError(errno.EEXIST, taken, path) from None
            finally:
                try:
                    os.unlink(tmp)
                except FileNotFoundError:
                    pass
            dirfd = os.open(folder, os.O_RDONLY)
            try:
                os.fsync(dirfd)  # the new name, durable
            finally:
                os.close(dirfd)
        elif self._is_s3:
            try:
                self.fs.pipe_file(path, data, mode="create")
            except Exception as exc:
                self._invalidate(path)
                cause = exc if hasattr(exc, "response") else exc.__cause__
                code = (getattr(cause, "response", None) or {}).get("Error", {}).get("Code")
                if isinstance(exc, FileExistsError) or code in ("PreconditionFailed", "ConditionalRequestConflict"):
                    raise FileExistsError(errno.EEXIST, taken, path) from exc
                raise
        else:
            raise NotImplementedError(f"no exclusive create on {self.scheme}:// ({self.url})")
        self._invalidate(path)
        return path

    def read_json(self, *parts: str) -> Any:
        return json.loads(self.read_bytes(*parts))

    def write_json(self, obj: Any, *parts: str) -> str:
        return self.write_bytes(json.dumps(obj, indent=2, sort_keys=True, default=str).encode(), *parts)

    def touch(self, *parts: str) -> str:
        return self.write_bytes(b"", *parts)

    # whole folders -----------------------------------------------------------------------------------------
    def rm(self, *parts: str) -> None:
        """Remove a file or a folder with everything under it; absent is fine."""
        if not parts:
            raise UnsafePath("refusing to remove the whole lake")
        path = self.path(*parts)
        if self.fs.exists(path):
            self.fs.rm(path, recursive=True)
        self._invalidate(path)

    def rmdir_if_empty(self, *parts: str) -> None:
        """Remove an empty folder (local only: object stores have no folders); a folder in use stays."""
        if self._is_local:
            try:
                os.rmdir(self.path(*parts))
            except OSError:
                pass

    def copy(self, src: Iterable[str] | str, dst: Iterable[str] | str) -> None:
        """Copy one file (atomically, like ``write_bytes``)."""
        src_path = self.path(*_parts(src))
        dst_path = self.path(*_parts(dst))
        if self._is_local:
            _atomic_local_write(dst_path, self.fs.cat_file(src_path))
        else:
            self.fs.copy(src_path, dst_path)
        self._invalidate(dst_path)

    # tables ------------------------------------------------------------------------------------------------
    def write_parquet(self, df, *parts: str) -> str:
        buf = io.BytesIO()
        df.to_parquet(buf, index=False, engine="pyarrow", compression="zstd")
        return self.write_bytes(buf.getvalue(), *parts)

    def read_parquet(self, *parts: str):
        import pandas as pd

        return pd.read_parquet(io.BytesIO(self.read_bytes(*parts)), engine="pyarrow")

    def replace_partition(self, df, folder: str, filename: str) -> str:
        """Rewrite a partition whole: one deterministic file, every other file in it removed.

        A rerun therefore leaves exactly the new content, never a duplicate. The file is replaced atomically
        (``write_bytes``): a reader of ``filename`` sees the whole old partition or the whole new one, never an
        empty folder; a rewrite cut short leaves the old partition as it was.
        """
        path = self.write_parquet(df, folder, filename)
        for name in self.ls(folder):
            if name != filename:
                self.rm(folder, name)
        return path

    # internals ---------------------------------------------------------------------------------------------
    @property
    def _is_s3(self) -> bool:
        return self.scheme in ("s3", "s3a")

    @property
    def _is_local(self) -> bool:
        return isinstance(self.fs, LocalFileSystem)

    def _invalidate(self, path: str) -> None:
        if hasattr(self.fs, "invalidate_cache"):
            self.fs.invalidate_cache(path)


def _parts(p: Iterable[str] | str) -> tuple[str, ...]:
    return (p,) if isinstance(p, str) else tuple(p)


def _atomic_local_write(path: str, data: bytes) -> None:
    folder, name = posixpath.split(path)
    os.makedirs(folder, exist_ok=True)
    tmp = posixpath.join(folder, f"{TEMP_PREFIX}{name}.{uuid.uuid4().hex}.tmp")
    try:
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def lake_from_settings(settings=None, fs: fsspec.AbstractFileSystem | None = None) -> Lake:
    from .config import Settings

    settings = settings or Settings.from_env()
    return Lake(settings.lake_url, fs=fs)
