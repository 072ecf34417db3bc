"""Who may change what is served: Airflow's simple auth manager, with one rule more.

With the simple auth manager every user of role ``user`` may trigger, clear and change any DAG's runs. A model's
deployment DAG (``deploy_model``, and each declared model's own: ``dags.deploy`` in ``datasets.yaml``) promotes and
rolls back versions: triggering it, clearing it or changing its runs (its form's values travel with a trigger)
needs the role ``op`` or ``admin`` here; ``viewer`` and ``user`` may still read it, and ``user`` may run every other
DAG as before. Set it with ``AIRFLOW__CORE__AUTH_MANAGER=mlops_airflow.auth.MlopsAuthManager``: the production
launcher's default (``make up``, one admin on this machine, keeps the plain simple auth manager). A team on the FAB
auth manager declares the same rule in its roles instead: a deployment DAG's edit permissions for ``Op`` and
``Admin``, not in ``User``'s (see docs/deploying.md).
"""

from __future__ import annotations

from functools import cache

from airflow.api_fastapi.auth.managers.simple.simple_auth_manager import SimpleAuthManager, SimpleAuthManagerRole

READ = "GET"


@cache
def deployment_dag_ids() -> frozenset[str]:
    """Every declared model's deployment DAG id (read once: the declaration changes with a restart)."""
    from include.mlops.core.schema import models

    return frozenset(m.dags["deploy"] for m in models().values())


def may_deploy(role: str | None) -> bool:
    """Whether a user of ``role`` may trigger, clear or change a deployment DAG's runs: ``op`` or ``admin``."""
    order = {r.name: r.order for r in SimpleAuthManagerRole}
    return order.get((role or "").upper(), -1) >= SimpleAuthManagerRole.OP.order


class MlopsAuthManager(SimpleAuthManager):
    """The simple auth manager; a deployment DAG's runs change only for ``op`` and ``admin``."""

    def is_authorized_dag(self, *, method, user, access_entity=None, details=None) -> bool:
        allowed = super().is_authorized_dag(method=method, user=user, access_entity=access_entity, details=details)
        if not allowed or method == READ or details is None or details.id not in deployment_dag_ids():
            return allowed
        return may_deploy(getattr(user, "role", None))
