"""A master's view that comes in parts (``wire.StateSync`` of one ``sync_id``), kept until it is whole.

The master sends a view too large for one message as consecutive parts. The allocator must take it all at
once: a part on its own would replace the whole state with a slice of it.
"""

from __future__ import annotations

import logging

from meseta.sdk import wire

log = logging.getLogger(__name__)


class SyncAssembler:
    """The parts of the view under way; at most one view (the newest) is kept."""

    def __init__(self) -> None:
        self._parts: list[wire.StateSync] = []

    def add(self, part: wire.StateSync) -> wire.StateSync | None:
        """The whole view once ``part`` completes it; None while parts are missing.

        A view that begins (part 0, or a view of one part) drops an unfinished one: its sender was lost
        mid-way, and the new view is newer. A part that does not follow the one before is dropped with the
        unfinished view (logged): applying what came would lose the rest of the master's state.
        """
        if part.part == 0:
            if self._parts:
                log.warning(
                    "sync %s dropped after %d of its %d parts: sync %s began",
                    self._parts[0].sync_id,
                    len(self._parts),
                    self._parts[0].parts,
                    part.sync_id or "(one part)",
                )
            self._parts = [part]
        elif (
            not self._parts
            or part.sync_id != self._parts[0].sync_id
            or part.parts != self._parts[0].parts
            or part.part != len(self._parts)
        ):
            awaited = f"part {len(self._parts)} of sync {self._parts[0].sync_id}" if self._parts else "part 0"
            log.warning(
                "part %d of %d of sync %s dropped, with any unfinished view: %s was awaited",
                part.part,
                part.parts,
                part.sync_id,
                awaited,
            )
            self._parts = []
            return None
        else:
            self._parts.append(part)
        if len(self._parts) < part.parts:
            return None
        parts, self._parts = self._parts, []
        if len(parts) == 1:
            return parts[0]
        # Every part was validated as it came: the whole needs no validating again.
        return wire.StateSync.model_construct(
            agents=tuple(a for p in parts for a in p.agents),
            frameworks=tuple(f for p in parts for f in p.frameworks),
            held=tuple(h for p in parts for h in p.held),
            sync_id=parts[0].sync_id,
            part=0,
            parts=1,
        )

    @property
    def pending(self) -> int:
        """Parts held of an unfinished view."""
        return len(self._parts)
