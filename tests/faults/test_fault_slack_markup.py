"""Upstream data writes Slack markup: a dropped file whose ``dest`` holds a code fence, a channel ping and a link
disguised as a label is quarantined, and its quarantine alert reaches Slack (a real HTTP endpoint) with those
values escaped: shown, never live. The steps are the ``ingest_flights`` adapter's own (extract, validate, the
failure callback), called as the task runs them, without a DAG run."""

from __future__ import annotations

import json
import secrets

import pytest

from include.mlops.core import layout
from include.mlops.core.config import Settings
from include.mlops.core.lake import Lake
from include.mlops.simulate.upstream import day_table, to_csv_bytes

DATE = "2013-01-04"
HOSTILE_DEST = "```<!channel> <https://evil.example|Click to release the batch>"
LOG_URL = "http://localhost:8080/dags/ingest_flights/runs/manual__markup/tasks/flights.validate?try_number=1"


class TaskInstance:
    """What the adapter and the failure callback read of the running task instance."""

    dag_id, task_id, try_number, log_url = "ingest_flights", "flights.validate", 1, LOG_URL

    def __init__(self):
        self.xcom: dict[str, object] = {}

    def xcom_pull(self, task_ids: str):
        return self.xcom.get(task_ids)


def _slack_texts(payload: dict) -> list[str]:
    """Every string of a payload that Slack reads as markup: the text and every block's text."""
    out = [payload["text"]]
    for b in payload["blocks"]:
        out += [b["text"]["text"]] if "text" in b else []
        out += [f["text"] for f in b.get("fields", []) + b.get("elements", [])]
    return out


def test_a_hostile_value_in_a_drop_reaches_slack_escaped(slack, monkeypatch, capfd, caplog):
    from airflow.sdk import BaseHook

    from mlops_airflow.blocks import notifiers
    from mlops_airflow.tasks import ingest as ingest_flights

    # a password holding Slack's special characters, quoted by the rejected value: masked before it is escaped
    password = "pw<&>" + secrets.token_hex(8)
    monkeypatch.setenv(
        "AIRFLOW_CONN_WAREHOUSE", json.dumps({"conn_type": "postgres", "host": "db", "password": password})
    )
    BaseHook.get_connection("warehouse")  # read once, as a task would: the masker now knows the password
    lake = Lake(Settings.from_env().lake_url)
    df = day_table("flights", DATE)
    df["dest"] = df["dest"].astype(object)
    df.loc[df.index[0], "dest"] = HOSTILE_DEST
    df.loc[df.index[1], "dest"] = f"X{password}"
    folder = layout.landing("flights", DATE)
    lake.rm(folder)
    lake.write_bytes(to_csv_bytes(df), folder, "flights.csv")
    lake.touch(folder, layout.SUCCESS)

    ti = TaskInstance()
    context = {"run_id": "manual__markup", "params": {"date": DATE}, "ds": DATE, "ti": ti}
    ti.xcom["flights.extract"] = ingest_flights.extract("flights", context)
    with pytest.raises(ingest_flights.BatchQuarantined) as rejected:
        ingest_flights.validate("flights", context)
    assert HOSTILE_DEST in str(rejected.value)  # the value is in the message: the alert must carry it safely
    notifiers.on_task_failure(context | {"exception": rejected.value})

    [alert] = slack.payloads
    assert alert["text"].startswith(f"[QUARANTINE] Batch flights/{DATE} quarantined")
    texts = _slack_texts(alert)
    everything = "\n".join(texts)
    assert "<!" not in everything  # no channel ping
    assert everything.count("<http") == 1 and f"<{LOG_URL}|Task log>" in everything  # the project's link only
    for t in texts:
        assert t.count("```") in (0, 2), t  # the message's own code block, balanced: nothing from the data
    shown = "ˋˋˋ&lt;!channel&gt; &lt;https://evil.example|Click to release the batch&gt;"
    assert shown in alert["text"] and any(t.startswith("```") and shown in t for t in texts)  # shown, escaped
    # the password is masked before the values are escaped (escaped first, the masker would no longer find it)
    assert "'X***'" in alert["text"] and "pw&lt;&amp;&gt;" not in json.dumps(alert)
    assert password not in json.dumps(alert)

    # no Slack connection: the task log gets the plain text, the values as they are (a log is no Slack message)
    monkeypatch.delenv("AIRFLOW_CONN_SLACK_DEFAULT")
    capfd.readouterr()
    caplog.clear()  # the notifier's own log line only (the task log's masking is Airflow's, not under test here)
    assert notifiers.send(notifiers.Alert(kind="quarantine", title="t", detail=str(rejected.value))) == "log"
    out = capfd.readouterr()
    logged = out.out + out.err + caplog.text
    assert notifiers.NOT_CONFIGURED in logged and f"e.g. [{HOSTILE_DEST!r}, 'X***']" in logged
    assert password not in logged
