"""Routing between champion and challenger, checked by counting: over many flight keys the challenger's share
of flights is the configured canary share (not checked through ``bucket()``, which the code itself uses)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from include.mlops.core.frame import FeatureSpec
from include.mlops.kinds import lightgbm
from include.mlops.serve.models import Arms, ModelStore, Resolved, ServedModel, bucket

KEYS = [
    f"2013-{m:02d}-{d:02d}/{c}/{f}/{o}"
    for m in (1, 6)
    for d in (1, 15)
    for c in ("AA", "B6", "UA", "DL")
    for f in range(1, 626)
    for o in ("EWR", "JFK")
]  # 20,000 realistic flight keys


def arm(version: str) -> ServedModel:
    return ServedModel(lightgbm.Model(None, FeatureSpec(numeric=[], categorical=[]), version))


CHAMPION, CHALLENGER = arm("3"), arm("4")


@pytest.mark.parametrize("share", [0.05, 0.2, 0.5, 0.8])
def test_the_challenger_gets_its_share_of_flights(share):
    routes = Arms(CHAMPION, CHALLENGER, share).route(KEYS)
    got = routes.count("challenger") / len(KEYS)
    sd = math.sqrt(share * (1 - share) / len(KEYS))
    assert abs(got - share) < 5 * sd, (got, share)
    assert set(routes) == {"champion", "challenger"} and len(routes) == len(KEYS)


def test_routing_is_stable_and_a_bigger_share_only_adds_flights():
    small = Arms(CHAMPION, CHALLENGER, 0.1).route(KEYS)
    assert small == Arms(arm("3"), arm("4"), 0.1).route(KEYS)  # same key, same arm, any process
    big = Arms(CHAMPION, CHALLENGER, 0.3).route(KEYS)
    moved_back = [k for k, a, b in zip(KEYS, small, big) if a == "challenger" and b == "champion"]
    assert not moved_back
    # each key alone gets the arm it gets in a batch
    assert [Arms(CHAMPION, CHALLENGER, 0.3).route([k])[0] for k in KEYS[:200]] == big[:200]


def test_no_canary_means_every_flight_to_the_champion():
    assert Arms(CHAMPION, CHALLENGER, 0.0).route(KEYS[:100]) == ["champion"] * 100
    assert Arms(CHAMPION, CHALLENGER, -0.5).route(KEYS[:100]) == ["champion"] * 100
    assert Arms(CHAMPION, None, 0.5).route(KEYS[:100]) == ["champion"] * 100
    assert Arms(None, CHALLENGER, 0.2).route(KEYS[:100]) == ["challenger"] * 100  # nothing else to serve
    assert Arms(None, CHALLENGER, 0.0).route(KEYS[:100]) == ["champion"] * 100  # no canary, no traffic
    # ... and no arm to answer: the service says 503 "no model version is deployed yet" (it once answered scores
    # from an uninitialised array, version "", in the moment between the first model's gate and its promotion)
    assert not Arms(None, CHALLENGER, 0.0).serving and not Arms(None, None, 0.5).serving
    assert Arms(None, CHALLENGER, 0.2).serving and Arms(CHAMPION, None, 0.0).serving
    assert Arms(CHAMPION, CHALLENGER, 1.0).route(KEYS) == ["challenger"] * len(KEYS)
    assert Arms(CHAMPION, CHALLENGER, 0.5).route([]) == []


def test_buckets_are_uniform_in_the_unit_interval():
    b = np.array([bucket(k) for k in KEYS])
    assert b.min() >= 0.0 and b.max() < 1.0
    counts, _ = np.histogram(b, bins=10, range=(0, 1))
    assert counts.min() > 1800 and counts.max() < 2200  # 2,000 expected per tenth
    assert bucket("2013-01-01/AA/1/EWR") == bucket("2013-01-01/AA/1/EWR") != bucket("2013-01-01/AA/1/JFK")


def test_the_rollout_gives_the_share_only_to_its_own_running_canary():
    from include.mlops.core.rollouts import canary_share

    canary = {"version": "4", "status": "canary", "canary_share": 0.2}
    assert canary_share(canary, "4") == 0.2 and canary_share(canary | {"version": 4}, 4) == 0.2
    assert canary_share({"version": "4", "status": "canary"}, "4") == 0.0  # a rollout without a share
    assert canary_share(canary | {"status": "promoted"}, "4") == 0.0 and canary_share({}, "4") == 0.0


def test_the_rollout_shadows_only_its_own_running_canary_whatever_its_share():
    from include.mlops.core.rollouts import shadowing

    canary = {"version": "4", "status": "canary", "canary_share": 0.0}
    assert shadowing(canary, "4") and shadowing(canary | {"version": 4}, 4)  # a shadow stage: share 0
    assert shadowing(canary | {"canary_share": 0.2}, "4") and shadowing(canary | {"canary_share": 1.0}, "4")
    assert shadowing({"version": "4", "status": "canary"}, "4")  # a rollout without a share
    assert not shadowing(canary, "5") and not shadowing(canary, None)  # another version, no challenger
    for status in ("promoted", "rolled_back"):
        assert not shadowing(canary | {"status": status}, "4")
    assert not shadowing({}, "4") and not shadowing(None, "4")


def test_describe():
    assert Arms(CHAMPION, CHALLENGER, 0.2).describe() == {
        "champion": "3",
        "challenger": "4",
        "canary_share": 0.2,
        "shadow": False,
    }
    assert Arms(None, None, 0.0).describe() == {
        "champion": None,
        "challenger": None,
        "canary_share": 0.0,
        "shadow": False,
    }
    assert Arms(CHAMPION, CHALLENGER, 0.0, shadow=True).describe() == {
        "champion": "3",
        "challenger": "4",
        "canary_share": 0.0,
        "shadow": True,
    }


@pytest.mark.parametrize("share", [0.0, 0.3])
def test_in_the_shadow_the_challenger_scores_what_the_champion_answers(share):
    """The shadow changes no route: the champion answers what it answered; the challenger (``shadow_model``) scores
    those flights too, off the request path."""
    shadowed = Arms(CHAMPION, CHALLENGER, share, shadow=True)
    assert shadowed.route(KEYS[:500]) == Arms(CHAMPION, CHALLENGER, share).route(KEYS[:500])
    assert shadowed.shadow_model is CHALLENGER and shadowed.describe()["shadow"] is True
    assert Arms(CHAMPION, CHALLENGER, share).shadow_model is None  # no canary of it: no shadow


def test_nothing_is_shadowed_without_both_arms_or_with_every_flight_on_the_challenger():
    for arms in (
        Arms(CHAMPION, CHALLENGER, 1.0, shadow=True),  # the champion answers nothing
        Arms(CHAMPION, None, 0.0, shadow=True),
        Arms(None, CHALLENGER, 0.0, shadow=True),
    ):
        assert arms.shadow_model is None and arms.describe()["shadow"] is False, arms.describe()
    assert Arms(CHAMPION, CHALLENGER, 1.0, shadow=True).route(KEYS[:50]) == ["challenger"] * 50


# ----------------------------------------------------------------------------------------------- the store
class Registry:
    """What ModelStore reads: the aliases and the share (as the service resolves them), and version loads."""

    def __init__(self):
        self.aliases: dict = {"champion": None, "challenger": None}
        self.share = 0.0
        self.shadow = False
        self.loads: list[str] = []

    def resolve(self):
        return Resolved(dict(self.aliases), self.share, self.shadow)

    def load(self, version: str) -> ServedModel:
        self.loads.append(version)
        return arm(version)


def test_the_store_follows_the_aliases_and_loads_each_version_once(caplog):
    caplog.set_level("INFO", logger="include.mlops.serve.models")
    reg = Registry()
    store = ModelStore(reg.resolve, reg.load)
    assert store.arms.describe() == {"champion": None, "challenger": None, "canary_share": 0.0, "shadow": False}
    assert store.refresh() is False  # nothing to serve yet, nothing changed
    reg.aliases["champion"] = "3"
    assert store.refresh() is True and store.arms.champion.version == "3" and store.arms.challenger is None
    assert caplog.messages == ["serving {'champion': '3', 'challenger': None, 'canary_share': 0.0, 'shadow': False}"]
    assert store.refresh() is False and len(caplog.messages) == 1  # logged on a change only
    reg.aliases["challenger"], reg.share = "4", 0.2
    assert store.refresh() is True and store.arms.describe() == {
        "champion": "3",
        "challenger": "4",
        "canary_share": 0.2,
        "shadow": False,
    }
    snapshot = store.arms
    reg.aliases = {"champion": "4", "challenger": None}
    reg.share = 0.0
    assert store.refresh() is True and store.arms.describe()["champion"] == "4"
    assert snapshot.describe()["challenger"] == "4"  # a request in flight keeps its arms
    assert reg.loads == ["3", "4"]  # each version loaded once
    reg.aliases = {"champion": "4", "challenger": "4"}  # the same version twice: one arm
    reg.share = 0.5
    store.refresh()
    assert store.arms.challenger is None and store.arms.route(KEYS[:10]) == ["champion"] * 10


def test_the_store_follows_the_shadow_flag_and_takes_an_older_resolvers_pair():
    reg = Registry()
    store = ModelStore(reg.resolve, reg.load)
    reg.aliases, reg.share, reg.shadow = {"champion": "3", "challenger": "4"}, 0.0, True  # a shadow stage
    assert store.refresh() is True and store.arms.describe()["shadow"] is True
    assert store.arms.shadow_model.version == "4" and store.arms.route(KEYS[:10]) == ["champion"] * 10
    reg.share = 0.1
    assert store.refresh() is True and store.arms.shadow_model.version == "4"  # the ramp: still in the shadow
    reg.share = 1.0
    assert store.refresh() is True and store.arms.describe()["shadow"] is False  # all flights on the challenger
    reg.shadow, reg.share = False, 0.0  # the canary is over
    assert store.refresh() is True and store.arms.shadow_model is None and reg.loads == ["3", "4"]
    pair = ModelStore(lambda: ({"champion": "3", "challenger": "4"}, 0.2), reg.load)  # (aliases, share): no shadow
    assert pair.refresh() is True and pair.arms.describe() == {
        "champion": "3",
        "challenger": "4",
        "canary_share": 0.2,
        "shadow": False,
    }


def test_a_served_model_predicts_from_its_encoded_columns():
    import lightgbm as lgb

    rng = np.random.default_rng(0)
    X = pd.DataFrame({"temp": rng.normal(size=600), "origin": rng.choice(["EWR", "JFK"], 600)})
    y = ((X["temp"] > 0) & (X["origin"] == "JFK")).astype(int)
    spec = FeatureSpec(numeric=["temp"], categorical=["origin"], categories={"origin": ["EWR", "JFK"]})
    booster = lgb.train(
        {"objective": "binary", "verbosity": -1, "min_data_in_leaf": 5, "num_threads": 1},
        lgb.Dataset(spec.encode(X)[spec.columns], label=y, categorical_feature=["origin"]),
        num_boost_round=20,
    )
    model = ServedModel(lightgbm.Model(booster, spec, "1"))
    raw = pd.DataFrame({"origin": ["JFK", "EWR", "JFK"], "temp": [2.0, 2.0, -2.0], "ignored": [1, 2, 3]})
    p = model.predict(raw)
    assert p.shape == (3,) and p[0] > 0.8 and p[1] < 0.2 and p[2] < 0.2


class Broken(Exception):
    """A version whose load fails (its artifact missing or unreadable, the store unreachable while loading)."""


def test_a_version_that_fails_to_load_changes_nothing_served():
    """Kills: a load error swallowed in ``refresh``, so that the other arm gets every flight while the service
    reports a good refresh. Either arm's failed load fails the whole refresh (the service counts it and says
    stale): the arms served before stay, both of them, with their share; the broken version is not remembered as
    loaded and is tried again at the next refresh."""
    reg = Registry()
    broken = {"5", "6"}

    def load(version):
        if version in broken:
            raise Broken(f"version {version}: model artifact not found")
        return reg.load(version)

    store = ModelStore(reg.resolve, load)
    reg.aliases, reg.share = {"champion": "3", "challenger": "4"}, 0.5
    assert store.refresh() is True
    before = store.arms
    split = before.route(KEYS[:400])
    assert {"champion", "challenger"} == set(split)
    for aliases in ({"champion": "3", "challenger": "5"}, {"champion": "6", "challenger": "4"}):
        reg.aliases = aliases
        with pytest.raises(Broken, match="not found"):
            store.refresh()
        assert store.arms is before and store.arms.route(KEYS[:400]) == split
    broken.clear()  # the artifact is back: the next refresh loads it
    reg.aliases = {"champion": "6", "challenger": "5"}
    assert store.refresh() is True and store.arms.describe() == {
        "champion": "6",
        "challenger": "5",
        "canary_share": 0.5,
        "shadow": False,
    }
    assert reg.loads == ["3", "4", "6", "5"]
