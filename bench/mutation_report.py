"""The mutation score of the decision logic, from the results `mutmut run` left in mutants/ (`make mutation`).

Reads mutmut's per-file results, keeps the mutants of the functions under test (SCOPE, the same globs the
Makefile passes to `mutmut run`), prints the score per module and in all, and writes every mutant that was
not killed, with its diff, to bench/results/mutation.txt (git-ignored). Mutants listed as equivalent in
bench/README.md ("Mutation testing") are marked as such in the report; they still count as survivors in the
score.

    .venv/bin/python bench/mutation_report.py [--out bench/results/mutation.txt] [GLOB ...]
    .venv/bin/python bench/mutation_report.py --scope      # the globs `make mutation` passes to `mutmut run`

GLOBs (``make mutation MUTANTS=...``) narrow the report to the mutants of a run of only those.
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import re
import sys
from collections import Counter, defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# what the decisions are made of (mutant-name globs; `make mutation` runs exactly these)
SCOPE = [
    "include.mlops.evaluate.gate.*",
    "include.mlops.deploy.canary.x_compare__mutmut_*",
    "include.mlops.deploy.canary.x_evidence__mutmut_*",
    "include.mlops.deploy.canary.x_verdict__mutmut_*",
    "include.mlops.core.rollouts.x_canary_share__mutmut_*",
    "include.mlops.core.rollouts.x_running_canary__mutmut_*",
    "include.mlops.monitor.drift.*",
    "include.mlops.monitor.monitor.*",
    "include.mlops.ingest.validation.xǁFailureǁdescribe__mutmut_*",
    "include.mlops.ingest.validation.xǁValidationReportǁ*",
    "include.mlops.ingest.validation.x_read_csv__mutmut_*",
    "include.mlops.ingest.validation.x_validate__mutmut_*",
    "include.mlops.ingest.validation.x__failure__mutmut_*",
    "include.mlops.ingest.validation.x__short__mutmut_*",
    "include.mlops.ingest.ingestion.x_quarantine__mutmut_*",
    # serving: routing and the model store (not the single-row fast path, checked against Booster.predict by the
    # integration tests)
    "include.mlops.serve.models.xǁArmsǁ*",
    "include.mlops.serve.models.x_bucket__mutmut_*",
    "include.mlops.serve.models.xǁModelStoreǁ*",
    # the registry's reading of MLflow's errors: "absent" or an error
    "include.mlops.core.registry.x_is_absent__mutmut_*",
    "include.mlops.core.registry.x_alias_version__mutmut_*",
    "include.mlops.core.registry.x_versions__mutmut_*",
    "include.mlops.core.registry.x_delete_alias__mutmut_*",
    # the prediction service's health: every function but the HTTP GET itself and the clock
    "include.mlops.monitor.service.x_parse__mutmut_*",
    "include.mlops.monitor.service.x_quantile__mutmut_*",
    "include.mlops.monitor.service.x__delta__mutmut_*",
    "include.mlops.monitor.service.x__histogram__mutmut_*",
    "include.mlops.monitor.service.x__ms__mutmut_*",
    "include.mlops.monitor.service.x__latency__mutmut_*",
    "include.mlops.monitor.service.x_summarise__mutmut_*",
    "include.mlops.monitor.service.x_judge__mutmut_*",
    "include.mlops.monitor.service.x__encode__mutmut_*",
    "include.mlops.monitor.service.x__decode__mutmut_*",
    "include.mlops.monitor.service.x_check__mutmut_*",
    # monitoring's adapter: which dates a run reports on, which one the firing rule judges
    "plugins.mlops_airflow.tasks.monitor_model.x_data_dates__mutmut_*",
    "plugins.mlops_airflow.tasks.monitor_model.x_report__mutmut_*",
    "plugins.mlops_airflow.tasks.monitor_model.x_check_thresholds__mutmut_*",
]
STATUS = {
    1: "killed",
    3: "killed",
    0: "survived",
    5: "no tests",
    33: "no tests",
    34: "skipped",
    36: "timeout",
    37: "killed",
    None: "not checked",
}  # 37: caught by the type checker (not used here)


def in_scope(name: str) -> bool:
    return any(fnmatch.fnmatch(name, g) for g in SCOPE)


def module_of(name: str) -> str:
    return name.split(".x_")[0].split(".xǁ")[0]


def equivalents(readme: Path) -> set[str]:
    """Mutant names listed in bench/README.md's table of equivalent mutants."""
    text = readme.read_text() if readme.exists() else ""
    return set(re.findall(r"`((?:include\.mlops|plugins\.mlops_airflow)\.[^`\s]+__mutmut_\d+)`", text))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "mutation.txt"))
    ap.add_argument("--scope", action="store_true", help="print the mutant-name globs for `mutmut run` and stop")
    ap.add_argument("globs", nargs="*", help="only the mutants these globs name (a run of only those)")
    args = ap.parse_args()
    if args.scope:
        print(" ".join(SCOPE))  # no pattern contains a space; the Makefile turns globbing off
        return 0
    metas = sorted((ROOT / "mutants").rglob("*.py.meta"))
    if not metas:
        print("no mutmut results in mutants/: run `make mutation` first", file=sys.stderr)
        return 2
    status: dict[str, str] = {}
    for meta in metas:
        data = json.loads(meta.read_text())
        for name, code in data["exit_code_by_key"].items():
            if in_scope(name) and (not args.globs or any(fnmatch.fnmatch(name, g) for g in args.globs)):
                status[name] = STATUS.get(code, f"exit {code}")
    by_module: dict[str, Counter] = defaultdict(Counter)
    for name, st in status.items():
        by_module[module_of(name)][st] += 1
    known = equivalents(ROOT / "bench" / "README.md")
    lines = [f"{'module':<40} mutants  killed  survived  other  score"]
    total = Counter()
    for mod in sorted(by_module):
        c = by_module[mod]
        total.update(c)
        n = sum(c.values())
        other = n - c["killed"] - c["survived"]
        lines.append(f"{mod:<40} {n:>7} {c['killed']:>7} {c['survived']:>9} {other:>6} {c['killed'] / n:>6.1%}")
    n = sum(total.values())
    lines.append(
        f"{'all':<40} {n:>7} {total['killed']:>7} {total['survived']:>9} "
        f"{n - total['killed'] - total['survived']:>6} {total['killed'] / max(n, 1):>6.1%}"
    )
    summary = "\n".join(lines)
    print(summary)

    survivors = sorted(k for k, st in status.items() if st != "killed")
    out = [
        summary,
        "",
        f"{len(survivors)} mutant(s) not killed "
        f"({len([s for s in survivors if s in known])} listed as equivalent in bench/README.md):",
        "",
    ]
    try:
        sys.path.insert(0, str(ROOT))
        from mutmut.mutation.diff_apply import get_diff_for_mutant
    except ImportError:  # pragma: no cover - mutmut not installed
        get_diff_for_mutant = None
    import os

    cwd = os.getcwd()
    os.chdir(ROOT)
    try:
        for name in survivors:
            tag = " [equivalent: bench/README.md]" if name in known else ""
            out.append(f"# {name}: {status[name]}{tag}")
            if get_diff_for_mutant is not None:
                try:
                    out.append(get_diff_for_mutant(name).rstrip())
                except Exception as exc:  # the diff is a convenience; the list is the result
                    out.append(f"(no diff: {type(exc).__name__}: {exc})")
            out.append("")
    finally:
        os.chdir(cwd)
    path = Path(args.out)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(out) + "\n")
    print(f"{len(survivors)} mutant(s) not killed: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
