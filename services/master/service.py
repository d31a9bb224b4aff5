"""The master process: lifecycle only. Behaviour lives in the handler modules, dispatched by
:mod:`.dispatch`; the periodic work in :mod:`.sweeps`."""

from __future__ import annotations

import asyncio
import logging
import time

from meseta.allocator.config import write_policy, write_role
from meseta.master import draining, prometheus, sweeps, views
from meseta.master.activity import Activity
from meseta.master.agents import expire_unreachable, pace_heartbeats
from meseta.master.api import StateApi
from meseta.master.authority import Acl, Authority
from meseta.master.cluster import Cluster, Drain, FrameworkInfo, Window
from meseta.master.core import MasterCore
from meseta.master.dispatch import Dispatcher
from meseta.master.metrics import MasterMetrics
from meseta.master.operator_api import OperatorApi
from meseta.master.outbox import Outbox
from meseta.master.pacing import HeartbeatPacer
from meseta.master.registry import Registry
from meseta.master.settings import MasterSettings
from meseta.master.starvation import assess
from meseta.runtime.etcd import EtcdStore
from meseta.runtime.leader import Leadership, service_url
from meseta.runtime.principal import own_identity
from meseta.runtime.prometheus import Probes
from meseta.runtime.service import Service
from meseta.sdk import wire
from meseta.sdk.bus import Bus

log = logging.getLogger(__name__)


class MasterService(Service):
    """The master as a service."""

    name = "master"

    def __init__(self, settings: MasterSettings) -> None:
        super().__init__()
        self.settings = settings
        identity = own_identity("master", "master", settings.amqp_url, settings.dev)
        acl = Acl.load(settings.acl_file) if settings.acl_file is not None else Acl()
        self.authority = Authority(None if identity is None else identity.principals, acl)
        self.cluster = Cluster()
        self.bus = Bus(settings.amqp_url, self.name, queue_type=settings.queue_type)
        self.store = EtcdStore(settings.etcd_endpoint, settings.etcd_prefix)
        self.registry = Registry(self.store)
        self.activity = Activity()
        self.core = MasterCore(
            self.cluster,
            Outbox(self.bus),
            self.registry,
            settings.offer_timeout,
            settings.revocation_grace,
            self.activity,
            HeartbeatPacer(settings.heartbeat_rate),
            MasterMetrics(self.cluster, lambda: self.leading.is_set()),
            launch_timeout=settings.launch_timeout,
            unreachable_timeout=settings.unreachable_timeout,
            authority=self.authority,
        )
        self.dispatcher = Dispatcher(self.core)
        self._starving: set[str] = set()
        self.leadership = Leadership(self.store, "master", settings.name, settings.lease_ttl)
        self.leading = asyncio.Event()
        """Set once this master leads."""
        operator = OperatorApi(
            lambda: self.core,
            settings.operator_token,
            self.leading.is_set,
            self.leadership.leader_url,
            lambda name: write_policy(self.store, name),
            lambda role, weight, quota: write_role(self.store, role, weight, quota),
        )
        probes = Probes(
            "master",
            self._readiness,
            lambda: prometheus.families(
                self.cluster, self.core.meter, self.leading.is_set, lambda: self.epoch, self.bus, self.lag
            ),
        )
        self.api = StateApi(
            self.cluster, self.activity, self.leader, settings.starvation_after, operator, probes
        )

    @property
    def epoch(self) -> int:
        """This master's fencing token."""
        return self.core.epoch

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
            (await self.bus.declare_queue(name, exchange, key, replicated=True), channel)
            for name, exchange, key, channel in inbound
        ]
        if self.settings.api_port is not None:
            await self.api.start(self.settings.api_host, self.settings.api_port)
            # Where a standby sends operators (307): the leader's own API, as it advertises it.
            url = self.api_url
            assert url is not None  # the API is bound now
            await self.leadership.advertise(url)
        self.spawn(self._lead(), "leadership")
        log.info("master %s up, campaigning for leadership", self.settings.name)

    async def _lead(self) -> None:
        """Campaign; once elected, take over, then hold the lease (losing it fails the service at once)."""
        epoch = await self.leadership.campaign()
        self.bus.epoch = self.core.epoch = epoch
        self.cluster.lost_agents = await self.registry.lost_agents()
        self.cluster.gone_agents = await self.registry.gone_agents()
        # Drains go on under a new leader: the allocator's STATE_SYNC below says which agents to offer.
        self.cluster.drains = {a: Drain(**d) for a, d in (await self.registry.drains()).items()}
        windows = await self.registry.windows()
        self.cluster.maintenance = {w: Window.from_json(d) for w, d in windows.items()}
        for framework_id, entry in (await self.registry.frameworks()).items():
            self.cluster.frameworks[framework_id] = FrameworkInfo.from_registry(framework_id, entry)
            await self.core.outbox.open_framework_queue(framework_id)
        for queue, channel in self._inbound:
            on_invalid = self.dispatcher.invalid_call if channel is wire.CALLS else None
            # Allocations from a deposed allocator are fenced off by its epoch; only an active (elected)
            # allocator sends there, so a message without an epoch is refused.
            allocator = channel is wire.TO_MASTER
            # Who may send here is checked before anything else (calls by the dispatcher, which answers).
            authorize = {
                wire.HEARTBEATS: self.authority.agents,
                wire.STATUS: self.authority.agents,
                wire.TO_MASTER: self.authority.allocator,
            }.get(channel)
            self.bus.consume(
                queue,
                channel,
                self.dispatcher.handle,
                on_invalid,
                fence=allocator,
                stamped=channel.models if allocator else (),
                authorize=authorize,
            )
        self.spawn(self._sweep_loop(), "offer-expiry")
        self.spawn(self._health_loop(), "health")
        self.spawn(self._sample_loop(), "share-samples")
        # An allocator that outlived the old master holds a view of it: replace it with ours.
        await self.core.outbox.sync_allocator(self.cluster.state_sync)
        # Every agent re-registers now, rather than at its next heartbeat: offers resume sooner.
        await self.core.outbox.to_all_agents(wire.ReregisterAgent(agent_id="all"))
        self.leading.set()
        log.info(
            "master %s leads, epoch %d, %d frameworks from the registry",
            self.settings.name,
            epoch,
            len(self.cluster.frameworks),
        )
        await self.leadership.keep()

    async def _stop(self) -> None:
        self.core.outbox.cancel_owed()
        await self.api.stop()
        await self.bus.close()  # stop acting first...
        await self.leadership.resign()  # ...then let a standby take over at once
        await self.store.close()

    async def _sweep_loop(self) -> None:
        synced = backlog_since = time.monotonic()
        backlogged = False
        reconnects = self.bus.reconnects
        while True:
            await asyncio.sleep(self.settings.sweep_interval)
            core, guarded = self.core, sweeps.guarded
            if self.bus.reconnects != reconnects:
                # Back from losing the broker: nobody could be heard meanwhile, and the agents and
                # frameworks that lost it too reconnect up to an interval later (in CI an agent back one
                # interval after the master was removed, its tasks LOST).
                reconnects = self.bus.reconnects
                self._deaf_for_a_reconnect("reconnected to the broker")
            await guarded("offer expiry", sweeps.expire_offers(core))
            await guarded("revocation", sweeps.kill_revoked(core))
            await guarded("drains", draining.sweep(core))
            await guarded("unreachable agents", expire_unreachable(core))
            waiting = await self._unread_heartbeats()
            if waiting and not backlogged:
                backlogged, backlog_since = True, time.monotonic()
            backlogged = bool(waiting)
            # Agents are judged by what they sent, not by how fast this master reads it; but a backlog
            # that never drains (a message nobody can read) must not switch liveness off for good.
            if waiting and time.monotonic() - backlog_since < 3 * self.settings.agent_timeout:
                log.warning("%d heartbeats wait to be read: no agent is taken for silent meanwhile", waiting)
            else:
                await guarded("silent agents", sweeps.remove_silent_agents(core, self.settings.agent_timeout))
            if time.monotonic() - synced >= self.settings.sync_interval(len(self.cluster.agents)):
                synced = time.monotonic()
                await guarded("state sync", core.outbox.sync_allocator(self.cluster.state_sync))
            await guarded("silent frameworks", sweeps.check_frameworks(core, self.settings.framework_timeout))
            await guarded(
                "heartbeat pacing", pace_heartbeats(core)
            )  # shorter only once the cluster is stable

    def _deaf_for_a_reconnect(self, why: str) -> None:
        interval = self.bus.reconnect_interval
        if time.monotonic() + interval > self.core.deaf_until:
            log.info("%s: silence counts against agents and frameworks from %.1f s from now", why, interval)
        self.core.deaf(time.monotonic() + interval)

    def _readiness(self) -> tuple[bool, dict[str, object]]:
        """Ready: connected to the broker, leading or standing by (a standby is ready to take over)."""
        role = "leader" if self.leading.is_set() else "standby"
        return self.bus.connected, {"role": role, "epoch": self.epoch, "broker": self.bus.connected}

    @property
    def api_url(self) -> str | None:
        """This master's state and operator API as others reach it (None: it serves none)."""
        if self.api.port is None:
            return None
        return service_url(self.settings.api_host, self.api.port, self.settings.api_advertise)

    async def _unread_heartbeats(self) -> int:
        """Heartbeats (and registrations) queued at the broker for this master: under a backlog (the
        first offers to 10,000 agents), agents whose heartbeats sat in the queue were removed as lost."""
        queue = next(q for q, channel in self._inbound if channel is wire.HEARTBEATS)
        try:
            declared = await queue.declare()
        except Exception as exc:  # the broker is away: its heartbeats cannot be read either
            log.warning("could not read the heartbeat queue's depth: %r", exc)
            self._deaf_for_a_reconnect("cannot reach the broker")
            return 1
        return int(declared.message_count or 0)

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

    async def _sample_loop(self) -> None:
        while True:
            now = time.time()
            shares = {h.framework_id: h.share for h in assess(self.cluster, now)}
            self.activity.sample(now, shares)
            await asyncio.sleep(self.settings.sample_interval)

    def leader(self) -> views.LeaderView:
        """Who this master is, and whether it leads."""
        return views.LeaderView(
            leading=self.leading.is_set(),
            name=self.settings.name,
            epoch=self.epoch,
            agents=len(self.cluster.agents),
            frameworks=len(self.cluster.frameworks),
            tasks=len(self.cluster.tasks),
            offers=len(self.cluster.offers),
        )

    def state(self) -> views.StateView:
        """A read-only snapshot, the state API's /api/v1/state."""
        return views.state(self.cluster, self.activity, self.leader(), self.settings.starvation_after)
