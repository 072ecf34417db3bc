"""Ingestion benchmark: one day and a full month through extract -> validate (GX) -> curate.

Reports seconds per day, rows per second for GX validation alone, and the ratio of GX validation time to the
plain baseline (parse the CSV and write it as Parquet, no validation) on the same days in the same run.
Optionally (--airflow) one day through the real DAG with `airflow dags test`, to show Airflow's overhead.

    .venv/bin/python bench/bench_ingest.py [--start 2013-01-01] [--days 31] [--airflow] [--json out.json]
"""

from __future__ import annotations

import argparse
import datetime as dt
import io
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import pandas as pd  # noqa: E402

from include.mlops.core.config import Settings  # noqa: E402
from include.mlops.core.lake import Lake  # noqa: E402
from include.mlops.core.schema import dataset  # noqa: E402
from include.mlops.ingest import ingestion  # noqa: E402
from include.mlops.ingest.validation import read_csv, validate  # noqa: E402
from include.mlops.simulate.upstream import Upstream  # noqa: E402


def timed(fn, *args, **kwargs):
    t = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - t


def run(start: dt.date, days: int, with_airflow: bool) -> dict:
    settings = Settings.from_env()
    spec = dataset("flights")
    tmp = Path(tempfile.mkdtemp(prefix="bench-ingest-"))
    lake = Lake((tmp / "lake").as_uri())
    up = Upstream(lake)
    # warm-up: GX import and suite set-up are paid once per process, report them apart
    up.publish(start, "flights")
    raw = lake.read_bytes(f"landing/flights/date={start}", "flights.csv")
    _, gx_setup_s = timed(validate, read_csv(raw, "flights", str(start)), spec, start, settings.expectations_dir)

    per_day, validate_s, parquet_s, rows, failed, frames = [], [], [], 0, [], []
    for i in range(days):
        d = start + dt.timedelta(days=i)
        up.publish(d, "flights")
        raw = lake.read_bytes(f"landing/flights/date={d}", "flights.csv")
        df = read_csv(raw, "flights", str(d))
        report, v = timed(validate, df, spec, d, settings.expectations_dir)
        if not report.success:
            failed.append((str(d), report.failed_rules))

        def plain_parquet(raw=raw, d=d):  # the baseline: parse and write Parquet, nothing else
            buf = io.BytesIO()
            pd.read_csv(io.BytesIO(raw)).to_parquet(buf, index=False, compression="zstd")
            lake.write_bytes(buf.getvalue(), "baseline", f"{d}.parquet")

        _, p = timed(plain_parquet)
        b = ingestion.batch(spec, d)

        def whole_day(b=b):
            ingestion.extract(lake, b)
            ingestion.check(lake, b, settings)
            return ingestion.curate(lake, b)

        if report.success:
            _, t = timed(whole_day)
            per_day.append(t)
        validate_s.append(v)
        parquet_s.append(p)
        rows += len(df)
        frames.append(df)

    # the same rows as one batch: GX's cost is mostly per rule, not per row (the day rule fails here, by design)
    whole = pd.concat(frames, ignore_index=True)
    _, v_all = timed(validate, whole, spec, start, settings.expectations_dir)

    result = {
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
        "days": days,
        "rows": rows,
        "gx_first_use_s": round(gx_setup_s, 2),
        "day_s_median": round(statistics.median(per_day), 3),
        "total_s": round(sum(per_day), 2),
        "validate_s_median": round(statistics.median(validate_s), 3),
        "validate_rows_per_s": round(rows / sum(validate_s)),
        "validate_one_batch_s": round(v_all, 2),
        "validate_one_batch_rows_per_s": round(rows / v_all),
        "parquet_s_median": round(statistics.median(parquet_s), 4),
        "validate_over_parquet": round(sum(validate_s) / sum(parquet_s), 1),
        "days_failed_validation": failed,
    }
    if with_airflow:
        result["airflow_dags_test_day_s"] = airflow_day(start + dt.timedelta(days=days), tmp)
    return result


def airflow_day(d: dt.date, tmp: Path) -> float:
    """One day through the real DAG (`airflow dags test`, both data sets), on a fresh SQLite home."""
    env = dict(
        os.environ,
        MLOPS_HOME=str(tmp),
        AIRFLOW_HOME=str(tmp / "airflow"),
        AIRFLOW__CORE__DAGS_FOLDER=str(ROOT / "dags"),
        AIRFLOW__CORE__PLUGINS_FOLDER=str(ROOT / "plugins"),
        AIRFLOW__CORE__LOAD_EXAMPLES="False",
        PYTHONPATH=str(ROOT),
        MLOPS_SENSOR_POKE_S="1",
    )
    env.pop("MLOPS_LAKE_URL", None)
    airflow = str(Path(sys.executable).parent / "airflow")
    subprocess.run([airflow, "db", "migrate"], env=env, check=True, capture_output=True)
    Upstream(Lake((tmp / "lake").as_uri())).publish_day(d)
    t = time.perf_counter()
    subprocess.run([airflow, "dags", "test", "ingest_flights", d.isoformat()], env=env, check=True, capture_output=True)
    return round(time.perf_counter() - t, 1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--start", default="2013-01-01")
    ap.add_argument("--days", type=int, default=31)
    ap.add_argument("--airflow", action="store_true", help="also time one day through `airflow dags test`")
    ap.add_argument("--json", help="write the result here too")
    args = ap.parse_args()
    res = run(dt.date.fromisoformat(args.start), args.days, args.airflow)
    print(json.dumps(res, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
