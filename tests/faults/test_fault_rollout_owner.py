"""A deploy_model run killed mid-canary leaves the challenger serving with nobody watching (its rollout names a
run that is over). A new run for another version is refused at start_canary, changing nothing and naming the
form's options; the orphan's version with action 'canary' adopts it and takes it to a decision. Real runs
(dag.test), real registry; the rules themselves are tests/unit/test_rollout_owner.py's."""

from __future__ import annotations

from tiny_models import tiny_version

from include.mlops.core import layout, registry, rollouts
from include.mlops.deploy import canary

# the orphan was at a stage serving 10 % of flights (its rollout's canary_share)
STAGES = [{"share": 0.1, "min_hours": 0, "min_requests": 0}, {"share": 1.0, "min_hours": 0, "min_requests": 0}]


def test_an_orphaned_canary_is_refused_by_another_version_and_adopted_by_its_own(
    run_dag, own_registry, tmp_path, lake, slack
):
    champion, orphan, candidate = (tiny_version(tmp_path, seed=s) for s in (1, 2, 3))
    registry.set_alias("champion", champion)
    registry.set_alias("challenger", orphan)
    canary.start(lake, orphan, champion, STAGES, "2013-02-20", owner="manual__2013-02-20T00:00:00+00:00_killed")
    before = lake.read_bytes(*layout.rollout())

    run = run_dag("deploy_model", "2013-02-21", conf={"version": candidate, "date": "2013-02-21"})
    assert run.state == "failed", run
    assert run.tasks["start_canary"] == ("failed", 1), run  # not retried: a retry finds it in the way
    assert run.tasks["rollback_on_failure"] == ("failed", 1), run  # the run's leaf: the run fails, not green
    assert lake.read_bytes(*layout.rollout()) == before
    assert registry.alias_version("challenger")["version"] == orphan
    alert = next(t for t in slack.texts() if t.startswith("[FAILURE] Task start_canary"))
    assert f"a canary of v{orphan} (10% of flights" in alert and "which is over" in alert, alert
    assert f"version {orphan} and action 'canary' to watch it again" in alert, alert

    run = run_dag("deploy_model", "2013-02-22", conf={"version": orphan, "wait_hours": 0.001})
    assert run.state == "success", run
    assert run.tasks["start_canary"][0] == "success" and run.tasks["decide"][0] == "success", run
    rollout = rollouts.current(lake)
    assert rollout["adopted_from"] == "manual__2013-02-20T00:00:00+00:00_killed", rollout
    assert rollout["owner"] == run.run_id and rollout["from_date"] == "2013-02-21"  # its evidence window kept
    assert rollout["stages"] == STAGES and rollout["history"][0]["share"] == 0.1  # its ramp kept
    why = rollout["evidence"]["why"]  # no labelled flights, no service's signals: wait_hours ends it
    assert rollout["status"] == "rolled_back" and "no decision after" in why, why
    assert "(wait_hours 0.001) at the 10% stage" in why, why
    assert registry.alias_version("challenger") is None
    assert any(f"Canary of v{orphan} adopted" in t for t in slack.texts())
