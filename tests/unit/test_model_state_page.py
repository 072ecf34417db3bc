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
