"""What every master handler works with: the state, the outbox, the registry, and the call being handled.

A handler is a function ``(master, message, call)``: ``master`` is the :class:`MasterCore` all handlers
share; ``call`` is what belongs to this one message alone (who to answer). Nothing about one message is
ever kept on the shared object: four queues' handlers interleave wherever one awaits.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Protocol

from opentelemetry import trace

from meseta.master.activity import Activity
from meseta.master.authority import Authority
from meseta.master.cluster import Cluster
from meseta.master.metrics import MasterMetrics
from meseta.master.outbox import Outbox
from meseta.master.pacing import HeartbeatPacer
from meseta.sdk import tracing, wire
from meseta.sdk.wire import ErrorCode

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Call:
    """What belongs to one message being handled."""

    reply_to: str | None = None
    """The AMQP ``reply_to`` queue of the caller: refusals of a framework the master does not know, and
    answers to operators' calls, go there."""
    principal: str | None = None
    """The framework principal that sent it, read from its broker-checked ``user_id`` (None in
    development mode, and for messages that are not a framework's)."""


NO_CALLER = Call()
"""Messages from agents and the allocator: nobody to answer."""


class FrameworkRegistry(Protocol):
    """Where frameworks are kept across master restarts (etcd in a service; a dict in unit tests)."""

    async def save_framework(self, framework_id: str, info: dict[str, Any]) -> None: ...
    async def remove_framework(self, framework_id: str) -> None: ...
    async def agent_lost(self, agent_id: str, at: float) -> None: ...
    async def agent_back(self, agent_id: str) -> None: ...
    async def agent_gone(self, agent_id: str, at: float) -> None: ...
    async def save_drain(self, agent_id: str, drain: dict[str, Any]) -> None: ...
    async def remove_drain(self, agent_id: str) -> None: ...
    async def save_window(self, window_id: str, window: dict[str, Any]) -> None: ...
    async def remove_window(self, window_id: str) -> None: ...


@dataclass
class MasterCore:
    """The master's state and collaborators, shared by all its handlers and sweeps."""

    cluster: Cluster
    outbox: Outbox
    registry: FrameworkRegistry
    offer_timeout: float
    """Seconds an offer stays valid before it is rescinded."""
    revocation_grace: float
    """Seconds between a revocation notice and the kill."""
    activity: Activity = field(default_factory=Activity)
    pacer: HeartbeatPacer = field(default_factory=lambda: HeartbeatPacer(0.0))
    metrics: MasterMetrics | None = None
    epoch: int = 0
    """This master's term as leader (0 until it leads)."""
    launch_timeout: float = 30.0
    """Seconds after which a task still STAGING that its agent's heartbeat does not list is LOST."""
    unreachable_timeout: float = 300.0
    """Seconds partition-aware tasks on a lost agent stay UNREACHABLE before they are GONE."""
    authority: Authority = field(default_factory=lambda: Authority(None))
    """Who may send what (development mode, nothing checked, unless the service gives principals)."""
    deaf_until: float = 0.0
    """Monotonic time before which no silence counts against an agent or a framework: this master could
    not hear them (it had lost the broker), and those who lost it too come back up to a reconnect
    interval after it does."""

    def silent_since(self, heard: float) -> float:
        """Since when (monotonic) one last heard at ``heard`` has been silent, as far as this master
        could hear."""
        return max(heard, self.deaf_until)

    def deaf(self, until: float) -> None:
        """Hold no silence before ``until`` against anyone."""
        self.deaf_until = max(self.deaf_until, until)

    def __post_init__(self) -> None:
        self.outbox.events = self.cluster.events  # every status a framework is sent is an event too
        if self.metrics is None:
            self.metrics = MasterMetrics(self.cluster, lambda: self.epoch > 0)
        self.tracer = tracing.tracer("master")

    @property
    def meter(self) -> MasterMetrics:
        assert self.metrics is not None
        return self.metrics

    async def refuse(
        self, framework_id: str, call: wire.Message, code: ErrorCode, text: str, ctx: Call
    ) -> None:
        """An ERROR for a framework's call: to the framework's queue, or to the caller when the master does
        not know the framework (there is no queue of that name to route to)."""
        log.info("refused %s of %s: %s %s", call.type, framework_id, code, text)
        if (fw := self.cluster.frameworks.get(framework_id)) is not None:
            fw.stats.errors += 1
        trace.get_current_span().set_attribute("meseta.error", str(code))
        error = wire.Error(framework_id=framework_id, code=code, message=text, correlation_id=call.message_id)
        if fw is None:
            await self.outbox.to_caller(ctx.reply_to, error)
        else:
            await self.outbox.to_framework(framework_id, error)

    async def known(self, msg: wire.FrameworkCall, ctx: Call) -> bool:
        """Whether the calling framework is subscribed; refused with UNKNOWN_FRAMEWORK when not."""
        if msg.framework_id in self.cluster.frameworks:
            return True
        text = f"framework {msg.framework_id} is not subscribed"
        await self.refuse(msg.framework_id, msg, ErrorCode.UNKNOWN_FRAMEWORK, text, ctx)
        return False

    def answered(self, offer_id: str, decision: str, at: float, tasks: int = 0) -> None:
        """Record a framework's answer to an offer (the offer cycle's end)."""
        record = self.activity.answered(offer_id, decision, at, tasks)
        if record is not None and record.round_trip_ms is not None and decision != "rescind":
            self.meter.round_trip(record.round_trip_ms, record.framework_id, decision)
