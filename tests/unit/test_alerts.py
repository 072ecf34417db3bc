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


# a dropped file's `dest`, as upstream might write it: a code fence, a channel ping, a link disguised as a label
HOSTILE_DEST = "```<!channel> <https://evil.example|Click to release the batch>"
LINK = "http://localhost:8080/dags/ingest_flights/runs/manual__x/tasks/flights.validate?try_number=1&map_index=-1"


def _hostile_alert(**kw) -> Alert:
    return Alert(
        kind="quarantine",
        title=f"Batch flights/{HOSTILE_DEST} quarantined",
        dag_id="ingest_flights",
        task_id=f"flights.validate{HOSTILE_DEST}",
        date=HOSTILE_DEST,
        detail=f"expect_column_values_to_match_regex(dest): 1 unexpected value(s), e.g. [{HOSTILE_DEST!r}]",
        link=LINK,
        try_number=1,
        fields={"quarantine": f"file:///lake/{HOSTILE_DEST}", HOSTILE_DEST: HOSTILE_DEST},
        **kw,
    )


def _texts(a: Alert) -> list[str]:
    """Every string of the payload Slack reads as markup: the notification text and every block's text."""
    out = [a.text()]
    for b in a.blocks():
        out += [b["text"]["text"]] if "text" in b else []
        out += [f["text"] for f in b.get("fields", []) + b.get("elements", [])]
    return out


def test_values_from_data_cannot_write_slack_markup():
    a = _hostile_alert()
    everything = "\n".join(_texts(a))
    assert "<!" not in everything  # no channel ping
    assert everything.count("<http") == 1 and "<http://localhost:8080/dags/" in everything  # the project's link only
    for t in _texts(a):
        assert t.count("```") in (0, 2), t  # the message's own code block only, balanced
    [fence] = [t for t in _texts(a) if t.startswith("```")]
    assert fence.endswith("```") and "`" not in fence[3:-3]  # the value cannot close the block early
    header = a.blocks()[0]["text"]["text"]
    assert header.count("`") == 4  # the project's two code spans (DAG, task), nothing from the values
    # shown, not dropped: the values read as they were written (backticks as look-alikes)
    shown = "ˋˋˋ&lt;!channel&gt; &lt;https://evil.example|Click to release the batch&gt;"
    assert all(shown in t for t in _texts(a) if "Task log" not in t)


def test_the_project_link_stays_a_link_and_cannot_be_broken_out_of():
    a = _hostile_alert()
    [context] = [b for b in a.blocks() if b["type"] == "context"]
    assert context["elements"][0]["text"] == f"<{LINK.replace('&', '&amp;')}|Task log>"
    # a run id (a client's) in the log URL cannot end the link early or relabel it
    b = Alert(kind="failure", title="t", link="http://h/runs/a|b> <!channel>&c`d/log")
    assert b.blocks()[-1]["elements"][0]["text"] == "<http://h/runs/a%7Cb%3E%20%3C!channel%3E&amp;c%60d/log|Task log>"
    assert "<!channel>" not in b.text()
    # anything but an http(s) URL is shown as text, not linked
    c = Alert(kind="failure", title="t", link="javascript:alert(1)|<!here>")
    assert c.blocks()[-1]["elements"][0]["text"] == "Task log: javascript:alert(1)|&lt;!here&gt;"


def test_clipping_an_escaped_detail_never_cuts_an_entity():
    a = Alert(kind="failure", title="t", detail="a" + "<" * 10_000)
    detail = a.blocks()[1]["text"]["text"]
    assert len(detail) <= MAX_DETAIL + 10  # escaping makes it longer: it is clipped after escaping
    body = detail[3:-3].removesuffix("\n... (truncated)")
    assert body == "a" + "&lt;" * ((len(body) - 1) // 4)  # whole entities only


def test_the_log_line_shows_the_values_as_they_are():
    plain = _hostile_alert().text(markup=False)  # for a log, which is no Slack message
    assert f"e.g. [{HOSTILE_DEST!r}]" in plain and f"{HOSTILE_DEST}: {HOSTILE_DEST}" in plain
    assert plain.splitlines()[0] == f"[QUARANTINE] Batch flights/{HOSTILE_DEST} quarantined"
    assert plain.endswith(f"log: {LINK}")
