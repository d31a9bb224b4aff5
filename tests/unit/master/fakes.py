"""A master with no broker and no etcd: its handlers publish into a recorder, its registry is a dict."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from meseta.master.cluster import Cluster
from meseta.master.core import MasterCore
from meseta.master.dispatch import Dispatcher
from meseta.master.outbox import Outbox
from meseta.sdk import wire


@dataclass
class Sent:
    exchange: str
    routing_key: str
    message: wire.Message
    persistent: bool


class RecordingPublisher:
    """Records every publish; each yields to the loop once, as a real publish does."""

    def __init__(self) -> None:
        self.sent: list[Sent] = []
        self.queues: list[str] = []
        self.deleted: list[str] = []

    async def publish(
        self, exchange: str, routing_key: str, message: wire.Message, *, persistent: bool = False, **_: Any
    ) -> None:
        await asyncio.sleep(0)
        self.sent.append(Sent(str(exchange), routing_key, message, persistent))

    async def declare_queue(
        self,
        name: str,
        exchange: wire.Exchange,
        routing_key: str,
        *,
        durable: bool = True,
        expires_ms: int | None = None,
        replicated: bool = False,
    ) -> None:
        self.queues.append(name)

    async def delete_queue(self, name: str) -> None:
        self.deleted.append(name)

    def take(self) -> list[Sent]:
        """What was sent since the last take."""
        sent, self.sent = self.sent, []
        return sent


@dataclass
class MemoryRegistry:
    frameworks: dict[str, dict[str, object]] = field(default_factory=dict)
    lost: dict[str, float] = field(default_factory=dict)
    drains: dict[str, dict[str, object]] = field(default_factory=dict)
    gone: dict[str, float] = field(default_factory=dict)
    windows: dict[str, dict[str, object]] = field(default_factory=dict)

    async def save_framework(self, framework_id: str, info: dict[str, object]) -> None:
        self.frameworks[framework_id] = info

    async def remove_framework(self, framework_id: str) -> None:
        self.frameworks.pop(framework_id, None)

    async def agent_lost(self, agent_id: str, at: float) -> None:
        self.lost[agent_id] = at

    async def agent_back(self, agent_id: str) -> None:
        self.lost.pop(agent_id, None)

    async def agent_gone(self, agent_id: str, at: float) -> None:
        self.gone[agent_id] = at

    async def save_drain(self, agent_id: str, drain: dict[str, object]) -> None:
        self.drains[agent_id] = drain

    async def remove_drain(self, agent_id: str) -> None:
        self.drains.pop(agent_id, None)

    async def save_window(self, window_id: str, window: dict[str, object]) -> None:
        self.windows[window_id] = window

    async def remove_window(self, window_id: str) -> None:
        self.windows.pop(window_id, None)


@dataclass
class Incoming:
    """What the dispatcher reads of an AMQP delivery."""

    reply_to: str | None = None
    user_id: str | None = None
    """The sender's broker user (checked by the broker)."""


class FakeMaster:
    """A leading master's handlers over a recording publisher."""

    def __init__(self, offer_timeout: float = 30.0, revocation_grace: float = 5.0) -> None:
        self.publisher = RecordingPublisher()
        self.registry = MemoryRegistry()
        self.core = MasterCore(
            Cluster(), Outbox(self.publisher), self.registry, offer_timeout, revocation_grace, epoch=1
        )
        self.dispatcher = Dispatcher(self.core)

    @property
    def cluster(self) -> Cluster:
        return self.core.cluster

    async def handle(self, message: wire.Message, reply_to: str | None = None) -> list[Sent]:
        """Handle one message; what it sent."""
        await self.dispatcher.handle(message, Incoming(reply_to))  # type: ignore[arg-type]
        return self.publisher.take()

    async def agent(self, agent_id: str = "a1", resources: wire.Resources | None = None) -> None:
        resources = resources or wire.Resources(cpus=4, mem=1024)
        await self.handle(
            wire.RegisterAgent(agent_id=agent_id, hostname=f"host-{agent_id}", resources=resources)
        )

    async def framework(self, name: str = "fw") -> tuple[str, str]:
        """Subscribe one; (framework id, secret)."""
        sent = await self.handle(wire.Subscribe(name=name), reply_to="amq.gen-sub")
        answer = next(s.message for s in sent if isinstance(s.message, wire.Subscribed))
        assert isinstance(answer, wire.Subscribed)
        return answer.framework_id, answer.secret

    async def offer(self, framework_id: str, agent_id: str, resources: wire.Resources) -> wire.Offer:
        """The allocator grants ``resources`` on an agent; the offer the framework got."""
        grant = wire.Grant(framework_id=framework_id, agent_id=agent_id, resources=resources)
        sent = await self.handle(wire.Allocations(grants=(grant,)))
        (offers,) = [s.message for s in sent if isinstance(s.message, wire.Offers)]
        assert isinstance(offers, wire.Offers)
        return offers.offers[0]


def of(sent: list[Sent], kind: type[wire.Message]) -> list[Any]:
    """The messages of one kind among what was sent."""
    return [s.message for s in sent if isinstance(s.message, kind)]
