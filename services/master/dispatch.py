"""Which handler takes which message: one table, keyed by the wire contract's own classes, and checked
(:func:`meseta.runtime.dispatch.check_coverage`) to cover exactly the channels the master consumes
(:data:`INBOUND`)."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from aio_pika.abc import AbstractIncomingMessage

from meseta.master import agents, allocation, frameworks, offers, operator
from meseta.master.core import Call, MasterCore
from meseta.runtime.dispatch import check_coverage
from meseta.sdk import wire
from meseta.sdk.wire import ErrorCode

log = logging.getLogger(__name__)

Handler = Callable[[MasterCore, Any, Call], Awaitable[None]]

INBOUND: tuple[wire.Channel, ...] = (wire.HEARTBEATS, wire.STATUS, wire.CALLS, wire.TO_MASTER)
"""What the master consumes: agents' heartbeats, their status updates, calls, and the allocator."""

HANDLERS: Mapping[type[wire.Message], Handler] = {
    # agents
    wire.RegisterAgent: agents.register_agent,
    wire.Heartbeat: agents.heartbeat,
    wire.StatusUpdates: agents.status_updates,
    # frameworks
    wire.Subscribe: frameworks.subscribe,
    wire.FrameworkHeartbeat: frameworks.framework_heartbeat,
    wire.Accept: offers.accept,
    wire.Decline: offers.decline,
    wire.Kill: frameworks.kill,
    wire.Acknowledge: frameworks.acknowledge,
    wire.Reconcile: frameworks.reconcile,
    wire.Suppress: frameworks.suppress,
    wire.Revive: frameworks.revive,
    wire.SetFilters: frameworks.set_filters,
    wire.SendToExecutor: frameworks.send_to_executor,
    wire.Teardown: frameworks.teardown,
    # operators
    wire.GetLogs: operator.get_logs,
    wire.OperatorKill: operator.operator_kill,
    # the allocator
    wire.Allocations: allocation.allocations,
    wire.AllocatorStarted: allocation.allocator_started,
    wire.Revocation: allocation.revocation,
}


class Dispatcher:
    """Hands each decoded message to its handler, with its own :class:`Call`; checks framework secrets."""

    def __init__(self, master: MasterCore, handlers: Mapping[type[wire.Message], Handler] = HANDLERS) -> None:
        check_coverage("master", handlers, INBOUND)
        self.master = master
        self._handlers = dict(handlers)
        self._calls = frozenset(wire.CALLS.models)

    async def handle(self, message: wire.Message, incoming: AbstractIncomingMessage) -> None:
        """Dispatch one message. A call must come from a principal that may make it (outside development
        mode), and a framework's call must carry its framework's secret."""
        authority = self.master.authority
        # Only a call has a principal to read (agents' and the allocator's messages, the many, do not).
        is_call = type(message) in self._calls
        principal = authority.caller(incoming.user_id) if is_call else None
        call = Call(reply_to=incoming.reply_to, principal=principal)
        if is_call:
            named = getattr(message, "framework_id", None)
            owner = self.master.cluster.frameworks.get(named) if isinstance(named, str) else None
            why = authority.call(message, incoming.user_id, None if owner is None else owner.principal)
            if why is not None:
                await self._unauthorized(message, named if isinstance(named, str) else "", why, call)
                return
        if isinstance(message, wire.FrameworkCall):
            fw = self.master.cluster.frameworks.get(message.framework_id)
            if fw is not None and not fw.holds_secret(message.secret):
                # Told to the caller only: the framework it pretends to be hears nothing.
                refusal = wire.Error(
                    framework_id=message.framework_id,
                    code=ErrorCode.UNAUTHORIZED,
                    message=f"wrong secret for framework {message.framework_id}",
                    correlation_id=message.message_id,
                )
                log.info("refused a call: %s", refusal)
                await self.master.outbox.to_caller(call.reply_to, refusal)
                return
            if fw is not None:
                fw.last_seen = time.time()
        await self._handlers[type(message)](self.master, message, call)

    async def _unauthorized(self, message: wire.Message, framework_id: str, text: str, call: Call) -> None:
        """Refuse a call its sender may not make: told to the caller only (the framework it names hears
        nothing of it)."""
        refusal = wire.Error(
            framework_id=framework_id,
            code=ErrorCode.UNAUTHORIZED,
            message=text,
            correlation_id=message.message_id,
        )
        log.warning("refused %s: %s", message.type, text)
        await self.master.outbox.to_caller(call.reply_to, refusal)

    async def invalid_call(self, body: bytes, reason: str, incoming: AbstractIncomingMessage) -> None:
        """A call that failed validation was dead-lettered: tell its sender why, when it can be told."""
        try:
            data = json.loads(body)
        except ValueError:
            return
        if not isinstance(data, dict):
            return
        framework_id = data.get("framework_id")
        code = ErrorCode.INVALID_TASK if "tasks." in reason else ErrorCode.INVALID_CALL
        answer = wire.Error(
            framework_id=framework_id if isinstance(framework_id, str) else "",
            code=code,
            message=reason,
            correlation_id=str(data.get("message_id", ""))[:64] or None,
        )
        if incoming.reply_to:
            await self.master.outbox.to_caller(incoming.reply_to, answer)
        elif isinstance(framework_id, str) and framework_id in self.master.cluster.frameworks:
            await self.master.outbox.to_framework(framework_id, answer)
