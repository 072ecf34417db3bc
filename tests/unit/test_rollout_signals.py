"""A stage's operational signals (``deploy.signals``), fail closed: the service unread, its counters at the
stage's start unknown, or a restart during the stage give an error (the stage holds), never zeros; a flight date
that curation has not brought in yet is not rescored (and does not fail the look); the per-arm numbers are the
stage's own (the counters less the stage's baseline)."""

from __future__ import annotations

import pandas as pd

from include.mlops.core import layout, telemetry
from include.mlops.core.lake import Lake
from include.mlops.deploy import signals

SERVED = "mlops_serve_prediction_duration_seconds_bucket"


def samples(start: float, challenger: int, errors: int, rss_mb: float = 300.0) -> telemetry.Samples:
    lab = lambda **k: tuple(sorted(k.items()))  # noqa: E731
    out = {
        ("process_start_time_seconds", ()): start,
        ("mlops_serve_requests_total", lab(route="/predict", status="200")): float(challenger),
        ("process_resident_memory_bytes", ()): rss_mb * 2**20,
        ("mlops_serve_prediction_errors_total", lab(arm="challenger", version="2")): float(errors),
    }
    for le, share in (("0.005", 0.5), ("0.01", 0.99), ("+Inf", 1.0)):
        out[(SERVED, lab(route="/predict", arm="challenger", version="2", le=le))] = challenger * share
    return out


def rollout(baseline) -> dict:
    return {"version": "2", "champion": "1", "canary_share": 0.5, "baseline": baseline}


def test_the_stage_counts_only_what_came_after_its_start():
    before, now = samples(100.0, 40, 1), samples(100.0, 140, 2)
    numbers, error = signals.operational(lambda: now, rollout(telemetry.encode(before)))
    assert error is None
    arm = numbers["arms"]["challenger"]
    assert arm["requests"] == 101 and arm["failed"] == 1 and arm["error_rate"] == 1 / 101
    assert 5.0 < arm["p99_ms"] <= 10.0 and numbers["memory_mb"] == 300.0
    assert numbers["arms"]["shadow"]["requests"] == 0 and numbers["arms"]["shadow"]["p99_ms"] is None


def test_no_signal_is_ever_read_as_zero():
    def down():
        raise ConnectionRefusedError("refused")

    base = telemetry.encode(samples(100.0, 40, 0))
    assert "refused" in signals.operational(down, rollout(base))[1]
    assert "not known yet" in signals.operational(lambda: samples(100.0, 50, 0), rollout(None))[1]
    restarted = signals.operational(lambda: samples(999.0, 5, 0), rollout(base))[1]
    assert "restarted during the stage" in restarted
    assert signals.baseline(down) is None
    unset = signals.service_scrape({})
    try:
        unset()
    except RuntimeError as exc:
        assert "MLOPS_SERVE_URL is not set" in str(exc)
    else:
        raise AssertionError("an unset URL must not read as a service without traffic")


def test_a_date_curation_has_not_brought_in_is_not_rescored(tmp_path):
    lake = Lake((tmp_path / "lake").as_uri())
    logged = pd.DataFrame(
        {
            "flight_key": ["2013-02-22/AA/1/JFK", "2013-02-22/AA/2/JFK"],
            "arm": ["shadow", "challenger"],
            "version": ["2", "2"],
            "score": [0.3, 0.4],
            "predicted_at": ["2013-02-22T10:00:00+00:00", "2013-02-22T10:00:01+00:00"],
        }
    )
    lake.write_parquet(logged, layout.predictions("2013-02-22"), "part-0.parquet")
    r = {"version": "2", "from_date": "2013-02-22", "started_at": "2013-02-22T00:00:00+00:00"}
    assert signals.agreement(lake, r) == (None, 0)
