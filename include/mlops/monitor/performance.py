"""Live performance: AUC, log-loss and calibration of the predictions the service logged, joined with the outcomes
that ingestion brought in later (``core.predictions``), over a window and per day."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from ..core.metrics import metrics
from ..core.schema import model


def summary(df: pd.DataFrame) -> dict[str, Any]:
    """AUC, log-loss, calibration (ECE) and counts of labelled predictions; NaN where undefined."""
    if df.empty:
        return {
            "rows": 0,
            "auc": float("nan"),
            "logloss": float("nan"),
            "ece": float("nan"),
            "positive_rate": float("nan"),
            "mean_score": float("nan"),
        }
    y = df[model().label.name].to_numpy(dtype=float)
    p = df["score"].to_numpy(dtype=float)
    m = metrics(y, p)
    return {
        "rows": int(len(df)),
        "auc": m["auc"],
        "logloss": m["logloss"],
        "ece": m["ece"],
        "positive_rate": m["positive_rate"],
        "mean_score": float(np.mean(p)),
    }


def daily(df: pd.DataFrame) -> list[dict[str, Any]]:
    return [{"date": d, **summary(g)} for d, g in df.groupby("date")] if not df.empty else []
