"""One function per event the master sends the allocator: each only changes the state."""

from __future__ import annotations

import logging
import time

from meseta.allocator.state import AllocatorState
from meseta.sdk import wire

log = logging.getLogger(__name__)


def apply(state: AllocatorState, event: wire.Message, now: float | None = None) -> None:
    """Apply one master event to the allocator state."""
    now = time.time() if now is None else now
    match event:
        case wire.AgentAdded():
            state.add_agent(
                event.agent_id,
                event.hostname,
                event.attributes,
                event.total,
                event.available,
                event.unavailable,
            )
        case wire.AgentAvailability():
            if not state.set_available(event.agent_id, event.available):
                log.info("availability of unknown agent %s ignored", event.agent_id)
        case wire.AgentRemoved():
            state.remove_agent(event.agent_id)
        case wire.FrameworkAdded():
            state.add_framework(event)
        case wire.FrameworkRemoved():
            state.remove_framework(event.framework_id)
        case wire.ResourcesRecovered():
            for item in event.items:
                refuse_until = now + item.refuse_seconds if item.refuse_seconds > 0 else None
                if not state.recover(item.framework_id, item.agent_id, item.resources, refuse_until):
                    log.info("stale recovery ignored: %s on %s", item.framework_id, item.agent_id)
        case wire.OffersSuppressed():
            state.set_suppressed(event.framework_id, True)
        case wire.OffersRevived():
            state.set_suppressed(event.framework_id, False)
            state.clear_filters(event.framework_id)
        case wire.FiltersUpdated():
            state.set_standing_filters(event.framework_id, event.filters)
        case wire.StateSync():
            whole = state.sync.add(event)
            if whole is not None:
                state.replace_with(whole)
                log.info(
                    "state synced: %d agents, %d frameworks (%d parts)",
                    len(state.agents),
                    len(state.frameworks),
                    event.parts,
                )
        case _:
            raise ValueError(f"the allocator does not handle {event.type}")
