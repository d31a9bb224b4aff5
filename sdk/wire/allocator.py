"""Messages between the master and the allocator."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Final, Literal, Self

from pydantic import Field, model_validator

from meseta.sdk.wire.base import (
    MAX_BATCH,
    MAX_MESSAGE_BYTES,
    MAX_PRIORITY,
    MAX_SECONDS,
    MAX_WEIGHT,
    Id,
    Message,
    _Frozen,
    new_id,
)
from meseta.sdk.wire.model import OfferFilters
from meseta.sdk.wire.resources import Resources

__all__ = [
    "MAX_SYNC_PARTS",
    "SYNC_PART_BYTES",
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
    "state_sync_parts",
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


MAX_SYNC_PARTS: Final = 1024
"""Parts of one state sync. 1,024 of half a MiB hold a view of about three million agents, and bound what
an allocator keeps of an unfinished one."""
SYNC_PART_BYTES: Final = MAX_MESSAGE_BYTES // 2
"""What the master puts in one part at most (encoded): under the decoder's bound with room to spare."""


class StateSync(Message):
    """The master's whole view, replacing the allocator's (after either of them starts).

    A view too large for one message (a MiB is 3,000 to 7,000 agents, by what each carries) comes in
    ``parts`` messages of one ``sync_id``, sent in order with no other message of the master's to the
    allocator between them; the allocator takes the view once its last part has come, all at once, and
    drops an unfinished one (its sender gone mid-way) when another begins. A view of one part has
    ``parts`` 1.
    """

    type: Literal["STATE_SYNC"] = "STATE_SYNC"
    agents: tuple[AgentAdded, ...] = ()
    frameworks: tuple[FrameworkAdded, ...] = ()
    held: tuple[Held, ...] = ()
    sync_id: str = Field(default="", max_length=64)
    part: int = Field(default=0, ge=0)
    parts: int = Field(default=1, ge=1, le=MAX_SYNC_PARTS)

    @model_validator(mode="after")
    def _part_of_parts(self) -> Self:
        if self.part >= self.parts:
            raise ValueError(f"part {self.part} of a sync in {self.parts} parts")
        return self


_ENVELOPE_BYTES = 1024
"""A part's bytes besides its items (type, ids, version, the three lists' names), with room to spare."""


def state_sync_parts(
    agents: Sequence[AgentAdded],
    frameworks: Sequence[FrameworkAdded],
    held: Sequence[Held],
    max_bytes: int = SYNC_PART_BYTES,
) -> list[StateSync]:
    """A view as one StateSync, or as parts of one sync id, each at most ``max_bytes`` encoded (a single
    item larger than that goes alone). Raises ValueError for a view of more than MAX_SYNC_PARTS parts."""
    items: list[AgentAdded | FrameworkAdded | Held] = [*frameworks, *agents, *held]
    # Each item's own encoding, plus the comma between items; a part's envelope is a few hundred bytes.
    lengths = [len(item.model_dump_json()) + 1 for item in items]
    budget = max_bytes - _ENVELOPE_BYTES
    if sum(lengths) <= budget:
        return [StateSync(agents=tuple(agents), frameworks=tuple(frameworks), held=tuple(held))]
    chunks: list[list[AgentAdded | FrameworkAdded | Held]] = []
    start, size = 0, 0
    for i, length in enumerate(lengths):
        if i > start and size + length > budget:
            chunks.append(items[start:i])
            start, size = i, 0
        size += length
    chunks.append(items[start:])
    if len(chunks) > MAX_SYNC_PARTS:
        raise ValueError(f"a view of {len(items)} items needs {len(chunks)} parts (at most {MAX_SYNC_PARTS})")
    sync_id = new_id("sync")
    return [
        StateSync(
            agents=tuple(i for i in chunk if isinstance(i, AgentAdded)),
            frameworks=tuple(i for i in chunk if isinstance(i, FrameworkAdded)),
            held=tuple(i for i in chunk if isinstance(i, Held)),
            sync_id=sync_id,
            part=n,
            parts=len(chunks),
        )
        for n, chunk in enumerate(chunks)
    ]


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
