from include.mlops.core.alerts import MAX_DETAIL, Alert


def test_alert_says_what_where_and_links_the_log():
    a = Alert(
        kind="quarantine",
        title="Batch flights/2013-01-05 quarantined",
        dag_id="ingest_flights",
        task_id="flights.validate",
        date="2013-01-05",
        detail="rule X failed",
        link="http://localhost:8080/dags/ingest_flights/runs/r/tasks/flights.validate",
        try_number=1,
        fields={"quarantine": "file:///lake/quarantine/flights/date=2013-01-05"},
    )
    text = a.text()
    for part in (
        "[QUARANTINE]",
        "flights/2013-01-05",
        "ingest_flights",
        "flights.validate",
        "rule X failed",
        "http://localhost:8080/dags/ingest_flights",
        "quarantine: file:///lake",
    ):
        assert part in text
    blocks = a.blocks()
    assert blocks[0]["text"]["text"].startswith(":no_entry: *Batch flights/2013-01-05 quarantined*")
    assert any(b["type"] == "context" for b in blocks)


def test_long_details_are_clipped_for_slack():
    a = Alert(kind="failure", title="t", detail="x" * 10_000)
    assert len(a.blocks()[1]["text"]["text"]) <= MAX_DETAIL + 10
