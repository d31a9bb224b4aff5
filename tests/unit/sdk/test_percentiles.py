"""One percentile for all of Meseta: the demo's summary and ``meseta trace report`` agree on the same data."""

from __future__ import annotations

import math

import pytest

from meseta.ops import trace_report
from meseta.sdk import offer_cycle_percentiles
from meseta.sdk.stats import percentile


def test_nearest_rank() -> None:
    values = [4.0, 1.0, 3.0, 2.0]
    assert [percentile(values, q) for q in (25, 50, 51, 75, 99, 100)] == [1, 2, 3, 3, 4, 4]
    assert percentile([7.0], 1) == 7
    assert math.isnan(percentile([], 50))
    with pytest.raises(ValueError, match="not in"):
        percentile(values, 0)


def test_the_sdk_and_the_trace_report_agree() -> None:
    # They had one definition each: on these the demo printed p50 3 ms, the trace report 2 ms.
    seconds = [0.001, 0.002, 0.003, 0.004]
    p50, p99 = offer_cycle_percentiles(seconds)
    stats = trace_report.Stats.of([s * 1000 for s in seconds])
    assert (p50, p99) == pytest.approx((stats.p50, stats.p99))
    assert p50 == pytest.approx(2.0)
