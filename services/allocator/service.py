"""The allocator process: consumes master events, runs the policy, publishes allocations.

A cycle runs shortly after events arrive (a batching window, so a burst costs one cycle) and on a
periodic tick (so expired decline filters free their agents even when nothing else happens).
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass

from aio_pika.abc import AbstractIncomingMessage
from opentelemetry import context as otel_context
from opentelemetry import trace

from meseta.allocator import handlers
from meseta.allocator.policy import POLICIES, Policy
from meseta.allocator.state import AllocatorState
from meseta.runtime.service import Service
from meseta.sdk import tracing, wire
from meseta.sdk.bus import Bus

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class AllocatorSettings:
    """How the allocator runs."""

    amqp_url: str
    policy: str = "drf"
    batch_window: float = 0.005
    """Seconds to gather events before a cycle."""
    tick_interval: float = 0.5
    """Seconds between periodic cycles."""


class AllocatorService(Service):
    """The allocator as a service."""

    name = "allocator"

    def __init__(self, settings: AllocatorSettings) -> None:
        super().__init__()
        self.settings = settings
        if settings.policy not in POLICIES:
            raise ValueError(f"unknown policy {settings.policy!r}; known: {sorted(POLICIES)}")
        self.policy: Policy = POLICIES[settings.policy]()
        self.state = AllocatorState()
        self.bus = Bus(settings.amqp_url, self.name)
        self._tracer = tracing.tracer(self.name)
        self._wakeup = asyncio.Event()
        self.cycles = 0

    async def _start(self) -> None:
        await self.bus.connect()
        queue = await self.bus.declare_queue(
            wire.Queue.ALLOCATOR_EVENTS, wire.Exchange.ALLOCATION, wire.RoutingKey.TO_ALLOCATOR
        )
        self.bus.consume(queue, wire.TO_ALLOCATOR, self._on_event)
        self.spawn(self._cycle_loop(), "cycles")
        log.info("allocator started with policy %s", self.policy.name)

    async def _stop(self) -> None:
        await self.bus.close()

    async def _on_event(self, event: wire.Message, _: AbstractIncomingMessage) -> None:
        handlers.apply(self.state, event)
        self._wakeup.set()

    async def _cycle_loop(self) -> None:
        while True:
            try:
                await asyncio.wait_for(self._wakeup.wait(), self.settings.tick_interval)
                await asyncio.sleep(self.settings.batch_window)  # let a burst of events land in one cycle
            except TimeoutError:
                pass
            self._wakeup.clear()
            await self.run_cycle()

    async def run_cycle(self) -> None:
        """Plan, apply the plan to the state, publish one allocation per grant (each its own trace)."""
        started = time.perf_counter()
        plan = self.policy.allocate(self.state, time.time())
        self.cycles += 1
        for grant in plan:
            self.state.allocate(grant.framework_id, grant.agent_id, grant.resources)
        for grant in plan:
            # Each allocation roots a new trace: the offer cycle it starts is one story.
            with self._tracer.start_as_current_span(
                "allocator allocate",
                context=otel_context.Context(),
                kind=trace.SpanKind.PRODUCER,
                attributes={
                    "meseta.service": self.name,
                    "meseta.framework_id": grant.framework_id,
                    "meseta.agent_id": grant.agent_id,
                    "meseta.policy": self.policy.name,
                },
            ):
                message = wire.Allocation(
                    framework_id=grant.framework_id, agent_id=grant.agent_id, resources=grant.resources
                )
                await self.bus.publish(wire.Exchange.ALLOCATION, wire.RoutingKey.TO_MASTER, message)
        if plan:
            log.debug(
                "cycle %d: %d grants in %.2f ms",
                self.cycles,
                len(plan),
                (time.perf_counter() - started) * 1e3,
            )
