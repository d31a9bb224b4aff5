"""Exchanges, routing keys, queues and headers: where messages travel. Nothing else spells their names."""

from __future__ import annotations

from enum import StrEnum
from typing import Final

__all__ = [
    "DEAD_LETTER_BODY_BYTES",
    "DEAD_LETTER_LIMITS",
    "DELIVERY_LIMIT",
    "EXECUTOR_QUEUE_EXPIRES_MS",
    "HEADER_EPOCH",
    "HEADER_ORIGIN",
    "HEADER_ORIGINAL_BYTES",
    "HEADER_REASON",
    "QUEUE_TYPES",
    "Exchange",
    "Queue",
    "RoutingKey",
    "agent_queue",
    "executor_key",
    "executor_queue",
    "executor_task_id",
    "framework_queue",
    "is_executor_task_id",
    "reply_queue",
]


class Exchange(StrEnum):
    """The exchanges; all are direct exchanges."""

    HEARTBEATS = "meseta.heartbeats"  # agent -> master
    OFFERS = "meseta.offers"  # master -> framework, routing key = framework id
    LAUNCHES = "meseta.launches"  # master -> agent, routing key = agent id
    STATUS = "meseta.status"  # agent -> master
    CALLS = "meseta.calls"  # framework -> master
    ALLOCATION = "meseta.allocation"  # master <-> allocator
    DEAD_LETTER = "meseta.dead-letter"  # anything refused, with the reason in a header


class RoutingKey(StrEnum):
    """Fixed routing keys; per-framework and per-agent keys are the ids themselves."""

    HEARTBEAT = "heartbeat"
    STATUS = "status"
    CALL = "call"
    TO_ALLOCATOR = "to-allocator"
    TO_MASTER = "to-master"
    DEAD_LETTER = "dead-letter"
    ALL_AGENTS = "all-agents"
    """Every agent's queue is bound with it too: the master's broadcasts (REREGISTER after a failover)."""


class Queue(StrEnum):
    """Named queues of the services."""

    MASTER_HEARTBEATS = "meseta.master.heartbeats"
    MASTER_STATUS = "meseta.master.status"
    MASTER_CALLS = "meseta.master.calls"
    MASTER_ALLOCATIONS = "meseta.master.allocations"
    ALLOCATOR_EVENTS = "meseta.allocator.events"
    DEAD_LETTER = "meseta.dead-letter"


_EXECUTOR_TASK = "executor."


def executor_task_id(executor_id: str, agent_id: str) -> str:
    """The task id under which an executor's own container is accounted and reported."""
    return f"{_EXECUTOR_TASK}{executor_id}.{agent_id}"[:128]


def is_executor_task_id(task_id: str) -> bool:
    """Whether ``task_id`` names an executor's own container (:func:`executor_task_id`), not a task."""
    return task_id.startswith(_EXECUTOR_TASK)


def executor_key(agent_id: str, framework_id: str, executor_id: str) -> str:
    """Routing key (and queue name suffix) of one executor on one agent."""
    return f"executor.{agent_id}.{framework_id}.{executor_id}"


def executor_queue(key: str) -> str:
    """The queue of the executor whose routing key is ``key`` (:func:`executor_key`)."""
    return f"meseta.{key}"


EXECUTOR_QUEUE_EXPIRES_MS: Final = 60_000
"""An executor's queue is deleted a minute after its executor stopped consuming it."""


def reply_queue(unique: str) -> str:
    """A caller's private (exclusive) queue for answers sent with ``reply_to``."""
    return f"meseta.reply.{unique}"


def agent_queue(agent_id: str) -> str:
    """The queue an agent consumes LAUNCH/KILL from."""
    return f"meseta.agent.{agent_id}"


def framework_queue(framework_id: str) -> str:
    """The queue a framework consumes its events from."""
    return f"meseta.framework.{framework_id}"


HEADER_REASON: Final = "x-meseta-reason"
HEADER_ORIGIN: Final = "x-meseta-origin"
HEADER_EPOCH: Final = "x-meseta-epoch"
HEADER_ORIGINAL_BYTES: Final = "x-meseta-original-bytes"
"""On a dead letter whose body was cut to :data:`DEAD_LETTER_BODY_BYTES`: how long it was."""

QUEUE_TYPES: Final = ("quorum", "classic")
"""What the queues whose loss loses work are: quorum queues (replicated by Raft across a RabbitMQ cluster's
nodes: the default where a service is given several brokers' URLs) or classic ones (one node's: the
default with one URL). ``MESETA_QUEUE_TYPE`` decides, for agents' queues and the dead-letter queue too.
Reply and executor queues are always classic: they live as long as their connection or executor
(see docs/FAULT_TOLERANCE.md)."""

DELIVERY_LIMIT: Final = 20
"""Deliveries of one message a quorum queue makes before it dead-letters it: a message that kills its
consumer every time (a crash loop) stops there."""

DEAD_LETTER_BODY_BYTES: Final = 8192
"""What a dead letter keeps of its body."""
DEAD_LETTER_LIMITS: Final = (
    ("x-max-length", 10_000),
    ("x-max-length-bytes", 64 * 1024 * 1024),
    ("x-overflow", "drop-head"),
)
"""The dead-letter queue's bound: the newest 10,000 messages or 64 MiB, the oldest dropped first."""
