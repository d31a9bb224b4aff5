"""The master process: lifecycle only. Behaviour lives in :mod:`.handlers`."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from dataclasses import dataclass, field
from typing import Any

from meseta.master.cluster import Cluster, FrameworkInfo
from meseta.master.handlers import MasterHandlers
from meseta.master.registry import Registry
from meseta.master.starvation import DEFAULT_STARVATION_AFTER, assess
from meseta.runtime.etcd import DEFAULT_ENDPOINT, EtcdStore
from meseta.runtime.leader import Leadership
from meseta.runtime.service import Service
from meseta.sdk import wire
from meseta.sdk.bus import Bus

log = logging.getLogger(__name__)

DEFAULT_OFFER_TIMEOUT = 30.0


@dataclass(frozen=True)
class MasterSettings:
    """How the master runs."""

    amqp_url: str
    etcd_endpoint: str = DEFAULT_ENDPOINT
    etcd_prefix: str = "/meseta"
    offer_timeout: float = DEFAULT_OFFER_TIMEOUT
    """Seconds an offer stays valid before it is rescinded."""
    sweep_interval: float = 0.5
    """Seconds between checks for expired offers and due revocations."""
    revocation_grace: float = 5.0
    """Seconds a framework has between a revocation notice and the kill."""
    name: str = field(default_factory=lambda: f"master-{socket.gethostname()}-{os.getpid()}")
    lease_ttl: int = 1
    """Seconds of the leader lease: a dead leader's standby takes over within about this long."""
    agent_timeout: float = 5.0
    framework_timeout: float = 3.0
    """Seconds without a framework heartbeat (or call) before it counts as disconnected."""
    """Seconds without a heartbeat after which an agent and its tasks are lost."""
    starvation_after: float = DEFAULT_STARVATION_AFTER
    health_interval: float = 5.0


class MasterService(Service):
    """The master as a service."""

    name = "master"

    def __init__(self, settings: MasterSettings) -> None:
        super().__init__()
        self.settings = settings
        self.cluster = Cluster()
        self.bus = Bus(settings.amqp_url, self.name)
        self.store = EtcdStore(settings.etcd_endpoint, settings.etcd_prefix)
        self.registry = Registry(self.store)
        self.handlers = MasterHandlers(
            self.cluster, self.bus, self.registry, settings.offer_timeout, settings.revocation_grace
        )
        self._starving: set[str] = set()
        self.leadership = Leadership(self.store, "master", settings.name, settings.lease_ttl)
        self.leading = asyncio.Event()
        """Set once this master leads."""

    @property
    def epoch(self) -> int:
        """This master's fencing token."""
        return self.handlers.epoch

    async def _start(self) -> None:
        await self.store.connect()
        await self.bus.connect()
        inbound = [
            (
                wire.Queue.MASTER_HEARTBEATS,
                wire.Exchange.HEARTBEATS,
                wire.RoutingKey.HEARTBEAT,
                wire.HEARTBEATS,
            ),
            (wire.Queue.MASTER_STATUS, wire.Exchange.STATUS, wire.RoutingKey.STATUS, wire.STATUS),
            (wire.Queue.MASTER_CALLS, wire.Exchange.CALLS, wire.RoutingKey.CALL, wire.CALLS),
            (
                wire.Queue.MASTER_ALLOCATIONS,
                wire.Exchange.ALLOCATION,
                wire.RoutingKey.TO_MASTER,
                wire.TO_MASTER,
            ),
        ]
        # Declared by standbys too, so nothing sent while no master leads is lost.
        self._inbound = [
            (await self.bus.declare_queue(name, exchange, key), channel)
            for name, exchange, key, channel in inbound
        ]
        self.spawn(self._lead(), "leadership")
        log.info("master %s up, campaigning for leadership", self.settings.name)

    async def _lead(self) -> None:
        """Campaign; once elected, take over, then hold the lease (losing it fails the service at once)."""
        epoch = await self.leadership.campaign()
        self.bus.epoch = self.handlers.epoch = epoch
        for framework_id, entry in (await self.registry.frameworks()).items():
            self.cluster.frameworks[framework_id] = FrameworkInfo.from_registry(framework_id, entry)
            await self.bus.declare_queue(
                wire.framework_queue(framework_id), wire.Exchange.OFFERS, framework_id
            )
        for queue, channel in self._inbound:
            on_invalid = self.handlers.invalid_call if channel is wire.CALLS else None
            # Allocations from a deposed allocator are fenced off by its epoch.
            self.bus.consume(
                queue, channel, self.handlers.handle, on_invalid, fence=channel is wire.TO_MASTER
            )
        self.spawn(self._sweep_loop(), "offer-expiry")
        self.spawn(self._health_loop(), "health")
        # An allocator that outlived the old master holds a view of it: replace it with ours.
        await self.handlers.to_allocator(self.cluster.state_sync())
        # Every agent re-registers now, rather than at its next heartbeat: offers resume sooner.
        await self.bus.publish(
            wire.Exchange.LAUNCHES, wire.RoutingKey.ALL_AGENTS, wire.ReregisterAgent(agent_id="all")
        )
        self.leading.set()
        log.info(
            "master %s leads, epoch %d, %d frameworks from the registry",
            self.settings.name,
            epoch,
            len(self.cluster.frameworks),
        )
        await self.leadership.keep()

    async def _stop(self) -> None:
        await self.bus.close()  # stop acting first...
        await self.leadership.resign()  # ...then let a standby take over at once
        await self.store.close()

    async def _sweep_loop(self) -> None:
        while True:
            await asyncio.sleep(self.settings.sweep_interval)
            await self.handlers.expire_offers()
            await self.handlers.kill_revoked()
            await self.handlers.remove_silent_agents(self.settings.agent_timeout)
            await self.handlers.check_frameworks(self.settings.framework_timeout)

    async def _health_loop(self) -> None:
        while True:
            await asyncio.sleep(self.settings.health_interval)
            report = assess(self.cluster, time.time(), self.settings.starvation_after)
            for health in report:
                if health.starving and health.framework_id not in self._starving:
                    log.warning("framework %s (%s) is starving: %s", health.framework_id, health.name, health)
                if health.offer_storm:
                    log.warning(
                        "framework %s declines %.0f%% of its offers: it should set filters or suppress",
                        health.framework_id,
                        health.decline_ratio * 100,
                    )
            self._starving = {h.framework_id for h in report if h.starving}

    def state(self) -> dict[str, Any]:
        """A read-only snapshot: agents, frameworks with their offer health, tasks, offers."""
        health = {
            h.framework_id: h.as_dict()
            for h in assess(self.cluster, time.time(), self.settings.starvation_after)
        }
        return {
            "epoch": self.epoch,
            "agents": {
                a.agent_id: {
                    "hostname": a.hostname,
                    "attributes": a.attributes,
                    "total": a.total.model_dump(),
                    "used": a.used.model_dump(),
                    "offered": a.offered.model_dump(),
                }
                for a in self.cluster.agents.values()
            },
            "frameworks": {
                fw.framework_id: {
                    "name": fw.name,
                    "role": fw.role,
                    "weight": fw.weight,
                    "priority": fw.priority,
                    "tasks": len(fw.tasks),
                    "offers": len(fw.offers),
                    "health": health[fw.framework_id],
                }
                for fw in self.cluster.frameworks.values()
            },
            "tasks": [
                {
                    "framework_id": t.framework_id,
                    "task_id": t.task_id,
                    "agent_id": t.agent_id,
                    "state": t.state.value,
                }
                for t in self.cluster.tasks.values()
            ],
            "offers": [o.model_dump(mode="json") for o in self.cluster.offers.values()],
        }
