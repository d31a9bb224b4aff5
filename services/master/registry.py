"""What a master keeps in etcd for the next leader: the framework registry, and the agents it declared
lost (a returning one's replaced tasks are killed, whichever master hears it come back), the agents
drained and the maintenance windows."""

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

    async def agent_lost(self, agent_id: str, at: float) -> None:
        """Record that an agent was declared lost (its frameworks were told its tasks are LOST)."""
        await self.store.put_json({"at": at}, "lost-agents", agent_id)

    async def agent_back(self, agent_id: str) -> None:
        """A lost agent came back and its replaced tasks were killed: it is an agent like any other."""
        await self.store.delete("lost-agents", agent_id)

    async def lost_agents(self) -> set[str]:
        """The agents declared lost that have not come back."""
        return set(await self.store.list_json("lost-agents"))

    async def agent_gone(self, agent_id: str, at: float) -> None:
        """Record that an operator marked an agent gone (it is never registered again)."""
        await self.store.put_json({"at": at}, "gone-agents", agent_id)

    async def gone_agents(self) -> set[str]:
        return set(await self.store.list_json("gone-agents"))

    async def save_drain(self, agent_id: str, drain: dict[str, Any]) -> None:
        """Record an agent's drain (meseta.master.draining)."""
        await self.store.put_json(drain, "drains", agent_id)

    async def remove_drain(self, agent_id: str) -> None:
        await self.store.delete("drains", agent_id)

    async def drains(self) -> dict[str, dict[str, Any]]:
        """Every drained agent's drain, by agent id."""
        return await self.store.list_json("drains")

    async def save_window(self, window_id: str, window: dict[str, Any]) -> None:
        """Record a maintenance window."""
        await self.store.put_json(window, "maintenance", window_id)

    async def remove_window(self, window_id: str) -> None:
        await self.store.delete("maintenance", window_id)

    async def windows(self) -> dict[str, dict[str, Any]]:
        """Every scheduled maintenance window, by id."""
        return await self.store.list_json("maintenance")
