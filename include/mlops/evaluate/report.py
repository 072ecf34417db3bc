"""The evaluation gate's HTML report: ROC and calibration curves of the candidate and the champion, feature
importance, the slice table and every check."""

from __future__ import annotations

import html
from typing import Any

import numpy as np

from ..core.metrics import calibration_curve
from ..core.reports import data_uri, png_bytes, table


def roc_and_calibration(y: np.ndarray, curves: dict[str, np.ndarray]) -> tuple[bytes, bytes]:
    """The ROC and the calibration curves of each model's scores ``curves`` on the rows of labels ``y``, as PNG."""
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
    roc = png_bytes(fig)
    fig, ax = plt.subplots(figsize=(4.5, 4))
    for name, p in curves.items():
        xs, ys = zip(*calibration_curve(y, p), strict=True)
        ax.plot(xs, ys, "o-", label=name)
    ax.plot([0, 1], [0, 1], "k:", lw=0.8)
    ax.set(xlabel="mean predicted probability", ylabel="observed rate of the outcome", title="Calibration")
    ax.legend()
    return roc, png_bytes(fig)


def importance_png(importance: dict[str, float]) -> bytes:
    """The 15 most important features as bars, as PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    items = sorted(importance.items(), key=lambda kv: kv[1])[-15:]
    fig, ax = plt.subplots(figsize=(5, 4))
    ax.barh([k for k, _ in items], [v for _, v in items])
    ax.set(title="Feature importance (gain)")
    return png_bytes(fig)


def gate_report(
    title: str,
    decision: dict[str, Any],
    y: np.ndarray,
    curves: dict[str, np.ndarray],
    importance: dict[str, float],
    context: dict[str, Any],
) -> str:
    roc, cal = map(data_uri, roc_and_calibration(np.asarray(y, dtype=float), curves))
    verdict = "PASSED" if decision["passed"] else "FAILED: " + ", ".join(decision["failed"])
    ctx = "".join(f"<li><b>{html.escape(str(k))}</b>: {html.escape(str(v))}</li>" for k, v in context.items())
    metrics_rows = [
        {"model": name, **{k: v for k, v in (decision.get(name) or {}).items()}}
        for name in ("candidate", "champion")
        if decision.get(name)
    ]
    return f"""<!doctype html><html><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>body{{font-family:sans-serif;margin:2em}} table{{border-collapse:collapse;margin:1em 0}}
td,th{{border:1px solid #ccc;padding:3px 8px;text-align:right}} .bad{{background:#fdd}}
.pass{{color:#070}} .fail{{color:#b00}} img{{margin-right:1em}}</style></head><body>
<h1>{html.escape(title)}</h1>
<h2 class="{"pass" if decision["passed"] else "fail"}">Gate {html.escape(verdict)}</h2>
<ul>{ctx}</ul>
<h3>Checks</h3>{table(decision["checks"], ["name", "passed", "value", "threshold", "detail"])}
<h3>Held-out metrics</h3>{table(metrics_rows, ["model", "auc", "logloss", "brier", "ece", "positive_rate", "rows"])}
<img src="{roc}"><img src="{cal}"><img src="{data_uri(importance_png(importance))}">
<h3>Slices</h3>{table(decision["slices"], ["column", "value", "rows", "positive_rate", "candidate_auc", "champion_auc", "regression"])}
</body></html>"""
