"""The prediction log's readers and the challenger's shadow predictions (arm ``shadow``, logged next to the served
ones, never returned to a client): ``predictions()`` reads served rows only, each flight by its first served
prediction, whatever the shadow logged and when; ``shadow=True`` reads the shadow rows only, by the same rules."""

from __future__ import annotations

import pandas as pd
import pytest

from include.mlops.core import layout, predictions
from include.mlops.core.lake import Lake
from include.mlops.core.schema import model

DAY = "2013-01-22"
KEY = model().key_field


def flight(i: int) -> str:
    return f"{DAY}/AA/{i}/EWR"


def row(i: int, arm: str, version: str, score: float, at: str) -> dict:
    return {KEY: flight(i), "arm": arm, "version": version, "score": score, "predicted_at": f"{DAY}T{at}+00:00"}


@pytest.fixture
def lake(tmp_path):
    lake = Lake(tmp_path.as_uri())
    rows = [
        row(1, "shadow", "4", 0.9, "09:00:00"),  # logged before the served row: never the flight's first answer
        row(1, "champion", "3", 0.1, "09:00:01"),  # flight 1's first served answer
        row(1, "champion", "3", 0.2, "09:30:00"),  # a re-post: never replaces the first answer
        row(1, "shadow", "4", 0.8, "09:30:01"),
        row(2, "challenger", "4", 0.3, "10:00:00"),  # a canary flight: served by the challenger, never shadowed
        row(3, "champion", "3", 0.4, "11:00:00"),
        row(3, "shadow", "4", 0.6, "11:00:01"),
        row(5, "shadow", "4", 0.7, "12:00:00"),  # shadowed, its served row not written yet (another file, later)
    ]
    lake.write_parquet(pd.DataFrame(rows), layout.predictions(DAY), "part-0.parquet")
    return lake


def by_flight(df: pd.DataFrame) -> dict[str, tuple[str, str, float]]:
    return {k: (a, v, s) for k, a, v, s in zip(df[KEY], df["arm"], df["version"], df["score"])}


def test_readers_get_served_rows_only_each_flight_by_its_first_served_answer(lake):
    served = predictions.predictions(lake, [DAY])
    assert by_flight(served) == {
        flight(1): ("champion", "3", 0.1),
        flight(2): ("challenger", "4", 0.3),
        flight(3): ("champion", "3", 0.4),
    }
    # the canary's evidence (both arms' versions) and monitoring's (the champion's) never see a shadow row
    assert set(predictions.predictions(lake, [DAY], versions={"4"})[KEY]) == {flight(2)}
    assert set(predictions.predictions(lake, [DAY], versions={"3", "4"}, since=f"{DAY}T10:00:00+00:00")[KEY]) == {
        flight(2),
        flight(3),
    }


def test_shadow_true_reads_the_shadow_rows_only_by_the_same_rules(lake):
    shadow = predictions.predictions(lake, [DAY], shadow=True)
    assert by_flight(shadow) == {
        flight(1): ("shadow", "4", 0.9),  # its first shadow prediction
        flight(3): ("shadow", "4", 0.6),
        flight(5): ("shadow", "4", 0.7),
    }
    assert list(shadow.columns)[:5] == predictions.prediction_columns()
    assert set(
        predictions.predictions(lake, [DAY], versions={"4"}, since=f"{DAY}T11:00:00+00:00", shadow=True)[KEY]
    ) == {
        flight(3),
        flight(5),
    }
    assert predictions.predictions(lake, [DAY], versions={"3"}, shadow=True).empty


def test_a_log_of_shadow_rows_only_has_no_served_rows_and_joined_passes_shadow_on(lake, tmp_path, monkeypatch):
    only_shadow = Lake((tmp_path / "shadow-only").as_uri())
    only_shadow.write_parquet(
        pd.DataFrame([row(7, "shadow", "4", 0.5, "08:00:00")]), layout.predictions(DAY), "part-0.parquet"
    )
    assert predictions.predictions(only_shadow, [DAY]).empty
    assert len(predictions.predictions(only_shadow, [DAY], shadow=True)) == 1

    label = model().label.name
    outcomes = pd.DataFrame({KEY: [flight(i) for i in (1, 2, 3, 5)], label: [1, 0, 1, 0], "date": DAY})
    monkeypatch.setattr(predictions, "outcomes", lambda lake, dates: outcomes)
    assert by_flight(predictions.joined(lake, [DAY])) == by_flight(predictions.predictions(lake, [DAY]))
    shadow = predictions.joined(lake, [DAY], versions={"4"}, shadow=True)
    assert set(shadow["arm"]) == {"shadow"} and dict(zip(shadow[KEY], shadow[label])) == {
        flight(1): 1,
        flight(3): 1,
        flight(5): 0,
    }
