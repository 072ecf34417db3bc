"""One path API over the lake, for ``file://`` and ``s3://`` alike (fsspec underneath).

Layout (DESIGN.md, section 2)::

    landing/<dataset>/date=YYYY-MM-DD/      what the upstream system drops (CSV + _SUCCESS marker)
    staging/<dataset>/date=YYYY-MM-DD/      what extraction fetched, validated from here
    curated/<dataset>/date=YYYY-MM-DD/      validated Parquet, rewritten whole on a rerun
    quarantine/<dataset>/date=YYYY-MM-DD/   the rejected file untouched plus report.json
    predictions/, reports/

The Airflow adapter (``plugins/mlops_airflow/lake.py``) hands in a filesystem built from the ``aws_default``
connection; outside Airflow the filesystem comes from the URL and the usual AWS environment variables.
"""

from __future__ import annotations

import datetime as dt
import io
import json
import posixpath
from typing import Any, Iterable

import fsspec
from fsspec.implementations.local import LocalFileSystem

ZONES = ("landing", "staging", "curated", "quarantine", "predictions", "reports")


def as_date(value: dt.date | str) -> dt.date:
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    try:
        return dt.date.fromisoformat(str(value)[:10])
    except ValueError as exc:
        raise ValueError(f"not a date (YYYY-MM-DD): {value!r}") from exc


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
        return posixpath.join(self.root, *[str(p).strip("/") for p in parts if str(p)])

    def uri(self, *parts: str) -> str:
        """The full URL of a path, for people and reports (``file:///...`` or ``s3://...``)."""
        return posixpath.join(self.url, *[str(p).strip("/") for p in parts if str(p)])

    @staticmethod
    def partition(zone: str, dataset: str, date: dt.date | str) -> str:
        if zone not in ZONES:
            raise ValueError(f"unknown lake zone {zone!r}; zones: {ZONES}")
        return f"{zone}/{dataset}/date={as_date(date).isoformat()}"

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
        return sorted(posixpath.basename(str(e).rstrip("/")) for e in entries if str(e).rstrip("/") != base)

    def partitions(self, *parts: str) -> list[dt.date]:
        """The dates present under a folder (``zone/dataset``, ``predictions``, ...) as ``date=`` partitions."""
        out = []
        for name in self.ls(*parts):
            if name.startswith("date="):
                try:
                    out.append(as_date(name[5:]))
                except ValueError:
                    continue
        return sorted(out)

    # bytes, text, json -------------------------------------------------------------------------------------
    def read_bytes(self, *parts: str) -> bytes:
        return self.fs.cat_file(self.path(*parts))

    def write_bytes(self, data: bytes, *parts: str) -> str:
        path = self.path(*parts)
        self.fs.pipe_file(path, data)
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
        path = self.path(*parts)
        if self.fs.exists(path):
            self.fs.rm(path, recursive=True)
        self._invalidate(path)

    def copy(self, src: Iterable[str] | str, dst: Iterable[str] | str) -> None:
        src_path = self.path(*_parts(src))
        dst_path = self.path(*_parts(dst))
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

    def replace_partition(self, df, folder: str, filename: str = "part-00000.parquet") -> str:
        """Rewrite a partition whole: one deterministic file, every other file in it removed.

        A rerun therefore leaves exactly the new content, never a duplicate.
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

    def _invalidate(self, path: str) -> None:
        if hasattr(self.fs, "invalidate_cache"):
            self.fs.invalidate_cache(path)


def _parts(p: Iterable[str] | str) -> tuple[str, ...]:
    return (p,) if isinstance(p, str) else tuple(p)


def lake_from_settings(settings=None, fs: fsspec.AbstractFileSystem | None = None) -> Lake:
    from .config import Settings

    settings = settings or Settings.from_env()
    return Lake(settings.lake_url, fs=fs)
