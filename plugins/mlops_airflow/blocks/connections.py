"""The lake as Airflow tasks see it: ``MLOPS_LAKE_URL`` with credentials from the ``aws_default`` connection."""

from __future__ import annotations

import os

from include.mlops.core.config import Settings
from include.mlops.core.lake import Lake

AWS_CONN_ID_ENV = "MLOPS_AWS_CONN_ID"


def get_lake(settings: Settings | None = None) -> Lake:
    settings = settings or Settings.from_env()
    if settings.lake_url.startswith(("s3://", "s3a://")):
        from airflow.providers.amazon.aws.fs.s3 import get_fs

        fs = get_fs(os.environ.get(AWS_CONN_ID_ENV, "aws_default"))
        return Lake(settings.lake_url, fs=fs)
    return Lake(settings.lake_url)


def worker_storage_options(settings: Settings | None = None) -> dict:
    """Credentials for processes outside Airflow (Horovod ranks) to reach an S3 lake: from ``aws_default``."""
    settings = settings or Settings.from_env()
    if not settings.lake_url.startswith(("s3://", "s3a://")):
        return {}
    from airflow.providers.amazon.aws.hooks.base_aws import AwsBaseHook

    hook = AwsBaseHook(aws_conn_id=os.environ.get(AWS_CONN_ID_ENV, "aws_default"), client_type="s3")
    creds = hook.get_credentials()
    client_kwargs = {
        k: v
        for k, v in {"endpoint_url": hook.conn_config.endpoint_url, "region_name": hook.conn_config.region_name}.items()
        if v
    }
    opts = {"key": creds.access_key, "secret": creds.secret_key, "client_kwargs": client_kwargs}
    if creds.token:
        opts["token"] = creds.token
    return opts
