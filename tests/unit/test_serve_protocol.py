"""What the prediction service and its log's writer share (``serve.protocol``): the frame and the acknowledgement
as they go over the pipe, the records spilled from the service equal to those the writer takes from the bytes it
was sent, the spill files' names read back as they were made; and the service's settings from the environment
(``core.config.ServeSettings``)."""

from __future__ import annotations

import msgspec
import numpy as np
import pytest

from include.mlops.core.config import ServeSettings
from include.mlops.serve import protocol
from include.mlops.serve.protocol import Ack, Counters, Frame, Logged
from include.mlops.serve.request import RequestModel

REQUESTS = RequestModel()


def _request(n: int) -> Logged:
    flights = [
        {
            "year": 2013,
            "month": 1,
            "day": 22 + i % 2,
            "carrier": "UA",
            "flight": i + 1,
            "origin": "EWR",
            "dest": "ORD",
            "sched_dep_time": 900,
            "sched_arr_time": 1100,
            "distance": 719.0,
            "time_hour": f"2013-01-{22 + i % 2}T14:00:00Z",
            "temp": 30.5 if i % 3 else None,
        }
        for i in range(n)
    ]
    decoded = REQUESTS.decode_batch(msgspec.json.encode({"flights": flights}))
    scores = np.linspace(0, 1, n)
    arms = ["champion", "challenger"] * (n // 2)
    return Logged("r1", "2026-11-28T00:00:00+00:00", decoded.flights, decoded.keys, scores.tobytes(), ["1"] * n, arms)


def test_the_records_spilled_from_the_service_are_those_the_writer_takes_from_the_frame():
    request = _request(6)
    payload = msgspec.msgpack.encode(Frame(7, REQUESTS.logged, [request]))
    received = protocol.decode_frame(payload)
    assert protocol.records(Frame(0, REQUESTS.logged, [request])) == protocol.records(received)
    cols = protocol.columns(received)
    assert list(cols)[:7] == ["request_id", "flight_key", "flight_date", "score", "version", "arm", "predicted_at"]
    assert list(cols)[7:] == [*REQUESTS.logged, protocol.SEQ] and cols[protocol.SEQ] == [7] * 6
    assert (
        cols["flight_date"] == ["2013-01-22", "2013-01-23"] * 3
        and cols["score"].tolist() == np.linspace(0, 1, 6).tolist()
    )
    # on the wire: [seq, fields, [[request_id, predicted_at, flights (maps), keys, scores, versions, arms]]]
    seq, fields, [wire] = msgspec.msgpack.decode(payload)
    assert (seq, fields, wire[0], wire[3], wire[6]) == (7, REQUESTS.logged, "r1", request.keys, request.arms)
    assert wire[2][0]["carrier"] == "UA" and np.frombuffer(wire[4]).tolist() == np.linspace(0, 1, 6).tolist()


def test_the_acknowledgement_keeps_its_keys_and_names_its_counters():
    ack = Ack([(3, "2013-01-22"), (4, None)], [3], Counters(10, 2, 1, 0), ["2013-01-23"])
    data = msgspec.msgpack.encode(ack)
    assert msgspec.msgpack.decode(data) == {
        "parts": [[3, "2013-01-22"], [4, None]],
        "seqs": [3],
        "c": [10, 2, 1, 0],
        "r": ["2013-01-23"],
    }
    back = protocol.decode_ack(data)
    assert back == ack and back.counters.spilled_total == 2 and back.counters.lake_failures == 1
    assert Counters(1, 2, 3, 4).plus(Counters(10, 20, 30, 40)) == Counters(11, 22, 33, 44)


def test_a_spill_file_name_says_its_date_and_rows_claimed_or_not():
    name = protocol.spill_name("2013-01-22", 40)
    assert name.startswith("spill-") and name.endswith("-2013-01-22-rows40.jsonl")
    assert protocol.spilled(name) == ("2013-01-22", 40)
    claim = protocol.claim_name(name, 1234)
    assert protocol.claimed(claim) == (name, 1234) and protocol.spilled(claim) == ("2013-01-22", 40)
    assert protocol.claimed(name) is None
    assert protocol.spilled(protocol.spill_name(None, 5)) == (None, 5)  # records without a flight date
    assert protocol.spilled(protocol.spill_name("22/01/2013", 5)) == (None, 5)  # not a date: not in the name
    assert protocol.spilled("spill-20000101T000000000000-0123abcd-rows50.jsonl") == (None, 50)  # an older version's
    assert protocol.spilled("spill-notes.jsonl") is None


def test_a_spill_file_seen_under_both_names_counts_once():
    """The service lists the spill folder while the writer claims a file and gives it back (the lake still
    refuses): a file listed as spilled and as claimed is one file (a CI run counted 50 rows twice)."""
    a, b = protocol.spill_name("2013-01-22", 50), protocol.spill_name("2013-01-23", 30)
    claim = protocol.claim_name(a, 1234)
    assert protocol.spilled_rows([a, b, claim, a]) == 80
    assert protocol.spilled_rows([claim, b]) == 80
    assert protocol.spilled_rows([a, "spill-notes.jsonl", ".tmp"]) == 50
    assert protocol.spilled_rows([]) == 0


def test_the_serving_settings_are_read_from_the_environment():
    assert ServeSettings.from_env({}) == ServeSettings()
    s = ServeSettings.from_env(
        {
            "MLOPS_SERVE_HOST": "0.0.0.0",
            "MLOPS_SERVE_PORT": "9000",
            "MLOPS_SERVE_REFRESH_S": "1.5",
            "MLOPS_SERVE_MAX_BATCH": "20",
            "MLOPS_SERVE_THREADS": "0",
            "MLOPS_SERVE_SPILL_DIR": "/tmp/spill",
            "MLOPS_SERVE_MAX_CONNECTIONS": "50",
            "MLOPS_SERVE_FLUSH_S": "",  # set empty: the default
            "MLOPS_SERVE_TOKEN": " t ",
        }
    )
    assert (s.host, s.port, s.refresh_s, s.max_batch, s.threads, s.max_connections) == ("0.0.0.0", 9000, 1.5, 20, 0, 50)
    assert str(s.spill_dir) == "/tmp/spill" and s.flush_s == ServeSettings.flush_s and s.token == "t"


@pytest.mark.parametrize(
    "env, message",
    [
        ({"MLOPS_SERVE_MAX_BATCH": "many"}, "MLOPS_SERVE_MAX_BATCH='many' is not a whole number"),
        ({"MLOPS_SERVE_REFRESH_S": "nan"}, "MLOPS_SERVE_REFRESH_S='nan' is not a number of seconds"),
        ({"MLOPS_SERVE_KEEPALIVE_S": "0"}, "MLOPS_SERVE_KEEPALIVE_S='0' is not a number of seconds above 0"),
        ({"MLOPS_SERVE_MAX_CONNECTIONS": "-1"}, "MLOPS_SERVE_MAX_CONNECTIONS='-1' is not a whole number above 0"),
    ],
)
def test_a_serving_setting_that_is_not_a_number_is_refused_naming_it(env, message):
    with pytest.raises(ValueError) as exc:
        ServeSettings.from_env(env)
    assert str(exc.value) == message
