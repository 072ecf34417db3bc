"""The lake as Airflow tasks see it: ``MLOPS_LAKE_URL`` with credentials from the ``aws_default`` connection."""

from __future__ import annotations

import os

from include.mlops.config import Settings
from include.mlops.lake import Lake

AWS_CONN_ID_ENV = "MLOPS_AWS_CONN_ID"


def get_lake(settings: Settings | None = None) -> Lake:
    settings = settings or Settings.from_env()
    if settings.lake_url.startswith(("s3://", "s3a://")):
        from airflow.providers.amazon.aws.fs.s3 import get_fs

        fs = get_fs(os.environ.get(AWS_CONN_ID_ENV, "aws_default"))
        return Lake(settings.lake_url, fs=fs)
    return Lake(settings.lake_url)
