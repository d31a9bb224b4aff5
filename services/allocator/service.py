"""The allocator process: consumes master events, runs the policy, publishes allocations.

A cycle runs shortly after events arrive (a batching window, so a burst costs one cycle) and on a
periodic tick (so expired decline filters free their agents even when nothing else happens).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time

from aio_pika.abc import AbstractIncomingMessage
from opentelemetry import context as otel_context
from opentelemetry import metrics, trace

from meseta.allocator import handlers, prometheus
from meseta.allocator.config import read_policy, read_roles
from meseta.allocator.pipeline import Plan, plan_cycle
from meseta.allocator.policy import Policy, make_policy
from meseta.allocator.settings import AllocatorSettings
from meseta.allocator.state import AllocatorState, PendingRevocation
from meseta.runtime.etcd import EtcdStore
from meseta.runtime.leader import Leadership
from meseta.runtime.principal import own_identity
from meseta.runtime.prometheus import Probes
from meseta.runtime.service import Service
from meseta.sdk import tracing, wire
from meseta.sdk.bus import Bus
from meseta.sdk.histogram import Histogram

log = logging.getLogger(__name__)


class AllocatorService(Service):
    """The allocator as a service."""

    name = "allocator"

    def __init__(self, settings: AllocatorSettings) -> None:
        super().__init__()
        self.settings = settings
        identity = own_identity("allocator", "allocator", settings.amqp_url, settings.dev)
        self._master = None if identity is None else identity.principals.master
        self.policy: Policy = make_policy(settings.policy)
        self.state = AllocatorState()
        self.bus = Bus(settings.amqp_url, self.name, queue_type=settings.queue_type)
        self.store = (
            EtcdStore(settings.etcd_endpoint, settings.etcd_prefix) if settings.etcd_endpoint else None
        )
        self.leadership = (
            Leadership(self.store, "allocator", settings.name, settings.lease_ttl)
            if self.store is not None
            else None
        )
        self.leading = asyncio.Event()
        """Set once this allocator is the active one."""
        self._tracer = tracing.tracer(self.name)
        self._cycle_time = metrics.get_meter("meseta.allocator").create_histogram(
            "meseta.allocation.cycle_time", unit="ms", description="Planning time of one allocation cycle"
        )
        self._wakeup = asyncio.Event()
        self._asked = asyncio.Event()
        """A framework revived since the last cycle: the next one runs at once (see :meth:`_gather`)."""
        self._early = -math.inf
        """When a revive last ended the batch window early (monotonic seconds)."""
        self.cycles = 0
        self.grants = 0
        self.cycle_seconds = Histogram()
        """Planning time of each cycle (Prometheus's meseta_allocation_cycle_seconds)."""
        self.probes = Probes("allocator", self._readiness, lambda: prometheus.families(self))

    def _readiness(self) -> tuple[bool, dict[str, object]]:
        """Ready: connected to the broker, active or standing by."""
        role = "leader" if self.leading.is_set() else "standby"
        return self.bus.connected, {"role": role, "broker": self.bus.connected}

    async def _start(self) -> None:
        if self.settings.metrics_port is not None:
            await self.probes.start(self.settings.metrics_host, self.settings.metrics_port)
        if self.store is not None:
            await self.store.connect()
            await self.reload_config()
        await self.bus.connect()
        # Declared by a standby too: events wait for whichever allocator leads.
        self._queue = await self.bus.declare_queue(
            wire.Queue.ALLOCATOR_EVENTS,
            wire.Exchange.ALLOCATION,
            wire.RoutingKey.TO_ALLOCATOR,
            replicated=True,
        )
        self.spawn(self._lead(), "leadership")

    def _from_master(self, message: wire.Message, user: str | None) -> str | None:
        """Outside development mode only the master's principal sends events here."""
        return None if self._master is None else wire.refusal(message.type, user, self._master)

    async def _lead(self) -> None:
        """With etcd, campaign first (one active allocator); without, serve at once."""
        if self.leadership is not None:
            self.bus.epoch = await self.leadership.campaign()
        # Events from a deposed master are fenced off by its epoch.
        # Only a leading master sends here: an unstamped STATE_SYNC would wipe the allocator's view.
        self.bus.consume(
            self._queue,
            wire.TO_ALLOCATOR,
            self._on_event,
            fence=True,
            stamped=wire.TO_ALLOCATOR.models,
            authorize=self._from_master,
        )
        self.spawn(self._cycle_loop(), "cycles")
        # Whatever we knew is gone: ask the master for its whole view.
        await self.bus.publish(wire.Exchange.ALLOCATION, wire.RoutingKey.TO_MASTER, wire.AllocatorStarted())
        self.leading.set()
        log.info("allocator active with policy %s, epoch %s", self.policy.name, self.bus.epoch)
        if self.leadership is not None:
            await self.leadership.keep()

    async def _stop(self) -> None:
        await self.probes.stop()
        await self.bus.close()
        if self.leadership is not None:
            await self.leadership.resign()
        if self.store is not None:
            await self.store.close()

    async def reload_config(self) -> None:
        """Read policy and roles from etcd; switch policy when it changed."""
        assert self.store is not None
        name = await read_policy(self.store)
        if name is not None and name != self.policy.name:
            try:
                self.policy = make_policy(name)
                log.info("allocator switched to policy %s", name)
            except ValueError as exc:
                log.error("ignoring the configured policy: %s", exc)
        self.state.roles = await read_roles(self.store)

    async def _on_event(self, event: wire.Message, _: AbstractIncomingMessage) -> None:
        handlers.apply(self.state, event)
        if isinstance(event, wire.OffersRevived):
            self._asked.set()
        self._wakeup.set()

    async def _cycle_loop(self) -> None:
        while True:
            try:
                await asyncio.wait_for(self._wakeup.wait(), self.settings.tick_interval)
                await self._gather()
            except TimeoutError:
                if self.store is not None:
                    try:
                        await self.reload_config()
                    except Exception as exc:  # etcd away: allocate with what was read last
                        log.warning("could not read the configuration from etcd (%r); keeping it", exc)
            self._wakeup.clear()
            self._asked.clear()
            await self.run_cycle()

    async def _gather(self) -> None:
        """Wait ``batch_window`` for a burst of events to land in one cycle. A revive ends the wait, as
        Mesos's allocator allocates at once on a revive (on an idle cluster, waiting the window was a third
        of a revived framework's time to its offer); at most once a window, so a framework reviving in a
        loop gets no more cycles than any other burst does."""
        window = self.settings.batch_window
        if time.monotonic() - self._early < window:
            await asyncio.sleep(window)
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._asked.wait(), window)
            self._early = time.monotonic()

    async def run_cycle(self) -> None:
        """Plan, apply the plan to the state, publish one allocation per grant (each its own trace)."""
        started = time.perf_counter()
        now = time.time()
        plan: Plan = plan_cycle(
            self.state, self.policy, now, self.settings.min_offer, self.settings.max_grants_per_cycle
        )
        if plan.truncated:
            self._wakeup.set()  # the next cycle continues where this one stopped
        planned = time.perf_counter() - started
        self._cycle_time.record(planned * 1e3, {"policy": self.policy.name, "granted": bool(plan.grants)})
        self.cycle_seconds.observe(planned)
        self.cycles += 1
        self.grants += len(plan.grants)
        for grant in plan.grants:
            self.state.allocate(grant.framework_id, grant.agent_id, grant.resources)
        for revoke in plan.revocations:
            self.state.revoking[(revoke.framework_id, revoke.agent_id)] = PendingRevocation(
                revoke.for_role, revoke.resources, now + self.settings.revocation_hold
            )
            log.info(
                "revoking %s from %s on %s for role %s",
                revoke.resources,
                revoke.framework_id,
                revoke.agent_id,
                revoke.for_role,
            )
            await self.bus.publish(
                wire.Exchange.ALLOCATION,
                wire.RoutingKey.TO_MASTER,
                wire.Revocation(
                    framework_id=revoke.framework_id,
                    agent_id=revoke.agent_id,
                    resources=revoke.resources,
                    for_role=revoke.for_role,
                ),
            )
        grants: list[wire.Grant] = []
        for grant in plan.grants:
            # Each allocation roots a new trace: the offer cycle it starts is one story. The grants of a
            # cycle travel together; each carries its own trace context.
            # Not made current (a first round grants tens of thousands): the grant carries its context.
            span = self._tracer.start_span(
                "allocator allocate",
                context=otel_context.Context(),
                kind=trace.SpanKind.PRODUCER,
                attributes={
                    "meseta.service": self.name,
                    "meseta.framework_id": grant.framework_id,
                    "meseta.agent_id": grant.agent_id,
                    "meseta.policy": self.policy.name,
                },
            )
            grants.append(
                wire.Grant(
                    framework_id=grant.framework_id,
                    agent_id=grant.agent_id,
                    resources=grant.resources,
                    trace=tracing.inject({}, trace.set_span_in_context(span)),
                )
            )
            span.end()
        for i in range(0, len(grants), wire.MAX_BATCH):
            batch = wire.Allocations(grants=tuple(grants[i : i + wire.MAX_BATCH]))
            await self.bus.publish(wire.Exchange.ALLOCATION, wire.RoutingKey.TO_MASTER, batch)
        if plan.grants:
            log.debug(
                "cycle %d: %d grants in %.2f ms",
                self.cycles,
                len(plan.grants),
                (time.perf_counter() - started) * 1e3,
            )
