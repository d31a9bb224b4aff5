"""Messages between the master and the allocator."""

from __future__ import annotations

import time
from typing import Literal

from pydantic import Field

from meseta.sdk.wire.base import MAX_BATCH, MAX_PRIORITY, MAX_SECONDS, MAX_WEIGHT, Id, Message, _Frozen
from meseta.sdk.wire.model import OfferFilters
from meseta.sdk.wire.resources import Resources

__all__ = [
    "AgentAdded",
    "AgentAvailability",
    "AgentRemoved",
    "Allocations",
    "AllocatorStarted",
    "FiltersUpdated",
    "FrameworkAdded",
    "FrameworkRemoved",
    "Grant",
    "Held",
    "OffersRevived",
    "OffersSuppressed",
    "Recovered",
    "ResourcesRecovered",
    "Revocation",
    "StateSync",
]


# master <-> allocator, on ALLOCATION


class AgentAdded(Message):
    """An agent joined (or re-joined) with these resources not yet allocated."""

    type: Literal["AGENT_ADDED"] = "AGENT_ADDED"
    agent_id: Id
    hostname: str
    attributes: dict[str, str] = Field(default_factory=dict)
    total: Resources
    available: Resources
    unavailable: bool = False
    """Draining or in maintenance: accounted as usual, offered to nobody."""


class AgentAvailability(Message):
    """An operator drained an agent (``available`` false: offer none of it, keep its accounting) or
    brought it back."""

    type: Literal["AGENT_AVAILABILITY"] = "AGENT_AVAILABILITY"
    agent_id: Id
    available: bool


class AgentRemoved(Message):
    """An agent left: its resources are gone."""

    type: Literal["AGENT_REMOVED"] = "AGENT_REMOVED"
    agent_id: Id


class FrameworkAdded(Message):
    """A framework subscribed (or the master reloaded it)."""

    type: Literal["FRAMEWORK_ADDED"] = "FRAMEWORK_ADDED"
    framework_id: Id
    role: str = "*"
    weight: float = Field(default=1.0, gt=0, le=MAX_WEIGHT)
    priority: int = Field(default=0, ge=-MAX_PRIORITY, le=MAX_PRIORITY)
    filters: OfferFilters = Field(default_factory=OfferFilters)
    suppressed: bool = False


class FiltersUpdated(Message):
    """A framework's standing filters changed."""

    type: Literal["FILTERS_UPDATED"] = "FILTERS_UPDATED"
    framework_id: Id
    filters: OfferFilters


class Held(_Frozen):
    """Resources a framework holds on an agent (offered or used)."""

    framework_id: Id
    agent_id: Id
    resources: Resources


class StateSync(Message):
    """The master's whole view, replacing the allocator's (after either of them starts)."""

    type: Literal["STATE_SYNC"] = "STATE_SYNC"
    agents: tuple[AgentAdded, ...] = ()
    frameworks: tuple[FrameworkAdded, ...] = ()
    held: tuple[Held, ...] = ()


class FrameworkRemoved(Message):
    """A framework left; its allocations were recovered separately."""

    type: Literal["FRAMEWORK_REMOVED"] = "FRAMEWORK_REMOVED"
    framework_id: Id


class Recovered(_Frozen):
    """Resources allocated to a framework came back (declined, unused, or their task ended)."""

    framework_id: Id
    agent_id: Id
    resources: Resources
    refuse_seconds: float = Field(default=0.0, ge=0, le=MAX_SECONDS)
    """The framework is not offered these resources of this agent again for this long (a decline's
    filter; a slice of the agent with more in it is offered)."""


class ResourcesRecovered(Message):
    """Recoveries, in one message."""

    type: Literal["RESOURCES_RECOVERED"] = "RESOURCES_RECOVERED"
    items: tuple[Recovered, ...] = Field(min_length=1, max_length=MAX_BATCH)


class OffersSuppressed(Message):
    """The framework wants no offers."""

    type: Literal["OFFERS_SUPPRESSED"] = "OFFERS_SUPPRESSED"
    framework_id: Id


class OffersRevived(Message):
    """The framework wants offers again and its filters are cleared."""

    type: Literal["OFFERS_REVIVED"] = "OFFERS_REVIVED"
    framework_id: Id


class AllocatorStarted(Message):
    """A (re)started allocator asks the master for a STATE_SYNC."""

    type: Literal["ALLOCATOR_STARTED"] = "ALLOCATOR_STARTED"


class Revocation(Message):
    """Take ``resources`` on ``agent_id`` back from ``framework_id`` (quota enforcement)."""

    type: Literal["REVOCATION_REQUEST"] = "REVOCATION_REQUEST"
    framework_id: Id
    agent_id: Id
    resources: Resources
    for_role: str


class Grant(_Frozen):
    """One allocation in an ALLOCATIONS batch, with the trace context of the offer cycle it starts."""

    framework_id: Id
    agent_id: Id
    resources: Resources
    allocated_at: float = Field(default_factory=time.time)
    trace: dict[str, str] = Field(default_factory=dict, max_length=4)


class Allocations(Message):
    """One allocation cycle's grants in one message (a cycle over thousands of free agents is one)."""

    type: Literal["ALLOCATIONS"] = "ALLOCATIONS"
    grants: tuple[Grant, ...] = Field(min_length=1, max_length=MAX_BATCH)
