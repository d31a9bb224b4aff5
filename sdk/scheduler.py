"""The callback style: subclass :class:`Scheduler`, override what you need, ``await run(client, it)``."""

from __future__ import annotations

from meseta.sdk import wire
from meseta.sdk.client import FrameworkClient


class Scheduler:
    """Callbacks for a framework's events. Every one is optional; the defaults do nothing."""

    async def registered(self, client: FrameworkClient, framework_id: str) -> None:
        """The framework is subscribed."""

    async def offers(self, client: FrameworkClient, offers: tuple[wire.Offer, ...]) -> None:
        """New offers: accept or decline each (undecided offers expire and are rescinded)."""

    async def rescinded(self, client: FrameworkClient, offer_id: str) -> None:
        """An offer is void."""

    async def status_update(self, client: FrameworkClient, status: wire.TaskStatus) -> None:
        """A task changed state."""

    async def agent_lost(self, client: FrameworkClient, agent_id: str) -> None:
        """An agent running our tasks was lost."""

    async def revoked(self, client: FrameworkClient, notice: wire.RevocationNotice) -> None:
        """Tasks will be killed with reason REVOKED at ``notice.deadline``: checkpoint them."""

    async def draining(self, client: FrameworkClient, notice: wire.DrainNotice) -> None:
        """An operator drains an agent: ``notice.task_ids`` are killed (AGENT_DRAINED) at
        ``notice.deadline`` unless they end first; start their replacements elsewhere."""

    async def error(self, client: FrameworkClient, error: wire.Error) -> None:
        """The master refused one of our calls."""


async def run(client: FrameworkClient, scheduler: Scheduler) -> None:
    """Subscribe if needed, then dispatch events to ``scheduler`` until the client is closed."""
    if client.framework_id is None:
        await client.subscribe()
    assert client.framework_id is not None
    await scheduler.registered(client, client.framework_id)
    async for event in client.events():
        match event:
            case wire.Offers():
                await scheduler.offers(client, event.offers)
            case wire.Rescind():
                await scheduler.rescinded(client, event.offer_id)
            case wire.Update():
                await scheduler.status_update(client, event.status)
            case wire.Failure():
                await scheduler.agent_lost(client, event.agent_id)
            case wire.RevocationNotice():
                await scheduler.revoked(client, event)
            case wire.DrainNotice():
                await scheduler.draining(client, event)
            case wire.Error():
                await scheduler.error(client, event)
