"""One way to make a value JSON-safe for the lake, the reports, XCom and the UI: NaN and infinities (a metric on
a slice without positives, say) and missing values become null, NumPy scalars become Python numbers, tuples
lists, and anything else without a JSON form its text."""

from __future__ import annotations

import math
from typing import Any


def json_safe(v: Any) -> Any:
    if isinstance(v, dict):
        return {str(k): json_safe(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [json_safe(x) for x in v]
    if isinstance(v, float) and (math.isnan(v) or math.isinf(v)):
        return None
    if isinstance(v, (str, bool, int, float)) or v is None:
        return v
    if type(v).__name__ in ("NAType", "NaTType"):
        return None
    if hasattr(v, "item"):  # NumPy scalars
        try:
            return json_safe(v.item())
        except (ValueError, AttributeError):
            return str(v)
    return str(v)
