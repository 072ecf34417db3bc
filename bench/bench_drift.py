"""Our drift statistics (include/mlops/monitor/drift.py, vectorised NumPy) against Evidently's DataDriftPreset.

Same data for both: a reference and a current table of --rows rows x --features features (by default 1,000,000 x
20: 16 numeric of various distributions, 4 categorical), generated from a seed and written to Parquet in a
temporary folder; in the current table a known subset of features is shifted by a chosen amount, the others are
drawn from the same distributions again. Each side runs in its own fresh process, which loads the Parquet files
and then measures wall time and its peak resident memory above its own baseline after loading (VmHWM reset
through /proc/self/clear_refs, minus VmRSS at that point).

Sides (each its own process):
  evidently   ``Report([DataDriftPreset()], include_tests=True).run(current, reference)`` with a DataDefinition
              naming the numeric and categorical columns; Evidently 0.7.23 in its own venv
              (bench/.venv-evidently, created on first run: downloads evidently from PyPI)
  ours        Evidently's default decision rules reproduced with our statistics, exactly, on the raw samples:
              numeric with more than 5 distinct values: normed Wasserstein >= 0.1; numeric with at most 5
              distinct values and categorical: Jensen-Shannon distance (natural log) on value shares >= 0.1
  ours-full   everything monitoring computes on raw samples: KS D, PSI, normed Wasserstein and KL divergence
              (on the PSI bins) per numeric feature; PSI, Jensen-Shannon, KL and unseen share per categorical
              one (same decision rule); each statistic's own seconds (all features, median run) reported too
  evidently-stattests
              Evidently's own default tests called once per column (its get_stattest + the test), without
              the preset: the cost of its statistics alone (the preset computes each column's test three
              times, for ValueDrift, DriftedColumnsCount and the rendered table, and builds plotly figures)
  profile     the production path: profile the reference once (numeric_profile / categorical_profile, to JSON
              and back), then compare the current table against the profile (numeric_drift /
              categorical_drift); same decision rule, with the statistics the profile gives

    .venv/bin/python bench/bench_drift.py [--rows 1000000] [--features 20] [--repeats 3]
        [--evidently-repeats 1] [--json bench/results/drift.json]
"""

from __future__ import annotations

import argparse
import datetime as dt
import gc
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
EVIDENTLY_VENV = HERE / ".venv-evidently"
EVIDENTLY_REQUIREMENTS = HERE / "requirements-evidently.txt"
THRESHOLD = 0.1  # Evidently's default for normed Wasserstein and Jensen-Shannon distance
FEW_VALUES = 5  # Evidently: a numeric column with at most this many distinct values is tested like a category
MIN_ROWS = 1000  # Evidently: reference rows above this use the distances; at or below, p-value tests


# ------------------------------------------------------------------------------------------------------ data
def _normal(mu, sd):
    return lambda rng, n: rng.normal(mu, sd, n)


def _with_missing(gen, share):
    def f(rng, n):
        a = gen(rng, n)
        a[rng.random(n) < share] = np.nan
        return a

    return f


def _cats(labels, p):
    labels, p = np.asarray(labels, dtype=object), np.asarray(p, dtype="float64")
    return lambda rng, n: labels[rng.choice(len(labels), size=n, p=p / p.sum())]


_ZIPF = np.arange(1, 21)
_C50 = [f"v{i:02d}" for i in range(50)]

# name: (reference generator, current generator, expected to drift under Evidently's rules)
NUMERIC = [
    ("normal_shift30", _normal(0, 1), _normal(0.3, 1), True),  # W/sd = 0.30
    ("normal_stable", _normal(10, 2), _normal(10, 2), False),
    (
        "lognormal_scale120",
        lambda r, n: r.lognormal(0, 0.75, n),
        lambda r, n: 1.2 * r.lognormal(0, 0.75, n),
        True,
    ),  # W/sd ~ 0.23
    ("exponential_stable", lambda r, n: r.exponential(1.0, n), lambda r, n: r.exponential(1.0, n), False),
    ("uniform_shift1", lambda r, n: r.uniform(0, 100, n), lambda r, n: r.uniform(1, 101, n), False),  # 0.035
    ("gamma_stable", lambda r, n: r.gamma(2.0, 3.0, n), lambda r, n: r.gamma(2.0, 3.0, n), False),
    ("beta_stable", lambda r, n: r.beta(2, 5, n), lambda r, n: r.beta(2, 5, n), False),
    ("t5_stable", lambda r, n: r.standard_t(5, n), lambda r, n: r.standard_t(5, n), False),
    (
        "normal_scale150_missing",
        _with_missing(_normal(0, 1), 0.02),
        _with_missing(_normal(0, 1.5), 0.05),
        True,
    ),  # W/sd ~ 0.40, missing 2 -> 5 %
    (
        "poisson_rate",
        lambda r, n: r.poisson(3.0, n).astype("float64"),
        lambda r, n: r.poisson(3.5, n).astype("float64"),
        True,
    ),  # W/sd ~ 0.29
    (
        "binary_rate",
        lambda r, n: (r.random(n) < 0.30).astype("float64"),
        lambda r, n: (r.random(n) < 0.36).astype("float64"),
        False,
    ),  # JS 0.045 (but W/sd 0.13)
    (
        "bimodal_stable",
        lambda r, n: np.where(r.random(n) < 0.4, r.normal(-2, 0.5, n), r.normal(2, 1, n)),
        lambda r, n: np.where(r.random(n) < 0.4, r.normal(-2, 0.5, n), r.normal(2, 1, n)),
        False,
    ),
    (
        "int10_stable",
        lambda r, n: r.integers(0, 10, n).astype("float64"),
        lambda r, n: r.integers(0, 10, n).astype("float64"),
        False,
    ),
    ("normal_shift12", _normal(0, 1), _normal(0.12, 1), True),  # W/sd = 0.12, near the line
    ("pareto_stable", lambda r, n: r.pareto(3.0, n) + 1, lambda r, n: r.pareto(3.0, n) + 1, False),
    ("normal_shift08", _normal(5, 1), _normal(5.08, 1), False),  # W/sd = 0.08, near the line
]
CATEGORICAL = [
    ("cat5_stable", _cats(list("abcde"), np.ones(5)), _cats(list("abcde"), np.ones(5)), False),
    (
        "cat20_zipf_shift",
        _cats([f"k{i:02d}" for i in _ZIPF], 1 / _ZIPF**1.1),
        _cats([f"k{i:02d}" for i in _ZIPF], 1 / _ZIPF**0.6),
        True,
    ),  # JS ~ 0.17
    (
        "cat3_small_shift",
        _cats(["x", "y", "z"], [0.5, 0.3, 0.2]),
        _cats(["x", "y", "z"], [0.47, 0.32, 0.21]),
        False,
    ),  # JS ~ 0.02
    (
        "cat50_new_category",
        _cats(_C50, np.ones(50)),
        _cats(_C50 + ["unseen"], np.r_[np.ones(50) * 0.95 / 50, 0.05] * 50),
        True,
    ),  # JS ~ 0.13
]


def layout(features: int) -> tuple[list[tuple], list[tuple]]:
    """The feature list: a fifth categorical (at least one), the rest numeric, cycling the templates above."""
    n_cat = max(1, round(features / 5))
    n_num = features - n_cat
    num = [(f"n{i:02d}_{NUMERIC[i % len(NUMERIC)][0]}",) + NUMERIC[i % len(NUMERIC)][1:] for i in range(n_num)]
    cat = [
        (f"c{i:02d}_{CATEGORICAL[i % len(CATEGORICAL)][0]}",) + CATEGORICAL[i % len(CATEGORICAL)][1:]
        for i in range(n_cat)
    ]
    return num, cat


def generate(folder: Path, rows: int, features: int, seed: int) -> dict:
    num, cat = layout(features)
    ref, cur = {}, {}
    for j, (name, g_ref, g_cur, _) in enumerate(num + cat):
        rng = np.random.default_rng([seed, j])
        ref[name], cur[name] = g_ref(rng, rows), g_cur(rng, rows)
    pd.DataFrame(ref).to_parquet(folder / "reference.parquet", index=False)
    pd.DataFrame(cur).to_parquet(folder / "current.parquet", index=False)
    spec = {
        "rows": rows,
        "numeric": [f[0] for f in num],
        "categorical": [f[0] for f in cat],
        "expected": sorted(f[0] for f in num + cat if f[3]),
    }
    (folder / "spec.json").write_text(json.dumps(spec))
    return spec


# --------------------------------------------------------------------------------------------------- memory
def _status_kb(key: str) -> int:
    for line in open("/proc/self/status"):
        if line.startswith(key + ":"):
            return int(line.split()[1])
    return 0


class PeakMemory:
    """Peak resident memory above the level at start: VmHWM reset with /proc/self/clear_refs (Linux)."""

    def __enter__(self):
        gc.collect()
        self.base_kb = _status_kb("VmRSS")
        try:
            Path("/proc/self/clear_refs").write_text("5")
            self.exact = True
        except OSError:  # peak since process start then: an upper bound
            self.exact = False
        return self

    def __exit__(self, *exc):
        self.peak_kb = _status_kb("VmHWM")

    @property
    def above_mb(self) -> float:
        return (self.peak_kb - self.base_kb) / 1024


def _timed(fn, repeats: int) -> tuple[list[float], object, PeakMemory]:
    times, out = [], None
    with PeakMemory() as mem:
        for _ in range(repeats):
            t = time.perf_counter()
            out = fn()
            times.append(time.perf_counter() - t)
    return times, out, mem


# ----------------------------------------------------------------------------------------------- our sides
def _floats(s: pd.Series) -> np.ndarray:
    return s.to_numpy(dtype="float64", na_value=np.nan)


def _value_shares(a: np.ndarray) -> dict[str, float]:
    """Shares of each distinct value (NaN left out), keyed like category_shares keys them (str)."""
    a = a[~np.isnan(a)]
    v, n = np.unique(a, return_counts=True)
    return {str(float(x)): float(c) / max(a.size, 1) for x, c in zip(v, n)}


def _few_values(r: np.ndarray, c: np.ndarray) -> bool:
    """At most FEW_VALUES distinct non-missing values in reference and current together (Evidently's rule)."""
    head = np.unique(np.concatenate([r[:4096], c[:4096]]))
    if head[~np.isnan(head)].size > FEW_VALUES:
        return False
    both = np.unique(np.concatenate([r, c]))
    return both[~np.isnan(both)].size <= FEW_VALUES


def _decide(method: str, score: float) -> dict:
    return {"method": method, "score": float(score), "drifted": bool(score >= THRESHOLD)}


def _kl(r: np.ndarray, c: np.ndarray) -> float:
    """KL(current || reference) on the reference's PSI bins, as monitoring computes it (drift.py)."""
    from include.mlops.monitor import drift as D

    edges = D.psi_edges(r)
    return D.kl_divergence(D.bin_shares(r, edges), D.bin_shares(c, edges))


def ours_evidently_rules(
    ref: pd.DataFrame, cur: pd.DataFrame, spec: dict, full: bool = False, seconds: dict | None = None
) -> dict:
    """``seconds`` (full set): each numeric statistic's time over all features is added to it ("ks", "psi",
    "wasserstein", "kl"), and the categorical features' ``categorical_drift`` as "categorical" (its cost is the
    category shares; PSI, JS and KL on the shares take microseconds)."""
    from include.mlops.monitor import drift as D

    seconds = {} if seconds is None else seconds

    def timed(key: str, fn, *args):
        t = time.perf_counter()
        value = fn(*args)
        seconds[key] = seconds.get(key, 0.0) + time.perf_counter() - t
        return value

    out = {}
    for col in spec["numeric"]:
        r, c = _floats(ref[col]), _floats(cur[col])
        if _few_values(r, c):
            res = _decide("jensenshannon", D.js_distance(*D._aligned(_value_shares(r), _value_shares(c))))
        else:
            res = _decide("wasserstein", D.wasserstein(r, c, normed=True))
        if full:
            res |= {
                "ks": timed("ks", D.ks_statistic, r, c),
                "psi": timed("psi", D.psi, r, c),
                "wasserstein": timed("wasserstein", D.wasserstein, r, c),
                "kl": timed("kl", _kl, r, c),
                "missing_ref": D.missing_share(r),
                "missing_cur": D.missing_share(c),
            }
        out[col] = res
    for col in spec["categorical"]:
        ref_shares = D.category_shares(ref[col])
        if full:  # production's form: categories the reference never saw pooled as UNSEEN
            stats = timed("categorical", D.categorical_drift, ref_shares, cur[col])
            out[col] = _decide("jensenshannon", stats["js"]) | stats
        else:  # Evidently's form: every category of either side on its own
            out[col] = _decide("jensenshannon", D.js_distance(*D._aligned(ref_shares, D.category_shares(cur[col]))))
    return out


def ours_profile(ref: pd.DataFrame, spec: dict) -> dict:
    """The reference's profile as monitoring stores it (through JSON); few-valued numeric features also keep
    their value shares, decided on the reference alone (Evidently decides on reference and current together)."""
    from include.mlops.core import profile as P

    prof = {}
    for col in spec["numeric"]:
        r = _floats(ref[col])
        prof[col] = P.numeric_profile(r)
        clean = r[~np.isnan(r)]
        if np.unique(clean[:4096]).size <= FEW_VALUES and np.unique(clean).size <= FEW_VALUES:
            prof[col]["value_shares"] = _value_shares(r)
    for col in spec["categorical"]:
        prof[col] = P.categorical_profile(ref[col])
    return json.loads(json.dumps(prof))


def ours_against_profile(prof: dict, cur: pd.DataFrame, spec: dict) -> dict:
    from include.mlops.monitor import drift as D

    out = {}
    for col in spec["numeric"]:
        c = _floats(cur[col])
        stats = D.numeric_drift(prof[col], c)
        if "value_shares" in prof[col]:
            known = prof[col]["value_shares"]
            cs: dict[str, float] = {}
            for k, v in _value_shares(c).items():
                key = k if k in known else D.UNSEEN
                cs[key] = cs.get(key, 0.0) + v
            out[col] = _decide("jensenshannon", D.js_distance(*D._aligned(known, cs))) | stats
        else:
            out[col] = _decide("wasserstein", stats["wasserstein"]) | stats
    for col in spec["categorical"]:
        stats = D.categorical_drift(prof[col]["shares"], cur[col])
        out[col] = _decide("jensenshannon", stats["js"]) | stats
    return out


# -------------------------------------------------------------------------------------------- Evidently side
def evidently_run(ref: pd.DataFrame, cur: pd.DataFrame, spec: dict) -> dict:
    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataDriftPreset

    t0 = time.perf_counter()
    dd = DataDefinition(numerical_columns=spec["numeric"], categorical_columns=spec["categorical"])
    r = Dataset.from_pandas(ref, data_definition=dd)
    c = Dataset.from_pandas(cur, data_definition=dd)
    t1 = time.perf_counter()
    snapshot = Report([DataDriftPreset()], include_tests=True).run(c, r)
    t2 = time.perf_counter()
    d = snapshot.dict()
    t3 = time.perf_counter()
    out: dict = {}
    for m in d["metrics"]:
        cfg = m.get("config", {})
        if cfg.get("type", "").endswith(":ValueDrift"):
            out[cfg["column"]] = {"method": cfg["method"], "threshold": cfg["threshold"], "score": float(m["value"])}
    for t in d["tests"]:
        params = t.get("metric_config", {}).get("params", {})
        if params.get("type", "").endswith(":ValueDrift"):
            out[params["column"]]["drifted"] = t["status"] == "FAIL"
    return {"features": out, "dataset_s": t1 - t0, "run_s": t2 - t1, "dict_s": t3 - t2}


def evidently_stattests(ref: pd.DataFrame, cur: pd.DataFrame, spec: dict) -> dict:
    """Evidently's own default tests, once per column, without the preset (no Dataset, no repeats, no plots):
    what its statistics alone cost, as the preset cleans and selects them."""
    from evidently.legacy.calculations.stattests.registry import get_stattest
    from evidently.legacy.core import ColumnType

    out = {}
    for cols, kind in ((spec["numeric"], ColumnType.Numerical), (spec["categorical"], ColumnType.Categorical)):
        for col in cols:
            r = ref[col].replace([-np.inf, np.inf], np.nan).dropna()
            c = cur[col].replace([-np.inf, np.inf], np.nan).dropna()
            test = get_stattest(r, c, kind, None)
            res = test(r, c, kind, None)
            out[col] = {
                "method": test.display_name,
                "threshold": res.actual_threshold,
                "score": float(res.drift_score),
                "drifted": bool(res.drifted),
            }
    return out


# ------------------------------------------------------------------------------------------------- workers
def worker(side: str, folder: Path, repeats: int) -> dict:
    spec = json.loads((folder / "spec.json").read_text())
    t = time.perf_counter()
    if side.startswith("evidently"):
        os.environ.setdefault("DO_NOT_TRACK", "1")  # no usage telemetry from the benchmark
        import evidently
        from evidently import Report  # noqa: F401  (import cost outside the measurement)

        version = evidently.__version__
    else:
        sys.path.insert(0, str(ROOT))
        from include.mlops.monitor import drift  # noqa: F401

        version = "numpy " + np.__version__
    import_s = time.perf_counter() - t
    t = time.perf_counter()
    ref = pd.read_parquet(folder / "reference.parquet")
    cur = pd.read_parquet(folder / "current.parquet")
    load_s = time.perf_counter() - t
    res: dict = {"side": side, "version": version, "pandas": pd.__version__, "import_s": import_s, "load_s": load_s}

    if side == "evidently":
        times, out, mem = _timed(lambda: evidently_run(ref, cur, spec), repeats)
        res |= {k: out[k] for k in ("dataset_s", "run_s", "dict_s")}
        features = out["features"]
    elif side == "evidently-stattests":
        times, features, mem = _timed(lambda: evidently_stattests(ref, cur, spec), repeats)
    elif side in ("ours", "ours-full"):
        per_run: list[dict] = []  # each run's seconds per statistic (full set)

        def run_once() -> dict:
            per_run.append({})
            return ours_evidently_rules(ref, cur, spec, full=side == "ours-full", seconds=per_run[-1])

        times, features, mem = _timed(run_once, repeats)
        if side == "ours-full":
            res["statistic_s"] = {k: statistics.median(r[k] for r in per_run) for k in per_run[0]}
    elif side == "profile":
        build_times, prof, build_mem = _timed(lambda: ours_profile(ref, spec), 1)
        res |= {
            "build_s": build_times[0],
            "build_peak_mb": build_mem.above_mb,
            "profile_kb": len(json.dumps(prof)) / 1024,
        }
        del ref
        times, features, mem = _timed(lambda: ours_against_profile(prof, cur, spec), repeats)
    else:
        raise SystemExit(f"unknown side {side}")
    return res | {
        "times_s": times,
        "median_s": statistics.median(times),
        "peak_mb": mem.above_mb,
        "baseline_mb": mem.base_kb / 1024,
        "peak_exact": mem.exact,
        "features": features,
    }


def run_worker(python: str, side: str, folder: Path, repeats: int) -> dict:
    cmd = [python, str(Path(__file__).resolve()), "--worker", side, "--data", str(folder), "--repeats", str(repeats)]
    out = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    if out.returncode:
        raise SystemExit(f"{side} worker failed:\n{out.stderr[-4000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def ensure_evidently_venv() -> str:
    """bench/.venv-evidently with requirements-evidently.txt; created (from PyPI) only when missing."""
    py = EVIDENTLY_VENV / "bin" / "python"
    pins = [ln.split("==") for ln in EVIDENTLY_REQUIREMENTS.read_text().splitlines() if "==" in ln]
    check = [
        str(py),
        "-c",
        "import importlib.metadata as m; print(all(m.version(n) == v for n, v in "
        f"{[(n.strip(), v.strip()) for n, v in pins]!r}))",
    ]
    if py.exists() and subprocess.run(check, capture_output=True, text=True).stdout.strip() == "True":
        return str(py)
    print(
        f"creating {EVIDENTLY_VENV.relative_to(ROOT)} (pip install -r {EVIDENTLY_REQUIREMENTS.name}, "
        "downloads evidently from PyPI)",
        flush=True,
    )
    subprocess.run([sys.executable, "-m", "venv", str(EVIDENTLY_VENV)], check=True)
    subprocess.run([str(py), "-m", "pip", "install", "-q", "-r", str(EVIDENTLY_REQUIREMENTS)], check=True)
    return str(py)


# ---------------------------------------------------------------------------------------------------- main
def _drifted(res: dict) -> list[str]:
    return sorted(k for k, v in res["features"].items() if v.get("drifted"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=1_000_000, help="rows in reference and in current")
    ap.add_argument("--features", type=int, default=20)
    ap.add_argument("--repeats", type=int, default=3, help="timed runs of our sides (median reported)")
    ap.add_argument("--evidently-repeats", type=int, default=1, help="timed runs of Evidently")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", help="write all results here")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--data", help=argparse.SUPPRESS)
    args = ap.parse_args()

    if args.worker:
        print(json.dumps(worker(args.worker, Path(args.data), args.repeats)), flush=True)
        return
    if args.rows <= MIN_ROWS:
        raise SystemExit(
            f"--rows must be above {MIN_ROWS}: at or below, Evidently switches to p-value tests "
            "that this benchmark does not reproduce"
        )

    evidently_py = ensure_evidently_venv()
    started = dt.datetime.now()
    with tempfile.TemporaryDirectory(prefix="bench_drift_") as tmp:
        folder = Path(tmp)
        t = time.perf_counter()
        spec = generate(folder, args.rows, args.features, args.seed)
        print(
            f"data: {args.rows:,} x {args.features} ({len(spec['numeric'])} numeric, "
            f"{len(spec['categorical'])} categorical), reference + current, generated in "
            f"{time.perf_counter() - t:.1f} s",
            flush=True,
        )
        results = {}
        for side, py, n in (
            ("ours", sys.executable, args.repeats),
            ("ours-full", sys.executable, args.repeats),
            ("profile", sys.executable, args.repeats),
            ("evidently-stattests", evidently_py, args.repeats),
            ("evidently", evidently_py, args.evidently_repeats),
        ):
            results[side] = run_worker(py, side, folder, n)
            r = results[side]
            extra = f", profile build {r['build_s']:.2f} s" if side == "profile" else ""
            if side == "ours-full":
                extra = ", per statistic (median run): " + ", ".join(
                    f"{k} {v:.2f} s" for k, v in r["statistic_s"].items()
                )
            print(
                f"{side:10s} median {r['median_s']:7.2f} s over {len(r['times_s'])} "
                f"(runs: {', '.join(f'{x:.2f}' for x in r['times_s'])}), peak +{r['peak_mb']:,.0f} MB{extra}",
                flush=True,
            )

    ev = results["evidently"]
    expected = spec["expected"]
    print(
        f"\n{'feature':34s} {'expected':>8s} | {'Evidently method':30s} {'score':>7s} drift | "
        f"{'ours':>7s} drift | {'full':>5s} | {'profile':>7s} drift"
    )
    for col in spec["numeric"] + spec["categorical"]:
        e, o, f, p = (results[s]["features"][col] for s in ("evidently", "ours", "ours-full", "profile"))
        print(
            f"{col:34s} {str(col in expected):>8s} | {e['method']:30s} {e['score']:7.4f} {e['drifted']!s:5s} | "
            f"{o['score']:7.4f} {o['drifted']!s:5s} | {f['drifted']!s:5s} | {p['score']:7.4f} {p['drifted']!s:5s}"
        )

    drifted = {s: _drifted(results[s]) for s in results}
    sides = {}
    for s, r in results.items():
        sides[s] = {
            "median_s": r["median_s"],
            "peak_mb": r["peak_mb"],
            "drifted": len(drifted[s]),
            "agrees_with_evidently": drifted[s] == drifted["evidently"],
            "differs_from_evidently": sorted(set(drifted[s]) ^ set(drifted["evidently"])),
            "max_abs_score_diff_vs_evidently": max(
                abs(r["features"][c]["score"] - ev["features"][c]["score"]) for c in ev["features"]
            ),
            "time_ratio_evidently_over_this": ev["median_s"] / r["median_s"],
            "memory_ratio_evidently_over_this": ev["peak_mb"] / max(r["peak_mb"], 1e-9),
        }
    summary = {
        "date": started.date().isoformat(),
        "command": " ".join([".venv/bin/python", "bench/bench_drift.py"] + sys.argv[1:]),
        "machine": f"{os.cpu_count()} cores, {platform.machine()}, Python {platform.python_version()}",
        "rows": args.rows,
        "features": args.features,
        "expected": expected,
        "drifted": drifted,
        "sides": sides,
        "full_set_statistic_s": results["ours-full"]["statistic_s"],
        "profile_build_s": results["profile"]["build_s"],
        "profile_kb": results["profile"]["profile_kb"],
        "evidently_breakdown_s": {k: ev[k] for k in ("import_s", "dataset_s", "run_s", "dict_s")},
        "statistics_only_ratio_evidently_stattests_over_ours": results["evidently-stattests"]["median_s"]
        / results["ours"]["median_s"],
    }
    print(
        f"\n{'side':20s} {'median s':>9s} {'peak MB':>8s} {'Evidently/this: time':>21s} {'memory':>7s}  "
        "drifted, agrees with Evidently"
    )
    for s, v in sides.items():
        print(
            f"{s:20s} {v['median_s']:9.2f} {v['peak_mb']:8.0f} {v['time_ratio_evidently_over_this']:20.1f}x "
            f"{v['memory_ratio_evidently_over_this']:6.1f}x  {v['drifted']}, {v['agrees_with_evidently']}"
            + (f" (differs on {', '.join(v['differs_from_evidently'])})" if v["differs_from_evidently"] else "")
        )
    print(
        f"expected drifted: {len(expected)}; Evidently import {ev['import_s']:.1f} s (not timed); "
        f"profile build {results['profile']['build_s']:.2f} s, {results['profile']['profile_kb']:.0f} KB of JSON"
    )
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps({"summary": summary, "results": results}, indent=2, default=str))


if __name__ == "__main__":
    main()
