"""Self-contained HTML reports (plots embedded as PNG), for the lake and the MLflow run."""

from __future__ import annotations

import base64
import html
import io
from typing import Any

import numpy as np


def _png(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    import matplotlib.pyplot as plt

    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def _roc_and_calibration(y: np.ndarray, curves: dict[str, np.ndarray]) -> tuple[str, str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.metrics import roc_curve

    fig, ax = plt.subplots(figsize=(4.5, 4))
    for name, p in curves.items():
        fpr, tpr, _ = roc_curve(y, p)
        ax.plot(fpr, tpr, label=name)
    ax.plot([0, 1], [0, 1], "k:", lw=0.8)
    ax.set(xlabel="false positive rate", ylabel="true positive rate", title="ROC")
    ax.legend()
    roc = _png(fig)
    fig, ax = plt.subplots(figsize=(4.5, 4))
    bins = np.linspace(0, 1, 11)
    for name, p in curves.items():
        idx = np.minimum(np.digitize(p, bins) - 1, 9)
        xs = [p[idx == b].mean() for b in range(10) if (idx == b).any()]
        ys = [y[idx == b].mean() for b in range(10) if (idx == b).any()]
        ax.plot(xs, ys, "o-", label=name)
    ax.plot([0, 1], [0, 1], "k:", lw=0.8)
    ax.set(xlabel="mean predicted probability", ylabel="observed delay rate", title="Calibration")
    ax.legend()
    return roc, _png(fig)


def _importance(importance: dict[str, float]) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    items = sorted(importance.items(), key=lambda kv: kv[1])[-15:]
    fig, ax = plt.subplots(figsize=(5, 4))
    ax.barh([k for k, _ in items], [v for _, v in items])
    ax.set(title="Feature importance (gain)")
    return _png(fig)


def _table(rows: list[dict[str, Any]], columns: list[str]) -> str:
    def fmt(v):
        if isinstance(v, float):
            return "–" if v != v else f"{v:.4f}"
        return html.escape(str(v))

    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = "".join(
        "<tr" + (' class="bad"' if r.get("regression") or r.get("passed") is False else "") + ">"
        + "".join(f"<td>{fmt(r.get(c))}</td>" for c in columns) + "</tr>" for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def gate_report(title: str, decision: dict[str, Any], y: np.ndarray, curves: dict[str, np.ndarray],
                importance: dict[str, float], context: dict[str, Any]) -> str:
    roc, cal = _roc_and_calibration(np.asarray(y, dtype=float), curves)
    verdict = "PASSED" if decision["passed"] else "FAILED: " + ", ".join(decision["failed"])
    ctx = "".join(f"<li><b>{html.escape(str(k))}</b>: {html.escape(str(v))}</li>" for k, v in context.items())
    metrics_rows = [{"model": name, **{k: v for k, v in (decision.get(name) or {}).items()}}
                    for name in ("candidate", "champion") if decision.get(name)]
    return f"""<!doctype html><html><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>body{{font-family:sans-serif;margin:2em}} table{{border-collapse:collapse;margin:1em 0}}
td,th{{border:1px solid #ccc;padding:3px 8px;text-align:right}} .bad{{background:#fdd}}
.pass{{color:#070}} .fail{{color:#b00}} img{{margin-right:1em}}</style></head><body>
<h1>{html.escape(title)}</h1>
<h2 class="{'pass' if decision['passed'] else 'fail'}">Gate {html.escape(verdict)}</h2>
<ul>{ctx}</ul>
<h3>Checks</h3>{_table(decision['checks'], ['name', 'passed', 'value', 'threshold', 'detail'])}
<h3>Held-out metrics</h3>{_table(metrics_rows, ['model', 'auc', 'logloss', 'brier', 'ece', 'positive_rate', 'rows'])}
<img src="{roc}"><img src="{cal}"><img src="{_importance(importance)}">
<h3>Slices</h3>{_table(decision['slices'], ['column', 'value', 'rows', 'positive_rate', 'candidate_auc', 'champion_auc', 'regression'])}
</body></html>"""


def _svg(title: str, drifted: bool, series: list[tuple[str, str, list[tuple[float, float]]]],
         bars: tuple[list[str], list[float], list[float]] | None = None, w: int = 220, h: int = 150) -> str:
    """A small inline SVG chart: step-free polylines (x, y in [0, 1]) or paired bars. Cheap to draw daily."""
    pad, ph = 6, h - 34
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" style="margin:4px;border:1px solid #ddd">',
             f'<text x="{pad}" y="13" font-size="12" fill="{"#b00" if drifted else "#000"}">'
             f'{html.escape(title)}{" (drift)" if drifted else ""}</text>']
    if bars:
        labels, a, b = bars
        n = max(len(labels), 1)
        bw = (w - 2 * pad) / n / 2.4
        top = max(a + b + [1e-9])
        for i, (la, va, vb) in enumerate(zip(labels, a, b)):
            x = pad + i * (w - 2 * pad) / n
            for j, (v, colour) in enumerate(((va, "#1f77b4"), (vb, "#ff7f0e"))):
                bh = ph * v / top
                parts.append(f'<rect x="{x + j * bw:.1f}" y="{20 + ph - bh:.1f}" width="{bw:.1f}" height="{bh:.1f}" '
                             f'fill="{colour}"/>')
            parts.append(f'<text x="{x:.1f}" y="{h - 4}" font-size="8">{html.escape(la[:4])}</text>')
    for name, colour, pts in series:
        if pts:
            xy = " ".join(f"{pad + x * (w - 2 * pad):.1f},{20 + (1 - y) * ph:.1f}" for x, y in pts)
            parts.append(f'<polyline fill="none" stroke="{colour}" stroke-width="1.5" points="{xy}"/>')
    parts.append(f'<text x="{pad}" y="{h - 4}" font-size="9" fill="#1f77b4">reference</text>'
                 f'<text x="{w - 50}" y="{h - 4}" font-size="9" fill="#ff7f0e">current</text>' if not bars else "")
    return "".join(parts) + "</svg>"


def _feature_plots(report: dict[str, Any], profile: dict[str, Any], current, scores) -> str:
    """Reference against current per feature: CDFs for numeric features (on the reference's range), shares of
    the reference's top categories for categorical ones; the score's CDF too when the service served."""
    rows = report["features"] + ([{"feature": "score", "kind": "numeric", "drifted": report["prediction"]["drifted"]}]
                                 if len(scores) and profile.get("score") else [])
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
            out.append(_svg(name, row.get("drifted"), [
                ("reference", "#1f77b4", [((x - lo) / span, y) for x, y in zip(rq, levels)]),
                ("current", "#ff7f0e", [((x - lo) / span, y) for x, y in zip(cq, levels)])]))
        elif ref["kind"] == "categorical":
            top = sorted(ref["shares"], key=lambda k: -ref["shares"][k])[:8]
            cur = current[name].astype("object").dropna().astype(str).value_counts(normalize=True)
            out.append(_svg(name, row.get("drifted"), [],
                            bars=(top, [ref["shares"][k] for k in top], [float(cur.get(k, 0.0)) for k in top])))
    return "<div>" + "".join(out) + "</div>"


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
    ctx = {"champion": f"v{report['champion']}", "window": " .. ".join(report["window"]),
           "flights in window": report["rows"],
           "reference": f"{report['reference']['rows']} training flights, {' .. '.join(report['reference']['dates'] or [])}",
           "signals up": ", ".join(up) or "none",
           "delay rate": f"{num(lr['current'], '{:.1%}')} (reference {num(lr['reference'], '{:.1%}')})",
           "predictions served in window": pred["rows"],
           "live AUC (window)": f"{num(perf['window']['auc'])} on {perf['window']['rows']} labelled predictions "
                                f"(validation AUC {num(perf['reference_auc'])})"}
    li = "".join(f"<li><b>{html.escape(str(k))}</b>: {html.escape(str(v))}</li>" for k, v in ctx.items())
    title = f"Monitoring {report['date']}: model v{report['champion']}"
    return f"""<!doctype html><html><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>body{{font-family:sans-serif;margin:2em}} table{{border-collapse:collapse;margin:1em 0}}
td,th{{border:1px solid #ccc;padding:3px 8px;text-align:right}} .bad{{background:#fdd}}</style></head><body>
<h1>{html.escape(title)}</h1><ul>{li}</ul>
<h3>Data drift ({len(report['drifted'])} feature(s) drifted: {html.escape(', '.join(report['drifted']) or 'none')})</h3>
{_table(feat_rows, ['feature', 'kind', 'ks', 'psi', 'wasserstein', 'js', 'unseen_share', 'missing_ref', 'missing_cur', 'reasons'])}
<h3>Prediction drift</h3>{_table([{**pred, 'regression': pred['drifted']}], ['rows', 'ks', 'psi', 'wasserstein', 'mean_score'])}
<h3>Live performance per day</h3>{_table(perf['daily'], ['date', 'rows', 'auc', 'logloss', 'ece', 'positive_rate', 'mean_score'])}
<h3>Reference (blue) against current (orange)</h3>{_feature_plots(report, profile, current, scores)}
</body></html>"""
