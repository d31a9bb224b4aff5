"""A fixed-bucket histogram of durations: cheap enough for every publish, read as Prometheus reads one.

The SDK's bus records its publish-to-confirm latency here without depending on a metrics library; the
services expose these as Prometheus histograms (meseta.runtime.prometheus).
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field

DEFAULT_BUCKETS: tuple[float, ...] = (
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)
"""Upper bounds in seconds (a +Inf bucket follows): half a millisecond to ten seconds."""


@dataclass
class Histogram:
    """Observations counted by upper bound (non-cumulative here; cumulative when read)."""

    bounds: tuple[float, ...] = DEFAULT_BUCKETS
    counts: list[int] = field(default_factory=list)
    total: float = 0.0
    """Sum of every observation."""

    def __post_init__(self) -> None:
        if not self.counts:
            self.counts = [0] * (len(self.bounds) + 1)

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.bounds, value)] += 1
        self.total += value

    @property
    def count(self) -> int:
        return sum(self.counts)

    def cumulative(self) -> list[tuple[str, int]]:
        """``(le, observations at most le)``, the last ``+Inf``: Prometheus's buckets."""
        out: list[tuple[str, int]] = []
        running = 0
        for bound, n in zip((*map(repr, self.bounds), "+Inf"), self.counts, strict=True):
            running += n
            out.append((bound, running))
        return out
