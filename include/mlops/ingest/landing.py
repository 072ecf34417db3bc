"""Reading an upstream drop from ``landing/<dataset>/date=YYYY-MM-DD/``.

Drop protocol: the upstream system writes its data file(s), then an empty ``_SUCCESS`` marker; a drop is
complete only once the marker exists. An upstream outage shows up as a ``TransientSourceError`` that callers
retry with backoff.

The upstream simulator can make a complete drop temporarily unreadable (a rate-limited or flapping upstream
store): it leaves ``_UNAVAILABLE`` in the drop folder with the number of reads that must still fail. This is the
only fault that needs cooperation from the reader, since a failing read cannot be staged as a file.
"""

from __future__ import annotations

import datetime as dt

from ..core import layout
from ..core.lake import Lake, as_date


class TransientSourceError(RuntimeError):
    """The upstream drop could not be read now; retrying later may succeed."""


class DropMissing(FileNotFoundError):
    """The drop's data file is absent although its marker says complete."""


def drop_ready(lake: Lake, dataset: str, date: dt.date | str) -> bool:
    return lake.exists(layout.landing(dataset, date), layout.SUCCESS)


def read_drop(lake: Lake, dataset: str, date: dt.date | str, filename: str) -> bytes:
    """The raw bytes of the drop's data file, exactly as the upstream system wrote them."""
    folder = layout.landing(dataset, as_date(date))
    if lake.exists(folder, layout.UNAVAILABLE):
        remaining = int((lake.read_bytes(folder, layout.UNAVAILABLE) or b"0").decode().strip() or 0)
        if remaining > 0:
            lake.write_bytes(str(remaining - 1).encode(), folder, layout.UNAVAILABLE)
            raise TransientSourceError(
                f"{dataset} drop for {as_date(date)} is temporarily unavailable upstream "
                f"({remaining} failing read(s) left at {lake.uri(folder)})"
            )
        lake.rm(folder, layout.UNAVAILABLE)
    if not lake.exists(folder, filename):
        raise DropMissing(f"{dataset} drop for {as_date(date)}: {lake.uri(folder, filename)} does not exist")
    return lake.read_bytes(folder, filename)
