"""Meseta's framework SDK: a client, a callback-style scheduler, and the wire contract's public types."""

from meseta.sdk.calls import KillRefused, LogsUnavailable, fetch_logs, operator_kill
from meseta.sdk.client import (
    Event,
    FrameworkClient,
    FrameworkStats,
    SubscribeError,
    offer_cycle_percentiles,
)
from meseta.sdk.scheduler import Scheduler, run
from meseta.sdk.wire import (
    AttributeConstraint,
    ContainerSpec,
    HealthCheck,
    Offer,
    OfferFilters,
    PortRange,
    RegistryAuth,
    Resources,
    StatusReason,
    TaskInfo,
    TaskState,
    TaskStatus,
)

__all__ = [
    "AttributeConstraint",
    "ContainerSpec",
    "Event",
    "FrameworkClient",
    "FrameworkStats",
    "HealthCheck",
    "KillRefused",
    "LogsUnavailable",
    "Offer",
    "OfferFilters",
    "PortRange",
    "RegistryAuth",
    "Resources",
    "Scheduler",
    "StatusReason",
    "SubscribeError",
    "TaskInfo",
    "TaskState",
    "TaskStatus",
    "fetch_logs",
    "offer_cycle_percentiles",
    "operator_kill",
    "run",
]
