"""Channels: what may travel on each exchange (and routing key), and the decoder for it."""

from __future__ import annotations

from typing import Annotated, Any, Final, Union

from pydantic import Field, TypeAdapter

from meseta.sdk.wire.agents import (
    AcknowledgeUpdates,
    ExecutorMessage,
    ExecutorRegistered,
    ExecutorUpdate,
    FetchLogs,
    Heartbeat,
    HeartbeatInterval,
    KillExecutorTask,
    KillTask,
    LaunchTasks,
    MarkLaunches,
    RegisterAgent,
    ReregisterAgent,
    RunTask,
    ShutdownExecutor,
    StatusUpdates,
)
from meseta.sdk.wire.allocator import (
    AgentAdded,
    AgentAvailability,
    AgentRemoved,
    Allocations,
    AllocatorStarted,
    FiltersUpdated,
    FrameworkAdded,
    FrameworkRemoved,
    OffersRevived,
    OffersSuppressed,
    ResourcesRecovered,
    Revocation,
    StateSync,
)
from meseta.sdk.wire.base import Message
from meseta.sdk.wire.frameworks import (
    Accept,
    Acknowledge,
    Decline,
    DrainNotice,
    Error,
    Failure,
    FrameworkHeartbeat,
    GetLogs,
    Kill,
    Killing,
    Offers,
    OperatorKill,
    Reconcile,
    Rescind,
    Revive,
    RevocationNotice,
    SendToExecutor,
    SetFilters,
    Subscribe,
    Subscribed,
    Suppress,
    TaskLogs,
    Teardown,
    Updates,
)
from meseta.sdk.wire.topology import Exchange, RoutingKey

__all__ = [
    "CALLS",
    "CHANNELS",
    "EXECUTOR",
    "FRAMEWORK_EVENTS",
    "HEARTBEATS",
    "LAUNCHES",
    "REPLIES",
    "STATUS",
    "TO_ALLOCATOR",
    "TO_MASTER",
    "Channel",
]


def _union(*models: type[Message]) -> TypeAdapter[Any]:
    if len(models) == 1:
        return TypeAdapter(models[0])
    return TypeAdapter(Annotated[Union[models], Field(discriminator="type")])  # type: ignore[arg-type]  # noqa: UP007


class Channel:
    """What may travel on one exchange (and routing key): the message types and their decoder."""

    def __init__(self, name: str, *models: type[Message]) -> None:
        self.name = name
        self.models = models
        self.types = frozenset(m.model_fields["type"].default for m in models)
        self._adapter = _union(*models)

    def validate(self, data: dict[str, Any]) -> Message:
        """Validate an already-parsed object against this channel's models."""
        message: Message = self._adapter.validate_python(data)
        return message

    def validate_json(self, body: bytes) -> Message:
        """Parse and validate a JSON body against this channel's models."""
        message: Message = self._adapter.validate_json(body)
        return message


HEARTBEATS = Channel(Exchange.HEARTBEATS, RegisterAgent, Heartbeat)
LAUNCHES = Channel(
    Exchange.LAUNCHES,
    LaunchTasks,
    MarkLaunches,
    KillTask,
    AcknowledgeUpdates,
    ReregisterAgent,
    HeartbeatInterval,
    FetchLogs,
    ExecutorRegistered,
    ExecutorUpdate,
    ExecutorMessage,
)
EXECUTOR = Channel("executor", RunTask, KillExecutorTask, ShutdownExecutor, ExecutorMessage)
"""What an executor receives from its agent."""
STATUS = Channel(Exchange.STATUS, StatusUpdates)
CALLS = Channel(
    Exchange.CALLS,
    Subscribe,
    Accept,
    Decline,
    Kill,
    Acknowledge,
    Suppress,
    Revive,
    SetFilters,
    Teardown,
    GetLogs,
    OperatorKill,
    SendToExecutor,
    FrameworkHeartbeat,
    Reconcile,
)
REPLIES = Channel("reply", Subscribed, TaskLogs, Killing, Error)
"""Answers that come to a caller's private ``reply_to`` queue."""
FRAMEWORK_EVENTS = Channel(
    Exchange.OFFERS, Subscribed, Offers, Rescind, Updates, Failure, RevocationNotice, DrainNotice, Error
)
TO_ALLOCATOR = Channel(
    f"{Exchange.ALLOCATION}/{RoutingKey.TO_ALLOCATOR}",
    AgentAdded,
    AgentAvailability,
    AgentRemoved,
    FrameworkAdded,
    FrameworkRemoved,
    ResourcesRecovered,
    OffersSuppressed,
    OffersRevived,
    FiltersUpdated,
    StateSync,
)
TO_MASTER = Channel(
    f"{Exchange.ALLOCATION}/{RoutingKey.TO_MASTER}", Allocations, AllocatorStarted, Revocation
)
CHANNELS: Final = (
    HEARTBEATS,
    LAUNCHES,
    EXECUTOR,
    STATUS,
    CALLS,
    REPLIES,
    FRAMEWORK_EVENTS,
    TO_ALLOCATOR,
    TO_MASTER,
)
"""Every channel: what may travel anywhere in Meseta."""
