"""The approval before a promotion (``include.mlops.deploy.approval``): asked only for a promotion with the setting
on, what the person is shown, and which answers promote (only an explicit approval)."""

from __future__ import annotations

import datetime as dt

import pytest

from include.mlops.deploy import approval
from include.mlops.deploy.config import DeployConfig

ON = {"required": True, "timeout_hours": 24, "approvers": []}
RESULT = {
    "decision": "promote",
    "verdict": "promote",
    "why": "the paired comparison says promote",
    "rows": 812,
    "logloss": {"champion": 0.52, "challenger": 0.48, "diff": -0.04, "ci95": [-0.05, -0.03], "tolerance": 0.005},
    "auc": {"champion": 0.7, "challenger": 0.75, "diff": 0.05, "ci95": [0.04, 0.06]},
    "slices": {"judged": 3, "harmed": [], "table": [{"column": "origin", "value": "EWR", "rows": 300, "diff": 0.001}]},
}
ROLLOUT = {"version": "5", "champion": "4", "stages": [{"share": 0.0}, {"share": 0.5}, {"share": 1.0}]}


def test_the_shipped_setting_is_off_and_not_in_the_form():
    cfg = DeployConfig()
    assert cfg.approval == {"required": False, "timeout_hours": 24, "approvers": []}
    from mlops_airflow.blocks.forms import overrides_form

    assert not any("approval" in k for k in overrides_form(DeployConfig))  # a run cannot turn it off


@pytest.mark.parametrize(
    "bad",
    [{"required": "yes"}, {"timeout_hours": 0}, {"timeout_hours": 24 * 31}, {"approvers": "otto"}, {"extra": 1}],
)
def test_a_malformed_approval_setting_is_refused_by_name(bad):
    with pytest.raises(ValueError, match="approval"):
        DeployConfig(approval=ON | bad)


def test_only_a_promotion_with_the_setting_on_is_asked_about():
    assert approval.needed(ON, RESULT)
    assert not approval.needed(ON | {"required": False}, RESULT)
    assert not approval.needed(ON, RESULT | {"decision": "rollback"})  # a roll-back needs nobody's consent
    assert not approval.needed(ON, None)


def test_the_question_shows_the_evidence_and_what_each_answer_does():
    q = approval.request("5", RESULT, ROLLOUT, ON)
    assert q["subject"] == "Promote v5 to champion?"
    body = q["body"]
    assert "| labelled flights | 812 |" in body and "| champion | v4 |" in body
    assert "| ramp | shadow -> 50% -> 100% |" in body
    assert "0.4800 / 0.5200 (diff -0.0400, 95 % CI [-0.0500, -0.0300], tolerance +0.0050)" in body
    assert "3 judged, 0 harmed; the largest difference origin=EWR +0.0010" in body
    assert "No answer within 24 h rolls it back" in body and f"**{approval.APPROVE}**" in body


def test_a_value_from_the_evidence_cannot_break_the_table():
    q = approval.request("5", RESULT | {"why": "a | b\nc"}, ROLLOUT, ON)
    assert "a \\| b c" in q["body"]


def test_only_an_explicit_approval_promotes():
    person = {"id": "otto", "name": "otto"}
    yes = approval.outcome("5", {"chosen": [approval.APPROVE], "by": "otto", "reason": "looks good"})
    assert yes == {"decision": "promote", "why": "promotion of v5 approved by otto: looks good"}
    no = approval.outcome("5", {"chosen": [approval.REJECT], "by": person["name"]})
    assert no == {"decision": "rollback", "why": "promotion of v5 rejected by otto"}
    late = approval.outcome("5", {"chosen": [approval.REJECT], "by": None, "timed_out": True})
    assert late["decision"] == "rollback" and "no answer" in late["why"]
    # the deadline's default answer has no respondent: never a promotion, whatever it says
    assert approval.outcome("5", {"chosen": [approval.APPROVE], "by": None})["decision"] == "rollback"
    assert approval.outcome("5", {"chosen": [], "by": "otto"})["decision"] == "rollback"


def test_the_deadline_is_the_settings_hours_after_the_question():
    t = dt.datetime(2013, 2, 1, tzinfo=dt.UTC)
    assert approval.deadline(ON | {"timeout_hours": 1.5}, t) == t + dt.timedelta(minutes=90)
    assert approval.DEFAULT == approval.REJECT and approval.OPTIONS == [approval.APPROVE, approval.REJECT]
