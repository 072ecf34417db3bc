"""Bugs planted by hand in the decision and safety logic, each checked to be caught by the tests that name it
("kills: ..." in their docstrings).

For each bug: a copy of the project (include/, plugins/, expectations/, tests/, pytest.ini) in a temporary
folder, the one change applied, then the named tests run there; the bug counts as killed when each of them fails.
The unchanged copy must pass the same tests first.

    .venv/bin/python bench/planted_mutants.py              # every bug, about 3 minutes on 2 cores
    .venv/bin/python bench/planted_mutants.py serve: registry:   # only the bugs whose name contains one of these
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
    # the paths no test made fail before: a load error, a look-alike "not found", several events, exact limits
    (
        "serve: a version that fails to load is skipped (the other arm gets every flight, /health ok)",
        "include/mlops/serve/models.py",
        "                if v and v not in self._cache:\n                    self._cache[v] = self._load(v)\n",
        "                if v and v not in self._cache:\n                    try:\n"
        "                        self._cache[v] = self._load(v)\n"
        "                    except Exception:\n                        log.exception('version %s did not load', v)\n",
        [
            "tests/unit/test_routing.py::test_a_version_that_fails_to_load_changes_nothing_served",
            "tests/integration/test_serving_edges.py::"
            "test_a_version_that_fails_to_load_is_a_failed_refresh_and_changes_nothing_served",
        ],
    ),
    (
        "registry: any RESOURCE_DOES_NOT_EXIST read as absent (a missing run as no alias)",
        "include/mlops/core/registry.py",
        'return f"Registered Model with name={model_name()} not found" in text',
        "return True",
        ["tests/unit/test_registry_errors.py::test_a_not_found_about_anything_else_is_not_absent"],
    ),
    (
        "registry: any INVALID_PARAMETER_VALUE naming an alias and 'not found' read as absent",
        "include/mlops/core/registry.py",
        "_MISSING_ALIAS.search(text) is not None",
        '"alias" in text and "not found" in text',
        ["tests/unit/test_registry_errors.py::test_a_not_found_about_anything_else_is_not_absent"],
    ),
    (
        "registry: every error of the alias lookup read as no alias",
        "include/mlops/core/registry.py",
        "        if is_absent(exc):  # the alias (or the model) does not exist yet\n            return None\n",
        "        return None\n",
        [
            "tests/faults/test_fault_registry.py::test_an_unreachable_tracking_server_is_an_error_not_an_absence",
            "tests/unit/test_registry_errors.py::test_any_other_error_reaches_the_caller",
        ],
    ),
    (
        "monitor_model: the firing rule judges the earliest of the run's dates",
        "plugins/mlops_airflow/tasks/monitor_model.py",
        "monitor.decide(lake, data_dates(context)[-1],",
        "monitor.decide(lake, data_dates(context)[0],",
        ["tests/unit/test_monitor_events.py::test_the_firing_rule_judges_the_latest_date"],
    ),
    (
        "monitor_model: the service check goes on the earliest date's report",
        "plugins/mlops_airflow/tasks/monitor_model.py",
        "service=service if d == dates[-1] else None",
        "service=service if d == dates[0] else None",
        ["tests/unit/test_monitor_events.py::test_each_date_gets_its_report_and_the_latest_carries_the_service_check"],
    ),
    (
        "service health: exactly min_requests requests left unjudged",
        "include/mlops/monitor/service.py",
        'section["requests"] < (thresholds.get("min_requests") or 0)',
        'section["requests"] <= (thresholds.get("min_requests") or 0)',
        [
            "tests/unit/test_service_health.py::"
            "test_exactly_min_requests_are_judged_and_a_value_at_its_limit_is_not_over_it"
        ],
    ),
    (
        "serve: a body announced at exactly the size limit refused",
        "include/mlops/serve/app.py",
        "if int(length) > max_body_bytes:",
        "if int(length) >= max_body_bytes:",
        ["tests/integration/test_serving_edges.py::test_the_body_limit_holds_to_the_byte"],
    ),
    (
        "serve: a streamed body of exactly the size limit refused",
        "include/mlops/serve/app.py",
        "if size > max_body_bytes:",
        "if size >= max_body_bytes:",
        ["tests/integration/test_serving_edges.py::test_the_body_limit_holds_to_the_byte"],
    ),
]


def pytest(where: Path, tests: list[str], first_failure: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-rf",
            *(["-x"] if first_failure else []),
            "-p",
            "no:cacheprovider",
            *tests,
        ],
        cwd=where,
        capture_output=True,
        text=True,
        timeout=900,
    )


def main(names: list[str]) -> int:
    t0 = time.monotonic()
    planted = [p for p in PLANTED if not names or any(n in p[0] for n in names)]
    if not planted:
        print(f"no planted bug's name contains any of {names}")
        return 2
    with tempfile.TemporaryDirectory(prefix="planted-") as tmp:
        base = Path(tmp) / "clean"
        base.mkdir()
        for name in COPY:
            src = ROOT / name
            (shutil.copytree if src.is_dir() else shutil.copy2)(src, base / name)
        every = sorted({t for *_, tests in planted for t in tests})
        clean = pytest(base, every)
        if clean.returncode != 0:
            print(clean.stdout[-3000:])
            print("the named tests fail without any planted bug: fix them first")
            return 2
        failures = 0
        for name, rel, original, bug, tests in planted:
            where = Path(tmp) / "mutant"
            if where.exists():
                shutil.rmtree(where)
            shutil.copytree(base, where)
            path = where / rel
            text = path.read_text()
            assert text.count(original) == 1, f"{name}: the original text is not in {rel} exactly once"
            path.write_text(text.replace(original, bug))
            out = pytest(where, tests, first_failure=False)
            failed = [line.split()[1] for line in out.stdout.splitlines() if line.startswith("FAILED ")]
            # killed: every test named fails on it (a parametrised test in one of its cases at least)
            killed = out.returncode == 1 and all(any(f.split("[")[0] == t for f in failed) for t in tests)
            failures += not killed
            print(f"{'killed  ' if killed else 'SURVIVED'}  {name}  ({', '.join(t.split('::')[-1] for t in tests)})")
    print(f"{len(planted) - failures} of {len(planted)} planted bugs killed in {time.monotonic() - t0:.0f} s")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
