"""The durable framework registry and the master epoch, in etcd."""

from __future__ import annotations

from typing import Any

from meseta.runtime.etcd import EtcdStore


class Registry:
    """Frameworks survive a master restart here."""

    def __init__(self, store: EtcdStore) -> None:
        self.store = store

    async def save_framework(self, framework_id: str, info: dict[str, Any]) -> None:
        """Record a subscribed framework."""
        await self.store.put_json(info, "frameworks", framework_id)

    async def remove_framework(self, framework_id: str) -> None:
        """Forget a torn-down framework."""
        await self.store.delete("frameworks", framework_id)

    async def frameworks(self) -> dict[str, dict[str, Any]]:
        """Every registered framework by id."""
        return await self.store.list_json("frameworks")
