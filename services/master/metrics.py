"""The master's OpenTelemetry metrics: offers by outcome, offer round trip, tasks by state, shares.

Instruments come from the global meter provider (set by :func:`meseta.sdk.tracing.configure`, or by a
test); without one they cost nothing. An instrument is registered once per process (the SDK keeps the
first of a name), so the gauges read every live master of the process: only a leader reports.
"""

from __future__ import annotations

import time
import weakref
from collections import Counter
from collections.abc import Callable, Iterable
from typing import Any

from opentelemetry import metrics
from opentelemetry.metrics import CallbackOptions, Observation

from meseta.master.cluster import Cluster
from meseta.master.starvation import assess
from meseta.sdk.histogram import Histogram

METER = "meseta.master"
OUTCOMES = ("sent", "accepted", "declined", "rescinded")
DECISIONS = ("accept", "decline")
_LIVE: weakref.WeakSet[MasterMetrics] = weakref.WeakSet()
_INSTRUMENTS: dict[str, Any] = {}


def _instruments() -> dict[str, Any]:
    if not _INSTRUMENTS:
        meter = metrics.get_meter(METER)
        # Observed from plain totals: a synchronous counter's add cost the master 7 % of its time in a
        # first round at 10,000 agents (attributes hashed and looked up per offer).
        meter.create_observable_counter(
            "meseta.offers",
            [_observe_offers],
            unit="{offer}",
            description="Offers by outcome: sent, accepted, declined, rescinded",
        )
        _INSTRUMENTS["round_trip"] = meter.create_histogram(
            "meseta.offer.round_trip",
            unit="ms",
            description="Allocation to the framework's answer reaching the master",
        )
        meter.create_observable_gauge(
            "meseta.tasks", [_observe_tasks], unit="{task}", description="Live tasks by state"
        )
        meter.create_observable_gauge(
            "meseta.framework.share", [_observe_shares], description="Each framework's dominant share"
        )
    return _INSTRUMENTS


_OFFERS: Counter[tuple[str, str]] = Counter()
"""(outcome, framework id) -> offers so far, by every master of this process (cumulative, as a counter
must be: a master that goes away takes nothing back)."""


def _observe_offers(_: CallbackOptions) -> Iterable[Observation]:
    return [Observation(n, {"outcome": o, "framework_id": f}) for (o, f), n in list(_OFFERS.items())]


def _leaders() -> list[MasterMetrics]:
    return [m for m in list(_LIVE) if m.leading()]


def _observe_tasks(_: CallbackOptions) -> Iterable[Observation]:
    out = []
    for source in _leaders():
        by_state = Counter(t.state.value for t in source.cluster.tasks.values())
        out += [Observation(n, {"state": s}) for s, n in by_state.items()]
    return out


def _observe_shares(_: CallbackOptions) -> Iterable[Observation]:
    return [
        Observation(h.share, {"framework_id": h.framework_id, "name": h.name})
        for source in _leaders()
        for h in assess(source.cluster, time.time())
    ]


class MasterMetrics:
    """Counters the handlers bump, and gauges read from the state when the exporter collects."""

    def __init__(self, cluster: Cluster, leading: Callable[[], bool]) -> None:
        self.cluster = cluster
        self.leading = leading
        instruments = _instruments()
        self._round_trip = instruments["round_trip"]
        self.offers: Counter[str] = Counter({outcome: 0 for outcome in OUTCOMES})
        """This master's offers by outcome (for Prometheus; OpenTelemetry's are the process's)."""
        self.round_trips: dict[str, Histogram] = {decision: Histogram() for decision in DECISIONS}
        """This master's offer round trips by the framework's answer, seconds."""
        _LIVE.add(self)

    def offer(self, outcome: str, framework_id: str, count: int = 1) -> None:
        _OFFERS[outcome, framework_id] += count
        self.offers[outcome] += count

    def round_trip(self, millis: float, framework_id: str, decision: str) -> None:
        self._round_trip.record(millis, {"framework_id": framework_id, "decision": decision})
        self.round_trips.setdefault(decision, Histogram()).observe(millis / 1e3)
