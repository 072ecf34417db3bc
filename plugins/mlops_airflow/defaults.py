"""default_args every lifecycle DAG shares: an owner, retries, and a Slack alert on every failure and retry."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from . import alerts


def default_args(**overrides: Any) -> dict[str, Any]:
    return {
        "owner": "mlops",
        "retries": 2,
        "retry_delay": timedelta(minutes=1),
        "on_failure_callback": alerts.on_task_failure,
        "on_retry_callback": alerts.on_task_retry,
    } | overrides
