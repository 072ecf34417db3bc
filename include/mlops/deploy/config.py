"""The canary's settings (``include/config/deploy.yaml``): cheap to import (the DAG's form is made from them)."""

from __future__ import annotations

from ..core.config import ConfigFile, YamlConfig


class DeployConfig(YamlConfig):
    """The canary's share, the evidence it needs and the tolerance it is judged by (``include/config/deploy.yaml``)."""

    FILE = ConfigFile("deploy.yaml")
