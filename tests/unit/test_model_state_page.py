"""The model-state page of the UI plugin before any model exists (the deployment test checks it with a
champion, in a browser): it says so instead of failing or showing stale numbers."""

from mlops_airflow.ui.page import render


def test_the_page_without_a_model():
    page = render(
        {
            "model": "flight_delay",
            "errors": {},
            "versions": [],
            "champion": None,
            "challenger": None,
            "drift": None,
            "gate": None,
            "rollout": None,
            "lake": "file:///lake",
        }
    )
    assert 'id="champion">champion<div class="v">none</div>' in page
    assert 'id="challenger">challenger<div class="v">none</div>' in page
    assert "No monitoring report yet" in page and "Model state: flight_delay" in page


def test_the_page_with_a_champion():
    page = render(
        {
            "model": "flight_delay",
            "errors": {},
            "versions": [{"version": "3", "aliases": ["champion"]}],
            "champion": {"version": "3"},
            "challenger": None,
            "drift": None,
            "gate": None,
            "rollout": None,
            "lake": "file:///lake",
        }
    )
    assert 'id="champion">champion<div class="v">v3</div>' in page


def test_the_page_shows_the_services_check_from_the_last_monitoring_run():
    def page(service):
        drift = {"date": "2013-01-10", "fired": False, "drifted": [], "signals": {}, "service": service}
        return render(
            {
                "model": "flight_delay",
                "errors": {},
                "versions": [],
                "champion": None,
                "challenger": None,
                "drift": drift,
                "gate": None,
                "rollout": None,
                "lake": "file:///lake",
            }
        )

    slow = {
        "status": "ok",
        "signals": {"service_down": False, "latency": True, "errors": False, "rejected": False},
        "reasons": ["p99 412.0 ms over 250 ms (1,204 requests)"],
    }
    assert "prediction service: <span class='badge fail'>alert: latency</span> · p99 412.0 ms over 250 ms" in page(slow)
    down = {"status": "unreachable", "signals": {"service_down": True}, "reasons": ["unreachable: <URLError>"]}
    assert "alert: service_down</span> · unreachable: &lt;URLError&gt;" in page(down)  # escaped
    fine = {"status": "ok", "signals": {"latency": False}, "reasons": []}
    assert "prediction service: <span class='badge pass'>ok</span></p>" in page(fine)
    assert "id='service'" not in page(None)  # a report from before the service was checked


def test_the_page_shows_the_rollouts_stage_and_its_history():
    stages = [{"share": s, "min_hours": 0, "min_requests": 1} for s in (0.0, 0.25, 1.0)]
    history = [
        {"stage": 0, "share": 0.0, "entered_at": "2013-02-01T00:00:00", "left_at": "2013-02-02T01:00:00"}
        | {"outcome": "advance", "why": "the shadow stage passed: p99 4.0 ms (limit 500 ms)"},
        {"stage": 1, "share": 0.25, "entered_at": "2013-02-02T01:00:00"},
    ]
    rollout = {"version": "4", "champion": "3", "status": "canary", "canary_share": 0.25, "stage": 1}
    page = _with_rollout(rollout | {"stages": stages, "history": history, "started_at": "2013-02-01T00:00:00"})
    assert "stage 0.25 of flights (2 of 3)" in page
    assert "<td>shadow</td><td>2013-02-01T00:00:00</td><td>2013-02-02T01:00:00</td><td>advance</td>" in page
    assert "<td>0.25 of flights</td><td>2013-02-02T01:00:00</td><td></td><td>running</td>" in page
    assert "p99 4.0 ms (limit 500 ms)" in page


def test_the_page_lists_the_decisions_of_the_audit_trail_escaped():
    base = {"model": "flight_delay", "errors": {}, "versions": [], "champion": None, "challenger": None}
    base |= {"drift": None, "gate": None, "rollout": None, "lake": "file:///lake"}
    record = {
        "at": "2013-02-04T00:00:00+00:00",
        "version": "2",
        "event": "promoted",
        "actor": {"kind": "dag_run", "dag_id": "deploy_model", "run_id": "manual__x", "user": "ana<script>"},
        "why": "the paired comparison says promote",
    }
    page = render(base | {"audit": {"ok": True, "records": 7, "problems": [], "warnings": [], "recent": [record]}})
    assert "7 decision(s) recorded" in page and "chain verified" in page and "<td>promoted</td>" in page
    assert "ana&lt;script&gt; (deploy_model manual__x)" in page and "<script>" not in page.split("<body>")[1]
    broken = {"ok": False, "records": 7, "problems": ["00000003.json: hash"], "warnings": [], "recent": [record]}
    assert "BROKEN" in render(base | {"audit": broken}) and "00000003.json: hash" in render(base | {"audit": broken})
    assert "No decision recorded yet" in render(base | {"audit": {"ok": True, "records": 0, "recent": []}})


def _with_rollout(rollout):
    return render(
        {
            "model": "flight_delay",
            "errors": {},
            "versions": [{"version": "3", "aliases": ["champion"]}, {"version": "4", "aliases": ["challenger"]}],
            "champion": {"version": "3"},
            "challenger": {"version": "4"},
            "drift": None,
            "gate": None,
            "rollout": rollout,
            "lake": "file:///lake",
        }
    )


def test_the_page_links_the_waiting_approval_on_its_own_host_and_shows_the_answer():
    link = (
        "http://localhost:8080/dags/deploy_model/runs/manual__1/tasks/approve_promotion/required_actions?map_index=-1"
    )
    waiting = {"status": "waiting", "link": link, "deadline": "2013-02-03T00:00:00+00:00", "approvers": "otto"}
    rollout = {"version": "4", "champion": "3", "status": "canary", "canary_share": 1.0, "stage": 0}
    page = _with_rollout(rollout | {"approval": waiting})
    href = "/dags/deploy_model/runs/manual__1/tasks/approve_promotion/required_actions?map_index=-1"
    assert "approval waits" in page and f"<a href='{href}'>answer it</a>" in page, page
    assert "(otto; by 2013-02-03T00:00:00+00:00, no answer: rolled back)" in page
    answered = waiting | {"status": "rejected", "by": "otto", "reason": "<b>not now</b>", "answered_at": "T"}
    page = _with_rollout(rollout | {"status": "rolled_back", "approval": answered})
    assert "answer it" not in page and "approval: rejected by otto: &lt;b&gt;not now&lt;/b&gt; (T)" in page
    page = _with_rollout(rollout | {"status": "rolled_back", "approval": waiting})  # asking failed for good
    assert "answer it" not in page and "asked, never answered" in page


def test_the_page_shows_the_latest_tuning_study_escaped():
    study = {
        "study_id": "manual__1",
        "kind": "lightgbm",
        "finished_at": "T",
        "best": {"number": 4, "value": 0.41234, "params": {"num_leaves": 31, "learning_rate": 0.05}},
        "defaults": {"value": 0.42},
        "beats_defaults": True,
        "trials": [{"number": 4, "round": 1, "state": "complete", "value": 0.41234, "params": {"x": "<i>"}}],
    }
    bare = {"model": "m", "errors": {}, "versions": [], "champion": None, "challenger": None, "drift": None}
    bare |= {"gate": None, "rollout": None, "lake": "file:///lake"}
    page = render(bare | {"study": study})
    assert "best validation log-loss 0.4123 (trial 4) against the defaults' 0.4200" in page
    assert "beats the defaults" in page and "learning_rate=0.05, num_leaves=31" in page
    assert "<td>4</td><td>1</td><td>complete</td><td>0.4123</td><td>x=&lt;i&gt;</td>" in page
    empty = render(bare)
    assert "No tuning study yet" in empty
