"""The agent as a service: lifecycle, registration and heartbeats.

What it does with its messages is in :mod:`.handlers`; tasks are run by :mod:`.runner` (custom executors
by :mod:`.executors`); status updates are made reliable by :mod:`.updates`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random

from meseta.agent import prometheus
from meseta.agent.checkpoint import Checkpoint
from meseta.agent.confinement import Confinement
from meseta.agent.containerizer import Containerizer, DockerContainerizer
from meseta.agent.gpus import discover_gpus
from meseta.agent.handlers import AgentDispatcher
from meseta.agent.images import read_auth_file
from meseta.agent.noop import NoopContainerizer
from meseta.agent.process import ProcessContainerizer
from meseta.agent.runner import TaskRunner
from meseta.agent.settings import AgentSettings
from meseta.agent.tasks import LocalTask, TaskKey
from meseta.agent.updates import PendingUpdate, StatusUpdater
from meseta.runtime.principal import PrincipalError, own_identity
from meseta.runtime.prometheus import Probes
from meseta.runtime.service import Service
from meseta.sdk import wire
from meseta.sdk.bus import Bus
from meseta.sdk.wire import Resources

FROM_EXECUTORS: tuple[type[wire.Message], ...] = (wire.ExecutorRegistered, wire.ExecutorUpdate)
"""What an agent's executors send it; everything else on its queue comes from the master."""

log = logging.getLogger(__name__)


def make_containerizer(settings: AgentSettings, confinement: Confinement) -> Containerizer:
    """The runtime the settings name."""
    if settings.isolator == "docker":
        return DockerContainerizer(
            settings.cluster,
            settings.agent_id,
            settings.docker_url,
            confinement=confinement,
            pull_timeout=settings.pull_timeout,
            registry_auth=read_auth_file(settings.registry_auth_file),
        )
    if settings.isolator == "process":
        return ProcessContainerizer(settings.agent_id, settings.work_dir)
    if settings.isolator == "noop":
        return NoopContainerizer()
    raise ValueError(f"unknown isolator {settings.isolator!r}: use docker, process or noop")


class AgentService(Service):
    """An agent as a service."""

    name = "agent"

    def __init__(
        self, settings: AgentSettings, containerizer: Containerizer | None = None, bus: Bus | None = None
    ) -> None:
        """``containerizer`` and ``bus`` replace the ones the settings name (the agent emulator shares one
        bus among thousands of agents); a given bus is connected and closed by its owner."""
        super().__init__()
        if not wire.is_valid_id(settings.agent_id):
            raise ValueError(f"invalid agent id {settings.agent_id!r}: must match {wire.ID_PATTERN}")
        self.agent_id = settings.agent_id
        identity = own_identity("agent", "agent", settings.amqp_url, settings.dev)
        if identity is not None and identity.name != self.agent_id:
            raise PrincipalError(
                f"agent {self.agent_id} logs in as {identity.principals.agent(identity.name)}: "
                f"it must be {identity.principals.agent(self.agent_id)}"
            )
        self.principals = None if identity is None else identity.principals
        """The cluster's principals (None in development mode: senders are not checked)."""
        self.gpu_ids = settings.gpu_ids if settings.gpu_ids is not None else discover_gpus()
        self.settings = settings
        # The GPU inventory decides the gpus resource, so offers and device ids always agree.
        self.resources = settings.resources.model_copy(update={"gpus": len(self.gpu_ids)})
        self._owns_bus = bus is None
        self.bus = bus or Bus(settings.amqp_url, self.name)
        if settings.executor_network not in ("host", "bridge"):
            raise ValueError(f"--executor-network {settings.executor_network!r}: host or bridge")
        switches = settings.isolator != "process"
        if settings.task_user is not None and not switches:
            raise ValueError("--task-user needs the docker isolator: plain processes run as the agent's user")
        confinement = Confinement(settings.allowed_mounts, settings.pids_limit, settings.task_user, switches)
        self.containerizer = containerizer or make_containerizer(settings, confinement)
        self.checkpoint = Checkpoint(settings.work_dir / settings.agent_id, settings.fsync_checkpoints)
        self.updates = StatusUpdater(
            self.agent_id,
            self.bus,
            self.checkpoint,
            settings.status_retry_interval,
            settings.max_unacknowledged,
        )
        self.runner = TaskRunner(
            settings, self.containerizer, self.updates, self.checkpoint, self.bus, confinement
        )
        self.dispatcher = AgentDispatcher(self)
        self.told_interval = 0.0
        """The heartbeat interval the master asks for at least (0: none; it holds its heartbeat rate)."""
        self._stagger = False
        self.probes = Probes("agent", self._readiness, lambda: prometheus.families(self))
        self._serving = False
        self.read = wire.LaunchMark(epoch=0, sequence=0)
        """The furthest launch mark read from the queue; heartbeats carry it with the tasks it led to."""

    # What tests and the emulator read of an agent.

    @property
    def tasks(self) -> dict[TaskKey, LocalTask]:
        """The tasks on this agent."""
        return self.runner.tasks

    @property
    def unacknowledged(self) -> dict[str, PendingUpdate]:
        """Status updates the framework has not acknowledged yet, by uuid."""
        return self.updates.unacknowledged

    @property
    def resent(self) -> int:
        return self.updates.resent

    @property
    def free(self) -> Resources:
        """What running tasks leave of the agent's resources."""
        return self.resources - self.runner.used()

    def _readiness(self) -> tuple[bool, dict[str, object]]:
        """Ready: connected to the broker and taking launches."""
        ready = self._serving and self.bus.connected
        return ready, {
            "agent_id": self.agent_id,
            "broker": self.bus.connected,
            "tasks": len(self.runner.tasks),
        }

    async def _start(self) -> None:
        if self.settings.metrics_port is not None:
            await self.probes.start(self.settings.metrics_host, self.settings.metrics_port)
        await self.containerizer.ping()
        if self._owns_bus:
            await self.bus.connect()
        # Replicated where the bus is (several brokers' URLs: a quorum queue): a classic queue is unusable
        # while its node is down (the agent's robust connection cannot declare it again elsewhere: NOT_FOUND),
        # and a transient one was not forgotten soon enough either. On one broker, classic and durable.
        queue = await self.bus.declare_queue(
            wire.agent_queue(self.agent_id),
            wire.Exchange.LAUNCHES,
            self.agent_id,
            durable=True,
            replicated=self.bus.queue_type == "quorum",
        )
        if self.bus.declare_topology:  # else provisioned, bindings and all
            await queue.bind(wire.Exchange.LAUNCHES, wire.RoutingKey.ALL_AGENTS)
        # Everything here but its executors' own messages comes from the leading master, with its epoch.
        from_master = set(wire.LAUNCHES.models) - set(FROM_EXECUTORS)
        # Recovered first: a REREGISTER waiting in the queue (a new master's broadcast while this agent was
        # away) answered before the tasks were read back registered the agent with none, and the master
        # never learnt of them (a returning lost agent's tasks then ran on).
        await self.runner.recover()
        self.updates.recover()
        self._consumer = self.bus.consume(
            queue,
            wire.LAUNCHES,
            self.dispatcher.handle,
            fence=True,
            stamped=from_master,
            authorize=self._authorize,
        )
        await self.register()
        self._serving = True
        self.spawn(self._heartbeat_loop(), "heartbeats")
        self.spawn(self.updates.retry_loop(), "status-retries")
        self.spawn(self.runner.retention_loop(), "retention")
        log.info(
            "agent %s started with %s (%s isolator)", self.agent_id, self.resources, self.settings.isolator
        )

    def _authorize(self, message: wire.Message, user: str | None) -> str | None:
        """Outside development mode: commands from the master's principal, executors' messages from this
        agent's executors' principal, nothing from anyone else (another agent, a framework, a task)."""
        if self.principals is None:
            return None
        if isinstance(message, FROM_EXECUTORS):
            return wire.refusal(message.type, user, self.principals.executors(self.agent_id))
        return wire.refusal(message.type, user, self.principals.master)

    async def _stop(self) -> None:
        self._serving = False
        await self.probes.stop()
        await self.runner.stop()
        with contextlib.suppress(Exception):
            await self.updates.drain()
        with contextlib.suppress(Exception):
            await self.checkpoint.flush()
        if self._owns_bus:
            await self.bus.close()
        else:
            self._consumer.cancel()
        self.containerizer.close()

    async def register(self) -> None:
        """Announce this agent with its whole inventory."""
        running = tuple(
            wire.RunningTask(
                framework_id=t.framework_id,
                task_id=t.info.task_id,
                resources=t.info.resources,
                gpu_ids=t.gpu_ids,
            )
            for t in self.runner.tasks.values()
        )
        registration = wire.RegisterAgent(
            agent_id=self.agent_id,
            hostname=self.settings.hostname,
            attributes=self.settings.attributes,
            resources=self.resources,
            gpu_ids=self.gpu_ids,
            heartbeat_interval=self.heartbeat_interval,
            running_tasks=running,
        )
        await self.bus.publish(wire.Exchange.HEARTBEATS, wire.RoutingKey.HEARTBEAT, registration)

    @property
    def heartbeat_interval(self) -> float:
        """Seconds between heartbeats: this agent's own, or the master's where that is longer."""
        return max(self.settings.heartbeat_interval, self.told_interval)

    def read_to(self, mark: wire.LaunchMark | None) -> None:
        """The queue has been read up to ``mark`` (after its launch, if any, is in the runner's tasks)."""
        if mark is not None and mark.key > self.read.key:
            self.read = mark

    def told(self, seconds: float) -> None:
        """The master asks for heartbeats at least ``seconds`` apart (0: this agent's own interval)."""
        if seconds != self.told_interval:
            self.told_interval = seconds
            # Every agent hears a broadcast at once: each starts its new rhythm at a random point of
            # it, or they would all beat in the same second from then on.
            self._stagger = True

    async def _heartbeat_loop(self) -> None:
        while True:
            wait = self.heartbeat_interval
            if self._stagger:
                self._stagger = False
                wait = random.uniform(0, wait)
            await asyncio.sleep(wait)
            beat = wire.Heartbeat(
                agent_id=self.agent_id,
                free=self.free,
                running_tasks=tuple(tid for _, tid in self.runner.tasks),
                read=self.read,
            )
            # Not waiting for the broker's confirm: the next heartbeat must leave on time, however slow
            # the broker is to confirm this one.
            await self.bus.publish(wire.Exchange.HEARTBEATS, wire.RoutingKey.HEARTBEAT, beat, wait=False)
