"""Replays a day's rows of the scored data set (the scheduled flights) as prediction requests against the service,
before their outcomes exist.

Only the declared request fields are sent (for flights: the schedule, and the weather observed at the origin in
the departure hour). Requests go over real HTTP, concurrently, in batches.

    python -m include.mlops.simulate.traffic 2013-02-22 [--url http://127.0.0.1:8000] [--concurrency 8]

Batches go to ``POST /predict/batch``, with the bearer token of ``MLOPS_SERVE_TOKEN`` (or
``MLOPS_SERVE_TOKEN_FILE``) when set.
"""

from __future__ import annotations

import argparse
import datetime as dt
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import pandas as pd

from ..core import schema
from ..core.config import serve_auth, serve_token
from ..core.lake import as_date
from ..core.schema import model
from .upstream import NoRows, day_table


def requests_for(date: dt.date | str) -> list[dict]:
    """The day's rows of the scored data set as the service receives them: the declared request fields, with
    the optional ones of a joined data set (the weather at the origin in the departure hour) where known."""
    d = as_date(date)
    m = model()
    spec = schema.dataset(m.dataset)
    fields = [f.column.name for f in schema.request_fields(model=m)]
    df = day_table(spec.name, d)
    df = df[[c for c in fields if c in spec.columns]]
    if m.join:
        joined = schema.dataset(m.join.dataset)
        days = []
        for x in (d - dt.timedelta(days=1), d, d + dt.timedelta(days=1)):  # event times in any time zone
            try:
                days.append(day_table(joined.name, x))
            except NoRows:  # before the source's first day or after its last
                continue
        by = list(m.join.by)
        extra = [c for c in fields if c in joined.columns and c not in df.columns]
        if days:
            df = df.merge(pd.concat(days)[by + extra].drop_duplicates(by), on=by, how="left")
    df = df.astype(object).where(df.notna(), None)
    return df.to_dict(orient="records")


@dataclass
class ReplayResult:
    date: str
    flights: int
    requests: int
    errors: int
    arms: dict[str, int]


def replay(
    date: dt.date | str,
    url: str,
    concurrency: int = 8,
    batch_size: int = 50,
    timeout_s: float = 30.0,
    token: str | None = None,
    headers: dict[str, str] | None = None,
) -> ReplayResult:
    """The day's flights posted in batches. ``token``: the service's bearer token, by default
    ``MLOPS_SERVE_TOKEN`` / ``MLOPS_SERVE_TOKEN_FILE``; ``headers`` go with every request too (they win)."""
    import httpx

    rows = requests_for(date)
    batches = [rows[i : i + batch_size] for i in range(0, len(rows), batch_size)]
    field = model().rows  # the batch's list, as the model declares it
    arms: dict[str, int] = {}
    errors = 0
    token = token if token is not None else serve_token()
    with httpx.Client(base_url=url, timeout=timeout_s, headers=serve_auth(token) | (headers or {})) as client:

        def send(batch):
            return client.post("/predict/batch", json={field: batch})

        with ThreadPoolExecutor(concurrency) as pool:
            for r in pool.map(send, batches):
                if r.status_code != 200:
                    errors += 1
                    continue
                for p in r.json()["predictions"]:
                    arms[p["arm"]] = arms.get(p["arm"], 0) + 1
    return ReplayResult(str(as_date(date)), len(rows), len(batches), errors, arms)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("date")
    ap.add_argument("--days", type=int, default=1)
    ap.add_argument("--url", default="http://127.0.0.1:8000")
    ap.add_argument("--concurrency", type=int, default=8)
    args = ap.parse_args()
    for i in range(args.days):
        print(replay(as_date(args.date) + dt.timedelta(days=i), args.url, args.concurrency))


if __name__ == "__main__":
    main()
