"""A stage's operational signals (``deploy.signals``), fail closed: the service unread, its counters at the
stage's start unknown, or a restart during the stage give an error (the stage holds), never zeros; the score
agreement rescores what the service logged it was given; the per-arm numbers are the stage's own (the counters less
the stage's baseline)."""

from __future__ import annotations

import numpy as np
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


class Rescorer:
    """The registry's version as the agreement loads it: a score from the inputs it is given (the logged request
    fields and the event-time features derived from them), so a test sees what the rescoring was fed."""

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        assert "carrier" in X and "temp" in X, X.columns  # every request field, logged or not
        return (X["distance"].to_numpy(float) / 10_000 + X["event_hour_utc"].to_numpy(float) / 100).round(6)


def logged(tmp_path, scores: list[float], **extra) -> Lake:
    lake = Lake((tmp_path / "lake").as_uri())
    rows = pd.DataFrame(
        {
            "request_id": ["a", "b"],
            "flight_key": ["2013-02-22/AA/1/JFK", "2013-02-22/AA/2/JFK"],
            "flight_date": ["2013-02-22", "2013-02-22"],
            "arm": ["shadow", "challenger"],
            "version": ["2", "2"],
            "score": scores,
            "predicted_at": ["2013-02-22T10:00:00+00:00", "2013-02-22T10:00:01+00:00"],
            "carrier": ["AA", "AA"],
            "distance": [1000.0, 2000.0],
            "time_hour": ["2013-02-22T10:00:00Z", "2013-02-22T05:00:00-05:00"],
        }
        | extra
    )
    lake.write_parquet(rows, layout.predictions("2013-02-22"), "part-0.parquet")
    return lake


ROLLOUT = {"version": "2", "from_date": "2013-02-22", "started_at": "2013-02-22T00:00:00+00:00"}


def test_the_scores_are_rescored_from_the_inputs_the_service_logged(tmp_path, monkeypatch):
    """No curated day is needed: the rescoring reads the request fields the log keeps (a date curation has not
    brought in yet is rescored at once), derives the event time's features from them (10:00 UTC both), and a
    field the log lacks is missing, not an error."""
    monkeypatch.setattr(signals.kinds, "load_version", lambda v: Rescorer())
    assert signals.agreement(logged(tmp_path, [0.2, 0.3]), ROLLOUT) == (1.0, 2)


def test_a_score_the_service_computed_otherwise_disagrees(tmp_path, monkeypatch):
    monkeypatch.setattr(signals.kinds, "load_version", lambda v: Rescorer())
    assert signals.agreement(logged(tmp_path, [0.2, 0.31]), ROLLOUT) == (0.5, 2)


def test_the_rescoring_does_not_read_the_curated_features(tmp_path, monkeypatch):
    """A client's distance that curation would correct is what the service was given: the agreement judges the
    serving path on it (a client's skew is monitoring's), so a curated file saying otherwise changes nothing."""
    monkeypatch.setattr(signals.kinds, "load_version", lambda v: Rescorer())
    lake = logged(tmp_path, [0.2, 0.3])
    curated = pd.DataFrame({"year": [2013], "month": [2], "day": [22], "distance": [5.0]})
    lake.write_parquet(curated, *layout.curated_file("flights", "2013-02-22"))
    assert signals.agreement(lake, ROLLOUT) == (1.0, 2)


def test_nothing_logged_since_the_start_is_no_agreement(tmp_path, monkeypatch):
    monkeypatch.setattr(signals.kinds, "load_version", lambda v: Rescorer())
    lake = logged(tmp_path, [0.2, 0.3])
    assert signals.agreement(lake, ROLLOUT | {"started_at": "2013-02-23T00:00:00+00:00"}) == (None, 0)
