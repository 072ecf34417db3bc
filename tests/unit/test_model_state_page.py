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
