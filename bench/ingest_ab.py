"""Ingestion before and after a change: the same day's validation and whole in-process ingestion
(extract -> validate -> curate), timed in CPU seconds of the process (not wall time: on a shared 2-core machine
the wall time of the same work varies by 2x; the CPU time it takes varies by a few per cent), in this checkout
and in a git worktree of a base commit, alternately, several rounds.

    .venv/bin/python bench/ingest_ab.py --base 32aaea7 [--rounds 5] [--date 2013-01-10]

Prints the median per tree and the ratio (this checkout / base). The base may predate the current package
layout: the probe below imports whichever layout the tree has.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

PROBE = r"""
import datetime as dt, json, sys, tempfile, time
from pathlib import Path
sys.path.insert(0, ".")
try:                                   # the stage layout (include/mlops/{core,ingest,...})
    from include.mlops.core.config import Settings
    from include.mlops.core.schema import dataset
    from include.mlops.core.lake import Lake
    from include.mlops.simulate.upstream import Upstream
    from include.mlops.ingest.validation import read_csv, validate
    from include.mlops.ingest import ingestion
    staged = True
except ImportError:                    # the flat layout before it
    from include.mlops.config import Settings, dataset
    from include.mlops.lake import Lake
    from include.mlops.sources.upstream import Upstream
    from include.mlops.validation import read_csv, validate
    from include.mlops import ingestion
    staged = False
s, spec = Settings.from_env(), dataset("flights")
lake = Lake((Path(tempfile.mkdtemp(prefix="ingest-ab-")) / "lake").as_uri())
d = dt.date.fromisoformat(sys.argv[1])
Upstream(lake).publish(d, "flights")
df = read_csv(lake.read_bytes(f"landing/flights/date={d}", "flights.csv"), "flights", str(d))
check = ((lambda: validate(df, spec, d, s.expectations_dir)) if staged else
         (lambda: validate(df, "flights", d, spec.suite, s.expectations_dir)))
report = check()                       # GX set-up paid once, not timed
b = ingestion.batch(spec, d)
def day():
    ingestion.extract(lake, b)
    ingestion.check(lake, b, s)
    ingestion.curate(lake, b)
out = {"rules": len(report.results) if hasattr(report, "results") else None, "validate": [], "day": []}
for _ in range(5):
    t = time.process_time(); check(); out["validate"].append(time.process_time() - t)
    t = time.process_time(); day(); out["day"].append(time.process_time() - t)
print(json.dumps(out))
"""


def probe(tree: Path, date: str) -> dict:
    r = subprocess.run(
        [str(ROOT / ".venv/bin/python"), "-c", PROBE, date], cwd=tree, capture_output=True, text=True, timeout=900
    )
    if r.returncode != 0:
        raise SystemExit(f"probe failed in {tree}:\n{r.stderr[-2000:]}")
    return json.loads(r.stdout.strip().splitlines()[-1])


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--base", required=True, help="the commit to compare with")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--date", default="2013-01-10")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="ingest-ab-") as tmp:
        base = Path(tmp) / "base"
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", "-q", str(base), args.base], check=True)
        try:
            runs = {"base": [], "head": []}
            for i in range(args.rounds):
                for name, tree in (("base", base), ("head", ROOT)):
                    r = probe(tree, args.date)
                    runs[name].append(r)
                    print(
                        f"round {i + 1} {name}: validate {statistics.median(r['validate']):.3f} s, "
                        f"day {statistics.median(r['day']):.3f} s (CPU)",
                        flush=True,
                    )
        finally:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(base)], check=False)
    med = {
        n: {k: statistics.median(x for r in rs for x in r[k]) for k in ("validate", "day")} for n, rs in runs.items()
    }
    for k in ("validate", "day"):
        print(
            f"{k}: base {med['base'][k]:.3f} s, head {med['head'][k]:.3f} s, head/base {med['head'][k] / med['base'][k]:.3f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
