"""Rollouts replayed offline: the fixed 20 % canary (before the ramp) against the ramp (``deploy.ramp.step``), on
the 2013 flights, with planted challengers of known quality.

No Airflow, no registry, no HTTP: a throw-away MLOPS_HOME with the curated flights (and weather) of a training
window and of a rollout window after it, models trained in this process with the project's own training-set
builder (``train.features.build``) and LightGBM kind (``kinds.lightgbm.train_single``, ``kinds.lightgbm.Model``),
and both policies replayed hour by hour over the rollout window:

- flights arrive through each day at their scheduled departure hour, one request per flight; a flight goes to
  the challenger when ``serve.models.bucket(flight_key)`` is under the current share;
- the outcomes of day d are known at the start of day d+1 (ingestion): from then on its flights are labelled
  evidence (cancelled flights never are); the agreement signal rescores every score the challenger gave at once
  (from the inputs the prediction log keeps);
- each policy looks at the start of every hour, then that hour's flights are served under what it decided.

Policy "fixed" (today's canary before the ramp): 20 % of flights to the challenger from the start; a verdict once
each arm has served 300 labelled flights: ``deploy.canary.compare`` on every labelled flight served so far (both
models score each one), tolerance ``max_logloss_increase``; promote or roll back on it; inconclusive waits until
each arm has 3000, then rolls back; 72 h without a decision rolls back. No operational check.

Policy "ramp": ``deploy.ramp.step`` with the shipped ``include/config/deploy.yaml`` (its stages, limits,
min_labelled, max_labelled, tolerance, the per-slice comparison on gate.yaml's slice columns): the evidence is every
labelled flight served since the start (shadow included), the signals are the challenger's in the current stage (see ``signals``); the rollout moves with
``ramp.entered`` / ``ramp.left``. Run with the DAG's default ``wait_hours`` (72) and with the whole window.

The planted challengers (each against the same champion) and their operational profiles are described in
``CHALLENGERS``; the ground truth (each model's log-loss on every labelled flight of the rollout window, overall
and on the slice) is printed first.

    .venv/bin/python bench/bench_rollout.py [--train-days 28] [--rollout-days 14] [--bootstrap 0]
        [--out bench/results/rollout]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "helpers"))

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

FIRST_DAY = dt.date(2013, 1, 1)
SLICE = ("origin", "EWR")  # the slice the slice_worse challenger is broken on (about 36 % of the flights)
MEMORY_MB = 600.0  # the service's resident memory in every stage: under the 4096 MB limit, for every challenger


@dataclass(frozen=True)
class Profile:
    """A challenger's operational behaviour, as the service's /metrics would report it: its requests' p99
    latency and the share of its requests that fail (drawn per flight from a stable hash: the same flights fail
    in every policy)."""

    p99_ms: float
    error_rate: float


FAST = Profile(p99_ms=4.0, error_rate=0.0)
SLOW = Profile(p99_ms=900.0, error_rate=0.02)
CHALLENGERS: dict[str, dict[str, Any]] = {
    "better": {
        "what": "trained on the same 28 days but with its newest days in its training split (validation and test "
        "one day each, not four), 15 leaves, 200 flights a leaf at least, 60 rounds",
        "profile": FAST,
        "worse": False,
    },
    "worse": {
        "what": "the champion's training set with its labels shuffled (seed 0), 100 rounds: a label-join bug",
        "profile": FAST,
        "worse": True,
    },
    "slice_worse": {
        "what": "the better model, but on flights from EWR its score is a draw (a stable hash of the flight key) "
        "from its own scores of the training window's EWR flights: no information on that slice",
        "profile": FAST,
        "worse": True,
    },
    "slow": {
        "what": "the champion's recipe with another seed and feature_fraction 0.8: the same quality; at load its "
        f"p99 is {SLOW.p99_ms:g} ms and {SLOW.error_rate:.0%} of its requests fail",
        "profile": SLOW,
        "worse": True,
    },
}
FIXED = {"share": 0.2, "min_per_arm": 300, "max_per_arm": 3000, "wait_hours": 72.0}


def isolate() -> Path:
    """A throw-away MLOPS_HOME, and none of the caller's MLOPS_* settings (the project's own flights config)."""
    for var in list(os.environ):
        if var.startswith("MLOPS_"):
            del os.environ[var]
    home = Path(tempfile.mkdtemp(prefix="bench-rollout-"))
    os.environ["MLOPS_HOME"] = str(home)
    return home


def unit(keys, salt: str) -> np.ndarray:
    """A stable number in [0, 1) per key, independent of the routing's (``bucket`` of the salted key)."""
    from include.mlops.serve.models import bucket

    return np.array([bucket(f"{k}|{salt}") for k in keys])


# ------------------------------------------------------------------------------------------------------ models
def fit(flights, weather, shares, over, rounds, shuffle_seed=None):
    """A LightGBM model of the project's kind, trained on the window's ``train`` days (``features.build`` with
    ``shares`` of validation and test days), params.yaml's ``lgbm`` section with ``over`` on top."""
    from include.mlops.kinds import lightgbm as lgbm
    from include.mlops.train import features as F
    from include.mlops.train import params as P

    ts = F.build(flights, weather, validation_share=shares[0], test_share=shares[1])
    train, validation = ts.part("train").copy(), ts.part("validation")
    if shuffle_seed is not None:
        train[ts.spec.label] = np.random.default_rng(shuffle_seed).permutation(train[ts.spec.label].to_numpy())
    p = lgbm.params(P.load()["lgbm"] | over, threads=2)
    booster = lgbm.train_single(train, validation, ts.spec.columns, ts.spec.categorical, p, rounds)
    return lgbm.Model(booster, ts.spec), {"train_days": [ts.split["train"][0], ts.split["train"][-1]]}


def slice_randomised(base, column: str, value: str, reference: np.ndarray):
    """``base`` but on the slice ``column == value``: a score drawn from ``reference`` by a stable hash of the
    flight key (deterministic: the same flight always gets the same score, so rescoring agrees)."""
    from include.mlops.core.schema import model, row_key
    from include.mlops.kinds import Model

    ref = np.sort(np.asarray(reference, dtype=float))

    class SliceRandomised(Model):
        kind = base.kind

        def predict(self, raw: pd.DataFrame) -> np.ndarray:
            p = np.array(base.predict(raw), dtype=float)
            on = (raw[column] == value).to_numpy()
            if on.any():
                p[on] = np.quantile(ref, unit(row_key(raw[on], model()), "slice"))
            return p

    return SliceRandomised(base.spec)


# -------------------------------------------------------------------------------------------------------- data
def curate(lake, first: dt.date, days: int) -> None:
    from curation import write_curated

    write_curated(lake, [(first + dt.timedelta(days=i)).isoformat() for i in range(days)])


def rollout_frame(lake, start: dt.date, days: int) -> pd.DataFrame:
    """Every curated flight of the rollout window (cancelled ones too: they were requested), with its weather,
    its key, its day index, the hour of its request (scheduled departure), and its routing numbers."""
    from include.mlops.core.frame import join_sources, load_window
    from include.mlops.core.schema import model, row_key
    from include.mlops.deploy import curated
    from include.mlops.serve.models import bucket

    last = start + dt.timedelta(days=days - 1)
    flights, weather, _ = load_window(lake, last, days)
    df = curated.features(join_sources(flights, weather))
    m = model()
    df[m.key_field] = row_key(df, m).to_numpy()
    df["day"] = (pd.to_datetime(df["batch_date"].astype(str)) - pd.Timestamp(start)).dt.days.astype(int)
    df["t"] = df["day"] * 24 + df["hour"].astype(int)
    df["bucket"] = [bucket(k) for k in df[m.key_field]]
    df["fails"] = unit(df[m.key_field], "error")
    return df.sort_values(["t", m.key_field]).reset_index(drop=True)


def logloss(y: np.ndarray, p: np.ndarray) -> float:
    p = np.clip(p, 1e-7, 1 - 1e-7)
    return float(-(y * np.log(p) + (1 - y) * np.log(1 - p)).mean())


def ground_truth(df: pd.DataFrame, scores: dict[str, np.ndarray]) -> dict[str, Any]:
    from include.mlops.core.metrics import metrics

    lab = df["is_labelled"].to_numpy(dtype=bool)
    y = df["label"].to_numpy(dtype=float)[lab]
    on = (df[SLICE[0]] == SLICE[1]).to_numpy()[lab]
    out = {}
    for name, p in scores.items():
        q = p[lab]
        out[name] = {
            "logloss": logloss(y, q),
            "auc": metrics(y, q)["auc"],
            "logloss_slice": logloss(y[on], q[on]),
            "logloss_rest": logloss(y[~on], q[~on]),
        }
    out["_flights"] = {"labelled": int(lab.sum()), "slice": int(on.sum()), "slice_share": float(on.mean())}
    return out


# ---------------------------------------------------------------------------------------------------- policies
class Quality:
    """``canary.compare`` on a set of labelled flights, cached by the set (the evidence only grows at ingestion)."""

    def __init__(self, df: pd.DataFrame, models: dict[str, Any], scores: dict[str, np.ndarray], cfg):
        self.df, self.models, self.scores, self.cfg, self.cache = df, models, scores, cfg, {}
        self.calls, self.seconds = 0, 0.0

    def __call__(self, name: str, rows: np.ndarray, challenger_arm: np.ndarray, by_day: bool = False) -> dict[str, Any]:
        """``by_day``: the interval counts each flight date as one cluster (the ramp's ``compare`` with the
        prediction log's dates); without, the flights alone (the fixed canary as it was)."""
        from include.mlops.deploy import canary
        from include.mlops.evaluate.config import GateConfig

        key = (name, rows.tobytes(), challenger_arm[rows].tobytes(), by_day)
        if key not in self.cache:
            t = time.perf_counter()
            arm = np.where(challenger_arm[rows], "challenger", "champion")
            served = np.where(challenger_arm[rows], self.scores[name][rows], self.scores["champion"][rows])
            frame = self.df.iloc[rows].assign(arm=arm, score=served)
            frame = (
                frame.assign(date=frame["batch_date"].astype(str))
                if by_day
                else frame.drop(columns="date", errors="ignore")
            )
            slices = tuple(GateConfig.load().slice_columns) if by_day else ()  # the ramp judges the gate's slices
            self.cache[key] = canary.compare(frame, self.models["champion"], self.models[name], self.cfg, slices=slices)
            self.calls += 1
            self.seconds += time.perf_counter() - t
        return self.cache[key]


def clock(start: dt.date, t: int) -> dt.datetime:
    return dt.datetime(start.year, start.month, start.day, tzinfo=dt.UTC) + dt.timedelta(hours=t)


def outcome(name: str, decision: str | None) -> str:
    """WRONG: a worse version promoted or the better one rolled back."""
    if decision is None or decision == "none":
        return "no decision"
    bad = CHALLENGERS[name]["worse"]
    if decision == "promote":
        return "WRONG" if bad else "right"
    return "right" if bad else "WRONG"


def exposure(df: pd.DataFrame, t: int, challenger_served: np.ndarray, fails: np.ndarray) -> dict[str, Any]:
    before = df["t"].to_numpy() < t
    n = int(before.sum())
    served = challenger_served & before
    return {
        "requests": n,
        "challenger_requests": int(served.sum()),
        "challenger_share": float(served.sum() / n) if n else 0.0,
        "client_errors": int((served & fails).sum()),
    }


def fixed_canary(df, name: str, quality: Quality, hours: int, start: dt.date) -> dict[str, Any]:
    """Today's canary before the ramp: 20 % from the start, quality alone."""
    prof = CHALLENGERS[name]["profile"]
    ch = df["bucket"].to_numpy() < FIXED["share"]
    fails = ch & (df["fails"].to_numpy() < prof.error_rate)  # the client got an error; nothing was logged
    day, lab = df["day"].to_numpy(), df["is_labelled"].to_numpy(dtype=bool)
    for t in range(hours + 1):
        rows = np.flatnonzero((day < t // 24) & lab & ~fails)
        per_arm = {"champion": int((~ch[rows]).sum()), "challenger": int(ch[rows].sum())}
        timed_out = t >= FIXED["wait_hours"]
        decision, why, q = None, None, None
        if min(per_arm.values()) >= FIXED["min_per_arm"]:
            q = quality(name, rows, ch)
            if q["decision"] != "inconclusive":
                decision, why = q["decision"], f"the paired comparison says {q['decision']}"
            elif min(per_arm.values()) >= FIXED["max_per_arm"] or timed_out:
                why = "each arm reached 3000" if not timed_out else "the 72 h were over"
                decision, why = "rollback", f"inconclusive when {why}: not shown to be no worse"
        elif timed_out:
            decision, why = "rollback", f"fewer than {FIXED['min_per_arm']} labelled flights per arm after 72 h"
        if decision:
            return result(df, name, decision, why, t, rows, per_arm, q, ch, fails, start, "20%")
    return result(df, name, "none", "no decision in the window", hours, rows, per_arm, q, ch, fails, start, "20%")


def ramp_rollout(df, name: str, quality: Quality, hours: int, start: dt.date, cfg, wait_hours: float):
    """The ramp: ``ramp.step`` at every hour on the evidence and the stage's signals."""
    from include.mlops.deploy import ramp

    prof = CHALLENGERS[name]["profile"]
    iso = lambda t: clock(start, t).isoformat()  # noqa: E731
    rollout = {"version": name, "champion": "champion", "started_at": iso(0), "status": "canary"}
    rollout = ramp.entered(rollout | {"stages": [dict(s) for s in cfg.stages]}, 0, iso(0), None)
    n = len(df)
    ft, day = df["t"].to_numpy(), df["day"].to_numpy()
    lab, bkt = df["is_labelled"].to_numpy(dtype=bool), df["bucket"].to_numpy()
    fail_draw = df["fails"].to_numpy() < prof.error_rate
    stage_at = np.full(n, -1)  # the stage each flight was served in
    ch = np.zeros(n, dtype=bool)  # answered by the challenger (a share, not the shadow)
    stages, last_step = [{"stage": "shadow", "entered_h": 0}], None
    for t in range(hours + 1):
        known = day < t // 24
        rows = np.flatnonzero(known & lab & ~(ch & fail_draw))
        ev = {"labelled": int(len(rows)), "enough": len(rows) >= cfg.max_labelled}
        days = len(np.unique(day[rows]))
        q = quality(name, rows, ch, by_day=True) if len(rows) >= cfg.min_labelled and days >= cfg.min_days else None
        i = int(rollout["stage"])
        share = float(rollout["canary_share"])
        in_stage = stage_at == i
        scored = in_stage if share <= 0 else in_stage & ch  # the shadow scores every flight the champion answers
        requests = int(scored.sum())
        # the agreement weighs every score the challenger gave since the start (deploy.signals): in the shadow
        # every flight the champion answered until the last stage, and those it served
        shares = np.array([float(x["share"]) for x in rollout["stages"]])
        in_shadow = (stage_at >= 0) & (shares[np.maximum(stage_at, 0)] < 1)  # scored in the shadow if not served
        by_challenger = (stage_at >= 0) & (in_shadow | ch)
        rescored = int((by_challenger & ~(ch & fail_draw)).sum())  # rescored from its logged inputs at once
        sig = ramp.Signals(
            requests=requests,
            p99_ms=prof.p99_ms if requests else None,
            error_rate=prof.error_rate if requests else None,
            memory_mb=MEMORY_MB,
            agreement=1.0 if rescored else None,
            rescored=rescored,
        )
        last_step = step = ramp.step(rollout, cfg.limits, sig, q, ev, clock(start, t), wait_hours)
        if step.action in ("promote", "rollback"):
            per_arm = {"champion": int((~ch[rows]).sum()), "challenger": int(ch[rows].sum())}
            out = result(df, name, step.action, step.why, t, rows, per_arm, q, ch, ch & fail_draw, start, None)
            return out | {"stage": ramp.stage_name(share), "stages": stages, "signals": sig.as_dict()}
        if step.action == "advance":
            rollout = ramp.entered(ramp.left(rollout, iso(t), "advance", step.why, sig), i + 1, iso(t), None)
            stages.append({"stage": ramp.stage_name(float(rollout["canary_share"])), "entered_h": t})
        now = ft == t
        share = float(rollout["canary_share"])
        stage_at[now] = int(rollout["stage"])
        ch[now] = bkt[now] < share
    per_arm = {"champion": int((~ch[rows]).sum()), "challenger": int(ch[rows].sum())}
    out = result(df, name, "none", last_step.why, hours, rows, per_arm, q, ch, ch & fail_draw, start, None)
    return out | {"stage": ramp.stage_name(share), "stages": stages}


REASONS = (
    ("the paired comparison shows harm on", "slice"),
    ("the paired comparison", "verdict"),
    ("the last stage passed and", "verdict"),
    ("over its limits", "limits"),
    ("inconclusive at", "cap"),
    ("inconclusive when each arm", "cap"),
    ("inconclusive when the", "wait"),
    ("no decision after", "wait"),
    ("fewer than", "wait"),
)


def reason(why: str) -> str:
    """What decided, in a word: the comparison's verdict, a crossed limit, the evidence cap, the wait."""
    return next((word for start, word in REASONS if why.startswith(start)), "-")


def result(df, name, decision, why, t, rows, per_arm, q, ch, fails, start, stage) -> dict[str, Any]:
    return {
        "challenger": name,
        "decision": decision,
        "reason": reason(why) if decision != "none" else "-",
        "why": why,
        "hour": t,
        "at": clock(start, t).strftime("%b %d %H:00"),
        "labelled": int(len(rows)),
        "labelled_by_arm": per_arm,
        "comparison": None
        if q is None
        else {"verdict": q["decision"], "diff": q["logloss"]["diff"], "ci95": q["logloss"]["ci95"]},
        "exposure": exposure(df, t, ch, fails),
        "outcome": outcome(name, decision),
        "stage": stage,
    }


def trajectory(df, names, quality: Quality, days: int) -> dict[str, list[dict[str, Any]]]:
    """The paired comparison at the start of each day on every labelled flight of the days before (the evidence
    both policies see, but for the slow challenger's failed requests under the fixed canary)."""
    day, lab = df["day"].to_numpy(), df["is_labelled"].to_numpy(dtype=bool)
    y = df["label"].to_numpy(dtype=float)
    on = (df[SLICE[0]] == SLICE[1]).to_numpy()
    none = np.zeros(len(df), dtype=bool)
    out = {}
    for name in names:
        out[name] = []
        for d in range(1, days + 1):
            rows = np.flatnonzero((day < d) & lab)
            q = quality(name, rows, none)
            own = (day == d - 1) & lab  # that day's flights alone: how much one day's weather moves the difference
            own_diff = logloss(y[own], quality.scores[name][own]) - logloss(y[own], quality.scores["champion"][own])
            sl = (day < d) & lab & on  # the slice's flights so far
            slice_diff = logloss(y[sl], quality.scores[name][sl]) - logloss(y[sl], quality.scores["champion"][sl])
            # the ramp's per-slice judgement of the slice (days as clusters, the interval widened for every slice
            # judged): its interval's lower end, and whether it is harmed
            judged = quality(name, rows, none, by_day=True)["slices"] if d >= 2 else {"table": [], "harmed": []}
            mine = [r for r in judged["table"] if (r["column"], r["value"]) == SLICE and "ci" in r]
            out[name].append(
                {"day": d, "labelled": int(len(rows)), "verdict": q["decision"], "day_diff": own_diff}
                | {"slice_diff": slice_diff, "slice_low": mine[0]["ci"][0] if mine else None}
                | {"slices_judged": judged.get("judged", 0), "harmed": judged["harmed"]}
                | q["logloss"]
            )
    return out


# ------------------------------------------------------------------------------------------------------ output
def markdown(res: dict[str, Any]) -> str:
    gt = res["ground_truth"]
    lines = [
        f"Rollout window {res['window']['rollout'][0]} to {res['window']['rollout'][1]} "
        f"({gt['_flights']['labelled']} labelled flights; slice {SLICE[0]} == {SLICE[1]}: "
        f"{gt['_flights']['slice']}, {gt['_flights']['slice_share']:.0%})",
        "",
        "| model | log-loss | diff vs champion | on the slice | diff on the slice | elsewhere | AUC |",
        "|---|---|---|---|---|---|---|",
    ]
    c = gt["champion"]
    for name in ["champion", *CHALLENGERS]:
        g = gt[name]
        lines.append(
            f"| {name} | {g['logloss']:.4f} | {g['logloss'] - c['logloss']:+.4f} | {g['logloss_slice']:.4f} | "
            f"{g['logloss_slice'] - c['logloss_slice']:+.4f} | {g['logloss_rest']:.4f} | {g['auc']:.3f} |"
        )
    lines += [
        "",
        "| policy | challenger | decision | at (hours since start) | stage | labelled flights | challenger's share "
        "of requests before | routed to it | client errors | decided by | |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in res["runs"]:
        e = r["exposure"]
        mark = f"**{r['outcome']}**" if r["outcome"] == "WRONG" else r["outcome"]
        lines.append(
            f"| {r['policy']} | {r['challenger']} | {r['decision']} | {r['hour']} h ({r['at']}) | {r['stage']} | "
            f"{r['labelled']:,} | {e['challenger_share']:.1%} | {e['challenger_requests']:,} | "
            f"{e['client_errors']} | {r['reason']} | {mark} |"
        )
    lines += [
        "",
        "The paired comparison at the start of each day on every labelled flight so far: verdict, log-loss "
        "difference (challenger - champion) [95 % CI]; in parentheses the difference on the previous day's flights "
        f"alone, and on the slice's ({SLICE[0]} == {SLICE[1]}) flights so far, with the lower end of its interval "
        "as the ramp judges it (days as clusters, widened for every slice judged) and the slices the ramp finds "
        "harmed",
        "",
    ]
    names = list(res["trajectory"])
    lines.append("| day | labelled | " + " | ".join(names) + " |")
    lines.append("|---|---|" + "---|" * len(names))
    for i, row in enumerate(res["trajectory"][names[0]]):
        cells = []
        for name in names:
            x = res["trajectory"][name][i]
            low = "" if x.get("slice_low") is None else f" > {x['slice_low']:+.3f}"
            harmed = f"; harmed: {', '.join(x['harmed'])}" if x.get("harmed") else ""
            cells.append(
                f"{x['verdict']} {x['diff']:+.4f} [{x['ci95'][0]:+.4f}, {x['ci95'][1]:+.4f}] (day {x['day_diff']:+.3f}, "
                f"slice {x['slice_diff']:+.3f}{low}{harmed})"
            )
        lines.append(f"| {row['day']} | {row['labelled']:,} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--train-days", type=int, default=28)
    ap.add_argument("--rollout-days", type=int, default=14)
    ap.add_argument(
        "--bootstrap",
        type=int,
        default=0,
        help="resamples for compare's AUC interval (deploy.yaml's value: -1); the verdict does not use it",
    )
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "rollout"))
    args = ap.parse_args()
    t0 = time.time()
    home = isolate()

    from include.mlops.core.config import Settings
    from include.mlops.core.frame import join_sources, load_window
    from include.mlops.core.lake import Lake
    from include.mlops.deploy import curated
    from include.mlops.deploy.config import DeployConfig

    lake = Lake(Settings.from_env().lake_url)
    train_end = FIRST_DAY + dt.timedelta(days=args.train_days - 1)
    start = train_end + dt.timedelta(days=1)
    curate(lake, FIRST_DAY, args.train_days + args.rollout_days + 1)  # + 1: the weather of the last evening
    fl, we, _ = load_window(lake, train_end, args.train_days)
    t_data = time.time() - t0

    models, meta = {}, {}
    models["champion"], meta["champion"] = fit(fl, we, (0.15, 0.15), {}, 20)
    reg = {"num_leaves": 15, "min_data_in_leaf": 200}
    models["better"], meta["better"] = fit(fl, we, (0.04, 0.04), reg, 60)
    models["worse"], meta["worse"] = fit(fl, we, (0.15, 0.15), {}, 100, shuffle_seed=0)
    train_rows = curated.features(join_sources(fl, we))
    on = (train_rows[SLICE[0]] == SLICE[1]).to_numpy()
    models["slice_worse"] = slice_randomised(models["better"], *SLICE, models["better"].predict(train_rows)[on])
    meta["slice_worse"] = meta["better"]
    models["slow"], meta["slow"] = fit(fl, we, (0.15, 0.15), {"seed": 8, "feature_fraction": 0.8}, 20)
    t_models = time.time() - t0 - t_data

    df = rollout_frame(lake, start, args.rollout_days)
    scores = {name: np.asarray(m.predict(df), dtype=float) for name, m in models.items()}
    gt = ground_truth(df, scores)
    print(f"data {t_data:.0f} s, models {t_models:.0f} s; rollout window: {len(df)} flights", flush=True)
    for name in ["champion", *CHALLENGERS]:
        g = gt[name]
        print(
            f"  {name:12s} log-loss {g['logloss']:.4f} ({g['logloss'] - gt['champion']['logloss']:+.4f}); "
            f"on {SLICE[1]} {g['logloss_slice']:.4f} ({g['logloss_slice'] - gt['champion']['logloss_slice']:+.4f}); "
            f"elsewhere {g['logloss_rest']:.4f}; AUC {g['auc']:.3f}",
            flush=True,
        )
    for name, better in (("better", True), ("worse", False)):
        if (gt[name]["logloss"] < gt["champion"]["logloss"]) != better:
            print(f"WARNING: the planted {name!r} challenger is not {name} than the champion on the window")

    cfg = DeployConfig.load()
    if args.bootstrap >= 0:
        cfg = cfg.replace(bootstrap=args.bootstrap)
    quality = Quality(df, models, scores, cfg)
    hours = args.rollout_days * 24
    runs = []
    for name in CHALLENGERS:
        runs.append({"policy": "fixed 20 %"} | fixed_canary(df, name, quality, hours, start))
        for wait in (FIXED["wait_hours"], float(hours)):
            r = ramp_rollout(df, name, quality, hours, start, cfg, wait)
            runs.append({"policy": f"ramp, wait {wait:g} h"} | r)
    runs.sort(key=lambda r: (list(CHALLENGERS).index(r["challenger"]), r["policy"]))
    for r in runs:
        e = r["exposure"]
        print(
            f"{r['policy']:18s} {r['challenger']:12s} {r['decision']:8s} at {r['hour']:3d} h ({r['stage']}), "
            f"{r['labelled']} labelled, routed to the challenger {e['challenger_requests']} "
            f"({e['challenger_share']:.1%}), {e['client_errors']} client errors: {r['outcome']} ({r['reason']}) -- "
            f"{r['why']}",
            flush=True,
        )
    traj = trajectory(df, list(CHALLENGERS), quality, args.rollout_days)
    wall = time.time() - t0
    res = {
        "date": dt.date.today().isoformat(),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
        "window": {
            "train": [FIRST_DAY.isoformat(), train_end.isoformat()],
            "rollout": [start.isoformat(), (start + dt.timedelta(days=args.rollout_days - 1)).isoformat()],
        },
        "deploy": cfg.as_dict(),
        "fixed": FIXED,
        "challengers": {
            n: {"what": c["what"], "worse": c["worse"], "profile": c["profile"].__dict__}
            for n, c in CHALLENGERS.items()
        }
        | {"_memory_mb": MEMORY_MB, "_slice": list(SLICE)},
        "models": meta,
        "ground_truth": gt,
        "runs": runs,
        "trajectory": traj,
        "compare": {"calls": quality.calls, "seconds": round(quality.seconds, 1)},
        "wall_s": round(wall, 1),
        "home": str(home),
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(res, indent=2, default=str))
    out.with_suffix(".md").write_text(markdown(res))
    print(f"\n{markdown(res)}\ncompare: {quality.calls} calls, {quality.seconds:.0f} s; wall time {wall:.0f} s")
    print(f"written: {out.with_suffix('.md')}, {out.with_suffix('.json')}")


if __name__ == "__main__":
    main()
