"""Monitoring's daily HTML report: the signals, the drift of each feature with a chart, live performance, the
training/serving skew of the request fields, the prediction service's latency and errors."""

from __future__ import annotations

import html
from typing import Any

import numpy as np

from ..core.reports import svg_chart, table
from .drift import STATISTICS

NUMERIC_STATS = list(STATISTICS["numeric"])
STATS = NUMERIC_STATS + [s for s in STATISTICS["categorical"] if s not in NUMERIC_STATS]


def _feature_plots(report: dict[str, Any], profile: dict[str, Any], current, scores) -> str:
    """Reference against current per feature: CDFs for numeric features (on the reference's range), shares of
    the reference's top categories for categorical ones; the score's CDF too when the service served."""
    rows = report["features"] + (
        [{"feature": "score", "kind": "numeric", "drifted": report["prediction"]["drifted"]}]
        if len(scores) and profile.get("score")
        else []
    )
    levels = np.linspace(0, 1, 101)
    out = []
    for row in rows:
        name = row["feature"]
        ref = profile["score"] if name == "score" else profile["features"][name]
        if ref["kind"] == "numeric" and ref["quantiles"]:
            q = np.asarray(ref["quantiles"], dtype="float64")
            cur = np.asarray(scores if name == "score" else current[name], dtype="float64")
            cur = cur[~np.isnan(cur)]
            cq = np.quantile(cur, levels) if cur.size else np.array([])
            lo, hi = float(min(q[0], cq.min() if cq.size else q[0])), float(max(q[-1], cq.max() if cq.size else q[-1]))
            span = (hi - lo) or 1.0
            rq = np.interp(levels, np.linspace(0, 1, q.size), q)
            out.append(
                svg_chart(
                    name,
                    row.get("drifted"),
                    [
                        ("reference", "#1f77b4", [((x - lo) / span, y) for x, y in zip(rq, levels)]),
                        ("current", "#ff7f0e", [((x - lo) / span, y) for x, y in zip(cq, levels)]),
                    ],
                )
            )
        elif ref["kind"] == "categorical":
            top = sorted(ref["shares"], key=lambda k: -ref["shares"][k])[:8]
            cur = current[name].astype("object").dropna().astype(str).value_counts(normalize=True)
            out.append(
                svg_chart(
                    name,
                    row.get("drifted"),
                    [],
                    bars=(top, [ref["shares"][k] for k in top], [float(cur.get(k, 0.0)) for k in top]),
                )
            )
    return "<div>" + "".join(out) + "</div>"


def _service(s: dict[str, Any]) -> str:
    """The prediction service's period: requests, p50/p99, 5xx and 4xx rates, per route and per arm/version."""

    def ms(v):
        return "n/a" if v is None else f"{v:.1f} ms"

    def rate(v):
        return "n/a" if v is None else f"{v:.2%}"

    up = [k for k, v in (s.get("signals") or {}).items() if v]
    facts = {"status": s.get("status"), "url": s.get("url")}
    if s.get("status") == "ok":
        facts |= {
            "period": f"{s.get('from') or 'service start'} .. {s.get('to')}"
            + (" (counters reset)" if s.get("reset") else ""),
            "requests (/predict, /predict/batch)": s.get("requests"),
            "latency p50 / p99": f"{ms(s.get('p50_ms'))} / {ms(s.get('p99_ms'))}",
            "5xx rate": f"{rate(s.get('error_rate'))} ({s.get('errors')})",
            "rejected (4xx) rate": f"{rate(s.get('rejected_rate'))} ({s.get('rejected')})",
        }
    facts |= {
        "error": s.get("error"),
        "note": s.get("note"),
        "thresholds": ", ".join(f"{k} {v}" for k, v in (s.get("thresholds") or {}).items() if v is not None) or None,
        "signals up (alert, no retraining)": ", ".join(up) or "none",
        "why": "; ".join(s.get("reasons") or []) or None,
    }
    li = "".join(
        f"<li><b>{html.escape(str(k))}</b>: {html.escape(str(v))}</li>" for k, v in facts.items() if v is not None
    )
    out = f"<h3>Prediction service</h3><ul>{li}</ul>"
    if s.get("status") == "ok":
        routes = [
            {"route": r, **{k: ms(v) if k.endswith("_ms") else v for k, v in row.items()}}
            for r, row in (s.get("by_route") or {}).items()
        ]
        out += table(routes, ["route", "requests", "p50_ms", "p99_ms", "errors", "rejected"])
        arms = [
            {**row, "p50_ms": ms(row.get("p50_ms")), "p99_ms": ms(row.get("p99_ms"))} for row in s.get("by_arm") or []
        ]
        out += table(arms, ["route", "arm", "version", "requests", "p50_ms", "p99_ms"])
    return out


def _skew(s: dict[str, Any]) -> str:
    """Training/serving skew: per feature the rows compared, the share whose logged request field differs from
    the curated value, the mean absolute difference (numeric); a skewed feature's row marked."""
    if not s:
        return ""

    def pct(v):
        return "n/a" if v is None or v != v else f"{v:.2%}"

    limit = s.get("max_mismatch")
    if not s.get("features"):
        verdict = "no request fields logged for the window's curated rows"
    elif not s.get("judged"):
        verdict = f"not judged: {s.get('rows')} rows compared, {s.get('min_rows')} needed"
    elif limit is None:
        verdict = "reported, not judged (max_mismatch null)"
    else:
        verdict = f"skewed: {', '.join(s.get('skewed') or []) or 'none'} (threshold {pct(limit)})"
    facts = (
        f"{s.get('rows')} served rows compared with curation's; {s.get('unmatched')} served rows curation does "
        f"not know; {s.get('unlogged')} without request fields; {verdict}; an alert, never a retraining"
    )
    rows = [
        {
            "feature": f["feature"],
            "compared": f["compared"],
            "mismatch": pct(f.get("mismatch")),
            "mean abs diff": "–" if f.get("mean_abs_diff") is None else f"{f['mean_abs_diff']:.4g}",
            "regression": f["feature"] in (s.get("skewed") or []),
        }
        for f in s.get("features") or []
    ]
    return (
        f"<h3>Training/serving skew</h3><p>{html.escape(facts)}</p>"
        f"{table(rows, ['feature', 'compared', 'mismatch', 'mean abs diff'])}"
    )


def monitoring_report(report: dict[str, Any], profile: dict[str, Any], current, served) -> str:
    """The daily drift and performance report of the champion (``monitoring.monitor.report``)."""
    scores = served["score"].to_numpy(dtype="float64") if len(served) else np.array([])
    up = [k for k, v in report["signals"].items() if v]
    perf = report["performance"]
    feat_rows = [{**r, "regression": r["drifted"], "reasons": "; ".join(r["reasons"])} for r in report["features"]]
    pred = report["prediction"]

    def num(v, f="{:.3f}"):
        return "n/a" if v is None else f.format(v)

    lr = report["label_rate"]
    ctx = {
        "champion": f"v{report['champion']}",
        "window": " .. ".join(report["window"]),
        "flights in window": report["rows"],
        "reference": f"{report['reference']['rows']} training flights, {' .. '.join(report['reference']['dates'] or [])}",
        "signals up": ", ".join(up) or "none",
        "delay rate": f"{num(lr['current'], '{:.1%}')} (reference {num(lr['reference'], '{:.1%}')})",
        "predictions served in window": pred["rows"],
        "live AUC (window)": f"{num(perf['window']['auc'])} on {perf['window']['rows']} labelled predictions "
        f"(validation AUC {num(perf['reference_auc'])})",
    }
    li = "".join(f"<li><b>{html.escape(str(k))}</b>: {html.escape(str(v))}</li>" for k, v in ctx.items())
    title = f"Monitoring {report['date']}: model v{report['champion']}"
    return f"""<!doctype html><html><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>body{{font-family:sans-serif;margin:2em}} table{{border-collapse:collapse;margin:1em 0}}
td,th{{border:1px solid #ccc;padding:3px 8px;text-align:right}} .bad{{background:#fdd}}</style></head><body>
<h1>{html.escape(title)}</h1><ul>{li}</ul>
<h3>Data drift ({len(report["drifted"])} feature(s) drifted: {html.escape(", ".join(report["drifted"]) or "none")})</h3>
{table(feat_rows, ["feature", "kind", *STATS, "unseen_share", "missing_ref", "missing_cur", "reasons"])}
<h3>Prediction drift</h3>{table([{**pred, "regression": pred["drifted"]}], ["rows", *NUMERIC_STATS, "mean_score"])}
<h3>Live performance per day</h3>{table(perf["daily"], ["date", "rows", "auc", "logloss", "ece", "positive_rate", "mean_score"])}
{_skew(report.get("skew") or {})}
{_service(report.get("service") or {})}
<h3>Reference (blue) against current (orange)</h3>{_feature_plots(report, profile, current, scores)}
</body></html>"""
