"""Percentiles, defined once: the SDK's offer-cycle figures, ``meseta trace report``, the demo's summary
and the benchmarks all use :func:`percentile`, so they agree on the same data."""

from __future__ import annotations

import math
from collections.abc import Sequence


def percentile(values: Sequence[float], q: float) -> float:
    """The nearest-rank ``q``-th percentile (0 < q <= 100): the smallest value with at least q % of the
    values at or below it. NaN when there are none."""
    if not values:
        return math.nan
    if not 0 < q <= 100:
        raise ValueError(f"percentile {q} is not in (0, 100]")
    ordered = sorted(values)
    rank = math.ceil(q / 100 * len(ordered))
    return ordered[max(1, rank) - 1]
