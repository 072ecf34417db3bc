"""The ten bugs planted by hand in the decision logic (issue #14), each checked to be caught by the test that
names it ("kills: ..." in its docstring).

For each bug: a copy of the project (include/, plugins/, expectations/, tests/, pytest.ini) in a temporary
folder, the one change applied, then the named tests run there; the bug counts as killed when they fail.
The unchanged copy must pass the same tests first.

    .venv/bin/python bench/planted_mutants.py        # about 2 minutes on 2 cores
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
COPY = ("include", "plugins", "expectations", "tests", "pytest.ini")

# name, file, original text, planted text, tests that must fail
PLANTED = [
    (
        "gate: calibration check always passes",
        "include/mlops/evaluate/gate.py",
        '"calibration",\n        ece <= cfg.max_ece,',
        '"calibration",\n        True,',
        ["tests/unit/test_gate_decisions.py::test_the_gate_fails_on_calibration_alone"],
    ),
    (
        "gate: ignores min_slice_rows",
        "include/mlops/evaluate/gate.py",
        'if s["rows"] >= cfg.min_slice_rows',
        "if True",
        ["tests/unit/test_gate_decisions.py::test_min_slice_rows_binds"],
    ),
    (
        "gate: AUC-drop comparison flipped",
        "include/mlops/evaluate/gate.py",
        '"auc_vs_champion",\n        drop <= cfg.max_auc_drop,',
        '"auc_vs_champion",\n        drop >= cfg.max_auc_drop,',
        ["tests/unit/test_gate_decisions.py::test_auc_change_against_the_champion_both_ways_and_at_the_tolerance"],
    ),
    (
        "drift: KS made one-sided (exact)",
        "include/mlops/monitor/drift.py",
        "return float(np.max(np.abs(fr - fc)))",
        "return float(np.max(fr - fc))",
        ["tests/unit/test_drift_directions.py::test_ks_sees_a_shift_down_as_well_as_up"],
    ),
    (
        "drift: KS made one-sided (profile)",
        "include/mlops/monitor/drift.py",
        'np.max(np.abs(_profile_cdf(q, grid) - np.searchsorted(c, grid, side="right") / c.size))',
        'np.max(_profile_cdf(q, grid) - np.searchsorted(c, grid, side="right") / c.size)',
        ["tests/unit/test_drift_directions.py::test_ks_sees_a_shift_down_as_well_as_up"],
    ),
    (
        "canary: decides on the middle of the log-loss interval, ignoring its width",
        "include/mlops/deploy/canary.py",
        "    lo, hi = ci95\n",
        "    lo, hi = ci95\n    hi = lo = (lo + hi) / 2\n",
        ["tests/unit/test_canary_decision.py::test_the_decision_follows_the_interval_not_the_mean"],
    ),
    (
        "monitor: decay signal never raised",
        "include/mlops/monitor/monitor.py",
        'perf["decayed"] = bool(perf["judged"] and drop == drop and drop >= cfg.max_auc_drop)',
        'perf["decayed"] = False',
        ["tests/unit/test_monitoring_signals.py::test_decay_fires_when_live_auc_drops_and_enough_outcomes_are_in"],
    ),
    (
        "monitor: missing-share drift reason dropped",
        "include/mlops/monitor/monitor.py",
        'if stats["missing_cur"] - stats["missing_ref"] >= cfg.missing_increase:',
        "if False:",
        ["tests/unit/test_monitoring_signals.py::test_a_missing_share_increase_fires_and_a_decrease_does_not"],
    ),
    (
        "monitor: firing rule ignores the cool-down",
        "include/mlops/monitor/monitor.py",
        "if fired and previous:",
        "if False:",
        ["tests/unit/test_monitoring_signals.py::test_the_cool_down_counts_days_from_the_last_trigger"],
    ),
    (
        "ingestion: quarantine without report.json",
        "include/mlops/ingest/ingestion.py",
        'lake.write_json(report.to_dict() | {"quarantined_at": _now()}, q, layout.QUARANTINE_REPORT)',
        "pass",
        ["tests/unit/test_ingestion.py::test_rejected_drop_moves_to_quarantine_untouched"],
    ),
]


def pytest(where: Path, tests: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", *tests],
        cwd=where,
        capture_output=True,
        text=True,
        timeout=900,
    )


def main() -> int:
    t0 = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="planted-") as tmp:
        base = Path(tmp) / "clean"
        base.mkdir()
        for name in COPY:
            src = ROOT / name
            (shutil.copytree if src.is_dir() else shutil.copy2)(src, base / name)
        every = sorted({t for *_, tests in PLANTED for t in tests})
        clean = pytest(base, every)
        if clean.returncode != 0:
            print(clean.stdout[-3000:])
            print("the named tests fail without any planted bug: fix them first")
            return 2
        failures = 0
        for name, rel, original, planted, tests in PLANTED:
            where = Path(tmp) / "mutant"
            if where.exists():
                shutil.rmtree(where)
            shutil.copytree(base, where)
            path = where / rel
            text = path.read_text()
            assert text.count(original) == 1, f"{name}: the original text is not in {rel} exactly once"
            path.write_text(text.replace(original, planted))
            out = pytest(where, tests)
            killed = out.returncode == 1
            failures += not killed
            print(f"{'killed  ' if killed else 'SURVIVED'}  {name}  ({', '.join(t.split('::')[-1] for t in tests)})")
    print(f"{len(PLANTED) - failures} of {len(PLANTED)} planted bugs killed in {time.monotonic() - t0:.0f} s")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
