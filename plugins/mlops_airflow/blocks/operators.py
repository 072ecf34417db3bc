"""Operators: the Horovod training job as one Airflow task."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from airflow.sdk import BaseOperator


class HorovodTrainOperator(BaseOperator):
    """Trains the model of the kind the run's training set names: data-parallel on ``workers`` Horovod processes (on
    this worker, or ``hosts``) for a kind trained so (LightGBM's), in this task's process for another (the
    baseline). ``model_params``: the run's values of the kinds' parameters (each kind takes its own).

    The job reads the training set staged in the lake under ``training/<run_key>/`` and, on success, stages the
    model there. It is bounded twice: by ``timeout_s`` (the launcher kills every rank and names the one that
    failed or hung, and the host) and by the task's ``execution_timeout``. A rank's own error fails the task at once;
    a timeout, a rank gone without a word or a host whose SSH port does not answer fails this try only (retried: the
    host or its link may be back). Runs in the ``horovod`` pool, which limits how many jobs share the machines.
    """

    template_fields: Sequence[str] = (
        "run_key",
        "workers",
        "hosts",
        "threads_per_worker",
        "num_boost_round",
        "model_params",
        "timeout_s",
    )
    ui_color = "#c6e2ff"

    def __init__(
        self,
        *,
        run_key: str | None = None,
        workers: Any = 2,
        hosts: Any = None,
        threads_per_worker: Any = 1,
        num_boost_round: Any = 200,
        model_params: Any = None,
        timeout_s: Any = 1800,
        pool: str = "horovod",
        execution_timeout: timedelta = timedelta(hours=2),
        **kwargs,
    ):
        super().__init__(pool=pool, execution_timeout=execution_timeout, **kwargs)
        self.run_key = run_key
        self.workers = workers
        self.hosts = hosts
        self.threads_per_worker = threads_per_worker
        self.num_boost_round = num_boost_round
        self.model_params = model_params
        self.timeout_s = timeout_s

    def execute(self, context) -> dict[str, Any]:
        from airflow.sdk.exceptions import AirflowException, AirflowFailException

        from include.mlops.train.launch import TrainingJobError
        from include.mlops.train.pipeline import train

        from .connections import get_lake, worker_storage_options
        from .defaults import run_key

        key = str(self.run_key) if self.run_key else run_key(context)
        try:
            summary = train(
                get_lake(),
                key,
                int(self.workers),
                params=dict(self.model_params or {}),
                num_boost_round=int(self.num_boost_round),
                threads_per_worker=int(self.threads_per_worker),
                hosts=self.hosts or None,
                timeout_s=float(self.timeout_s),
                storage_options=worker_storage_options(),
            )
        except (TrainingJobError, ValueError) as exc:
            # a rank's own error (bad data, a bug) fails again: retrying it wastes the machines; a timeout, a rank
            # gone without a word or a host unreachable may pass once the host or its link is back: retried
            self.log.error("%s", exc)
            message = str(exc).split("\n--- job log tail ---")[0]
            if getattr(exc, "transient", False):
                raise AirflowException(message + " (retried: no rank recorded an error of its own)") from None
            raise AirflowFailException(message) from None
        self.log.info("Horovod job finished: %s", summary)
        return summary
