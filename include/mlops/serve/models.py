"""Which model versions serve, and how a flight is routed between them.

``ModelStore`` holds an immutable ``Arms`` snapshot (champion, optional challenger, canary share, whether the
challenger scores in the shadow). A refresh builds a new snapshot off to the side and swaps the reference in one
assignment, so a request in flight keeps the snapshot it started with: alias changes never fail a request and need
no restart.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from typing import Any, NamedTuple

import numpy as np
import pandas as pd

from ..core.frame import FeatureSpec
from ..kinds import Model

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ServedModel:
    """A version as the service serves it: the model its kind loaded (``kinds``), and the encoder of its requests."""

    model: Model

    @property
    def version(self) -> str:
        return str(self.model.version)

    @property
    def spec(self) -> FeatureSpec:
        return self.model.spec

    def predict(self, raw: pd.DataFrame) -> np.ndarray:
        """Through pandas (``FeatureSpec.encode``): the reference the request path must equal."""
        return self.model.predict(raw)

    @cached_property
    def encoder(self):
        from .request import Encoder

        return Encoder(self.spec)

    def predict_array(self, X: np.ndarray, threads: int = 1) -> np.ndarray:
        """The model's matrix (``encoder.encode``) scored with at most ``threads`` threads (the kind's way: one
        LightGBM row through its single-row fast path)."""
        return self.model.predict_array(X, threads)


@dataclass(frozen=True)
class Arms:
    """What serves: the champion, the challenger, the challenger's share of flights and ``shadow``: while a canary
    of the challenger runs (``rollouts.shadowing``), every flight the champion answers is also scored by the
    challenger, off the request path and never returned (``shadow_model``)."""

    champion: ServedModel | None
    challenger: ServedModel | None
    canary_share: float
    shadow: bool = False

    @property
    def shadow_model(self) -> ServedModel | None:
        """The challenger when it scores the champion's flights in the shadow, else None: only with both arms
        loaded and a share under 1 (at 1.0 the champion answers no flight, so nothing is shadowed)."""
        if self.shadow and self.champion is not None and self.challenger is not None and self.canary_share < 1:
            return self.challenger
        return None

    @property
    def serving(self) -> bool:
        """Whether any flight has an arm to answer it: a champion, or a challenger given a share (a challenger
        alias alone, as the gate leaves the first model before deploy_model promotes it, answers nothing)."""
        return self.champion is not None or (self.challenger is not None and self.canary_share > 0)

    def route(self, flight_keys: list[str]) -> list[str]:
        """'champion' or 'challenger' per flight, by a stable hash of its key (a flight always meets one arm)."""
        if self.challenger is None or self.canary_share <= 0:
            return ["champion"] * len(flight_keys)
        if self.champion is None:
            return ["challenger"] * len(flight_keys)
        return ["challenger" if bucket(k) < self.canary_share else "champion" for k in flight_keys]

    def describe(self) -> dict[str, Any]:
        return {
            "champion": self.champion.version if self.champion else None,
            "challenger": self.challenger.version if self.challenger else None,
            "canary_share": self.canary_share,
            "shadow": self.shadow_model is not None,
        }


def bucket(flight_key: str) -> float:
    """A stable number in [0, 1) for a flight key (the first 8 bytes of its sha256)."""
    return int.from_bytes(hashlib.sha256(flight_key.encode()).digest()[:8], "big") / 2**64


class Resolved(NamedTuple):
    """What a resolver answers: the aliases (``{"champion": v, "challenger": v}``, a version or None each), the
    challenger's canary share and whether it scores in the shadow (``rollouts.canary_share``, ``rollouts.shadowing``)."""

    aliases: dict[str, str | None]
    share: float
    shadow: bool = False


# () -> Resolved, or a plain (aliases, share, shadow); (aliases, share) alone: never in the shadow
Loader = Callable[[], Resolved | tuple[dict[str, str | None], float, bool] | tuple[dict[str, str | None], float]]


class ModelStore:
    """Keeps ``arms`` in step with the registry aliases; loads each version once."""

    def __init__(self, resolve: Loader, load: Callable[[str], ServedModel]):
        self._resolve = resolve  # () -> (aliases, canary share, shadow): ``Resolved``
        self._load = load  # version -> ServedModel
        self._cache: dict[str, ServedModel] = {}
        self._lock = threading.Lock()
        self.arms = Arms(None, None, 0.0)

    def refresh(self) -> bool:
        """Re-read the aliases; returns True when what is served changed."""
        with self._lock:
            aliases, share, shadow = Resolved(*self._resolve())
            models = {}
            for arm in ("champion", "challenger"):
                v = aliases.get(arm)
                if v and v not in self._cache:
                    self._cache[v] = self._load(v)
                models[arm] = self._cache.get(v) if v else None
            if (
                models["challenger"] is not None
                and models["champion"] is not None
                and models["challenger"].version == models["champion"].version
            ):
                models["challenger"] = None
            new = Arms(models["champion"], models["challenger"], share, bool(shadow))
            changed = new.describe() != self.arms.describe()
            if changed:
                log.info("serving %s", new.describe())
            self.arms = new  # one reference swap: requests in flight keep their snapshot
            return changed
