"""A deploy_model run killed mid-canary (marked failed, its worker lost for good) leaves a canary serving its share
with nobody watching it. The rollout records its run (``owner``); what the next run does with it is
``rollouts.claim``'s: a retry of the run that started it resumes it as it is, a run of the same version whose owner
is over adopts it (clock and evidence kept), and a run for another version is refused, naming the canary and the
form's options, instead of replacing it unrecorded. A canary whose run is still queued or running is never taken.

Kills: a retry of start_canary restarting the canary's clock (the evidence served before it dropped); a new run
silently overwriting an orphaned canary of another version; two runs on one canary."""

from __future__ import annotations

import pytest

from include.mlops.core import layout, rollouts
from include.mlops.core.lake import Lake
from include.mlops.deploy import canary


@pytest.fixture
def lake(tmp_path):
    return Lake((tmp_path / "lake").as_uri())


def over(run_id: str) -> bool:
    return False


def ramp(share: float) -> list[dict]:
    """A ramp whose first stage serves ``share`` of flights: the rollout's canary_share while it is there."""
    return [{"share": share, "min_hours": 0, "min_requests": 0}, {"share": 1.0, "min_hours": 0, "min_requests": 0}]


def killed_run(lake) -> dict:
    """The canary of v2 that run 'first' started before it was killed: still serving 10 %, nobody watching."""
    return canary.start(lake, "2", "1", ramp(0.1), "2013-02-04", owner="first")


def test_the_rollout_records_the_run_that_watches_it(lake):
    assert killed_run(lake)["owner"] == "first" and rollouts.current(lake)["owner"] == "first"
    assert rollouts.current(lake)["canary_share"] == 0.1 and rollouts.current(lake)["stage"] == 0


def test_no_canary_starts_one(lake):
    assert rollouts.claim(None, "2", "r", over) == "start"
    canary.start(lake, "2", "1", ramp(0.1), "2013-02-04", owner="first")
    finished = canary.finish(lake, "rolled_back", {})
    assert rollouts.claim(finished, "3", "r", over) == "start"


def test_a_retry_of_the_run_that_started_it_resumes_it(lake):
    rollout = killed_run(lake)
    assert rollouts.claim(rollout, "2", "first", lambda r: True) == "resume"  # its own run is running: itself


def test_a_run_of_the_same_version_adopts_the_orphan_keeping_clock_and_evidence(lake):
    rollout = killed_run(lake)
    assert rollouts.claim(rollout, "2", "second", over) == "adopt"
    adopted = rollouts.adopt(lake, rollout, "second")
    assert adopted["owner"] == "second" and adopted["adopted_from"] == "first"
    kept = ("version", "champion", "canary_share", "stages", "stage", "history", "started_at", "from_date", "status")
    assert {k: adopted[k] for k in kept} == {k: rollout[k] for k in kept}
    assert rollouts.current(lake) == adopted  # the service keeps routing exactly as before
    assert rollouts.owned_by(adopted, "second") and not rollouts.owned_by(adopted, "first")
    assert rollouts.claim(adopted, "2", "second", over) == "resume"


def test_a_run_for_another_version_is_refused_naming_the_orphan_and_the_forms_options(lake):
    rollout = killed_run(lake)
    before = lake.read_bytes(*layout.rollout())
    with pytest.raises(rollouts.CanaryInTheWay) as exc:
        rollouts.claim(rollout, "3", "second", over)
    msg = str(exc.value)
    assert "a canary of v2 (10% of flights" in msg and "deploy_model run first, which is over" in msg
    assert "version 2 and action 'canary' to watch it again" in msg and "'rollback'" in msg and "'promote'" in msg
    assert lake.read_bytes(*layout.rollout()) == before  # nothing changed


def test_a_canary_whose_run_is_still_active_is_never_taken(lake):
    rollout = killed_run(lake)
    asked = []

    def active(run_id: str) -> bool:
        asked.append(run_id)
        return True

    for version in ("2", "3"):
        with pytest.raises(rollouts.CanaryInTheWay, match="watched by deploy_model run first, which is still"):
            rollouts.claim(rollout, version, "second", active)
    assert asked == ["first", "first"]


def test_a_canary_without_an_owner_predates_owners_and_is_adopted_or_refused(lake):
    rollout = {k: v for k, v in killed_run(lake).items() if k != "owner"}  # written before owners were recorded
    assert rollouts.claim(rollout, "2", "second", lambda r: pytest.fail("no owner to ask about")) == "adopt"
    with pytest.raises(rollouts.CanaryInTheWay, match="an earlier deploy_model run"):
        rollouts.claim(rollout, "3", "second", over)
    assert rollouts.owned_by(rollout, "anyone")
