"""The master's Prometheus metrics, read from its state at scrape time (meseta.runtime.prometheus serves
them). Every series listed in docs/OPERATIONS.md is present from the start, zero where nothing happened.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable

from prometheus_client.core import Metric

from meseta.master import draining
from meseta.master.cluster import Cluster
from meseta.master.metrics import MasterMetrics
from meseta.master.starvation import assess
from meseta.runtime.process_stats import LoopLag
from meseta.runtime.prometheus import common, counter, gauge, histogram
from meseta.sdk import wire
from meseta.sdk.bus import Bus

AGENT_STATES = ("ACTIVE", "DRAINING", "DRAINED")


def families(
    cluster: Cluster,
    meter: MasterMetrics,
    leading: Callable[[], bool],
    epoch: Callable[[], int],
    bus: Bus,
    lag: LoopLag,
) -> list[Metric]:
    """The master's metric families now."""
    out = common(bus, lag)
    out.append(gauge("meseta_master_leading", "1 while this master leads", {(): float(leading())}))
    out.append(
        gauge("meseta_master_epoch", "This master's term as leader (0: standby)", {(): float(epoch())})
    )
    out.append(
        counter(
            "meseta_offers",
            "Offers by outcome: sent, accepted, declined, rescinded",
            {(o,): float(n) for o, n in meter.offers.items()},
            ["outcome"],
        )
    )
    round_trip = "meseta_offer_round_trip_seconds"
    doc = "Allocation to the framework's answer reaching the master, by the answer"
    for decision, source in sorted(meter.round_trips.items()):
        out.append(histogram(round_trip, doc, source, decision=decision))
    by_state: Counter[str] = Counter({s.value: 0 for s in wire.TaskState if not s.terminal})
    by_framework: Counter[tuple[str, str]] = Counter()
    for task in cluster.tasks.values():
        by_state[task.state.value] += 1
        by_framework[task.framework_id, task.state.value] += 1
    out.append(
        gauge("meseta_tasks", "Live tasks by state", {(s,): float(n) for s, n in by_state.items()}, ["state"])
    )
    out.append(
        gauge(
            "meseta_framework_tasks",
            "Live tasks by framework and state",
            {k: float(n) for k, n in by_framework.items()},
            ["framework_id", "state"],
        )
    )
    agents: Counter[str] = Counter({s: 0 for s in AGENT_STATES})
    for agent_id in cluster.agents:
        agents[draining.state_of(cluster, agent_id)] += 1
    out.append(
        gauge(
            "meseta_agents",
            "Registered agents by state",
            {(s,): float(n) for s, n in agents.items()},
            ["state"],
        )
    )
    shares = {(h.framework_id, h.name): h.share for h in assess(cluster, time.time())} if leading() else {}
    out.append(
        gauge("meseta_framework_share", "Each framework's dominant share", shares, ["framework_id", "name"])
    )
    out.append(gauge("meseta_frameworks", "Subscribed frameworks", {(): float(len(cluster.frameworks))}))
    out.append(
        gauge(
            "meseta_offers_outstanding", "Offers sent and not yet answered", {(): float(len(cluster.offers))}
        )
    )
    return out
