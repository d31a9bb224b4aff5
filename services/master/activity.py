"""What the master remembers of recent activity, for operators: offer cycles and shares over time.

Bounded ring buffers: the state API and the web page read them; nothing in scheduling depends on them.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from dataclasses import dataclass


@dataclass
class CycleRecord:
    """One offer cycle as the master saw it: allocated, offered, answered."""

    offer_id: str
    framework_id: str
    agent_id: str
    allocated_at: float
    offered_at: float
    answered_at: float | None = None
    decision: str = "pending"
    """pending, accept, decline, rescind."""
    tasks: int = 0

    @property
    def round_trip_ms(self) -> float | None:
        """Allocation to the framework's answer reaching the master."""
        if self.answered_at is None:
            return None
        return (self.answered_at - self.allocated_at) * 1e3


@dataclass(frozen=True)
class ShareSample:
    """Every framework's dominant share at one moment."""

    at: float
    shares: dict[str, float]


class Activity:
    """Recent offer cycles (answered ones, newest last) and share samples."""

    def __init__(self, cycles: int = 200, samples: int = 600) -> None:
        self._open: OrderedDict[str, CycleRecord] = OrderedDict()
        self._open_limit = 10_000
        self.cycles: deque[CycleRecord] = deque(maxlen=cycles)
        self.samples: deque[ShareSample] = deque(maxlen=samples)

    def offered(self, record: CycleRecord) -> None:
        self._open[record.offer_id] = record
        if len(self._open) > self._open_limit:
            self._open.popitem(last=False)  # an offer nobody answered, long ago

    def answered(self, offer_id: str, decision: str, at: float, tasks: int = 0) -> CycleRecord | None:
        """Close the cycle of ``offer_id``; None when it was not open (unknown, or already closed)."""
        record = self._open.pop(offer_id, None)
        if record is None:
            return None
        record.answered_at, record.decision, record.tasks = at, decision, tasks
        self.cycles.append(record)
        return record

    def sample(self, at: float, shares: dict[str, float]) -> None:
        self.samples.append(ShareSample(at, shares))
