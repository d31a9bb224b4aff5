"""The master's OpenTelemetry metrics: offers by outcome, offer round trip, tasks by state, shares.

Instruments come from the global meter provider (set by :func:`meseta.sdk.tracing.configure`, or by a
test); without one they cost nothing.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterable

from opentelemetry import metrics
from opentelemetry.metrics import CallbackOptions, Observation

from meseta.master.cluster import Cluster
from meseta.master.starvation import assess

METER = "meseta.master"


class MasterMetrics:
    """Counters the handlers bump, and gauges read from the state when the exporter collects."""

    def __init__(self, cluster: Cluster, leading: Callable[[], bool]) -> None:
        self.cluster = cluster
        self.leading = leading
        meter = metrics.get_meter(METER)
        self._offers = meter.create_counter(
            "meseta.offers",
            unit="{offer}",
            description="Offers by outcome: sent, accepted, declined, rescinded",
        )
        self._round_trip = meter.create_histogram(
            "meseta.offer.round_trip",
            unit="ms",
            description="Allocation to the framework's answer reaching the master",
        )
        meter.create_observable_gauge(
            "meseta.tasks", [self._tasks], unit="{task}", description="Live tasks by state"
        )
        meter.create_observable_gauge(
            "meseta.framework.share", [self._shares], description="Each framework's dominant share"
        )

    def offer(self, outcome: str, framework_id: str, count: int = 1) -> None:
        self._offers.add(count, {"outcome": outcome, "framework_id": framework_id})

    def round_trip(self, millis: float, framework_id: str, decision: str) -> None:
        self._round_trip.record(millis, {"framework_id": framework_id, "decision": decision})

    def _tasks(self, _: CallbackOptions) -> Iterable[Observation]:
        if not self.leading():
            return []
        by_state = Counter(t.state.value for t in self.cluster.tasks.values())
        return [Observation(n, {"state": s}) for s, n in by_state.items()]

    def _shares(self, _: CallbackOptions) -> Iterable[Observation]:
        if not self.leading():
            return []
        return [
            Observation(h.share, {"framework_id": h.framework_id, "name": h.name})
            for h in assess(self.cluster, time.time())
        ]
