"""The Meseta secret of each framework subscribed through the gateway, kept in etcd.

A Mesos framework re-subscribes after a failover with only its framework id; Meseta's master wants the
secret it gave at the first subscription as well. The gateway keeps it, with the principal that
subscribed, under ``<prefix>/gateway/frameworks/<id>`` (a standby gateway that takes over finds it), and
gives it only to that principal. Readable by whoever reads the cluster's etcd: as the master's registry.
"""

from __future__ import annotations

from dataclasses import dataclass

from meseta.runtime.etcd import EtcdStore


@dataclass(frozen=True)
class Kept:
    principal: str
    secret: str


class Secrets:
    def __init__(self, store: EtcdStore) -> None:
        self.store = store
        self._cache: dict[str, Kept] = {}

    async def get(self, framework_id: str) -> Kept | None:
        kept = self._cache.get(framework_id)
        if kept is not None:
            return kept
        found = await self.store.get_json("gateway", "frameworks", framework_id)
        if not isinstance(found, dict) or not isinstance(found.get("secret"), str):
            return None
        kept = self._cache[framework_id] = Kept(str(found.get("principal", "")), found["secret"])
        return kept

    async def put(self, framework_id: str, principal: str, secret: str) -> None:
        kept = Kept(principal, secret)
        if self._cache.get(framework_id) == kept:
            return
        await self.store.put_json(
            {"principal": principal, "secret": secret}, "gateway", "frameworks", framework_id
        )
        self._cache[framework_id] = kept

    async def forget(self, framework_id: str) -> None:
        self._cache.pop(framework_id, None)
        await self.store.delete("gateway", "frameworks", framework_id)
