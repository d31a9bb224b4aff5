"""The allocator's run-time configuration in etcd: which policy, and each role's weight and quota.

Keys under the cluster prefix: ``allocator/policy`` (a policy name as JSON) and ``roles/<role>``
(``{"weight": 2, "quota": {"cpus": 4, "mem": 4096}}``). The allocator re-reads them every tick, so a
change takes effect within one tick, with no restart.
"""

from __future__ import annotations

from typing import Any

from meseta.allocator.state import RoleConfig
from meseta.runtime.etcd import EtcdStore
from meseta.sdk.wire import Resources


async def read_policy(store: EtcdStore) -> str | None:
    """The configured policy name, or None."""
    value = await store.get_json("allocator", "policy")
    return str(value) if value is not None else None


async def write_policy(store: EtcdStore, name: str) -> None:
    """Switch the running allocator's policy."""
    await store.put_json(name, "allocator", "policy")


def _role(doc: dict[str, Any]) -> RoleConfig:
    return RoleConfig(
        weight=float(doc.get("weight", 1.0)), quota=Resources.model_validate(doc.get("quota", {}))
    )


async def read_roles(store: EtcdStore) -> dict[str, RoleConfig]:
    """Every configured role."""
    return {name: _role(doc) for name, doc in (await store.list_json("roles")).items()}


async def write_role(
    store: EtcdStore, role: str, weight: float = 1.0, quota: Resources | None = None
) -> None:
    """Set a role's weight and quota."""
    doc = {"weight": weight, "quota": (quota or Resources()).model_dump(exclude_defaults=True)}
    _role(doc)  # refuse what the allocator could not read back
    await store.put_json(doc, "roles", role)
