"""The starvation and offer-storm detector: why does a framework receive nothing?

Pure: from the master's state to one :class:`FrameworkHealth` per framework. The master logs the
frameworks that turn starving, and exposes the whole report in its state.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from itertools import chain
from typing import Any

from meseta.master.cluster import Cluster
from meseta.master.settings import DEFAULT_STARVATION_AFTER
from meseta.sdk.wire import Resources

STORM_MIN_OFFERS = 20
STORM_DECLINE_RATIO = 0.9


@dataclass(frozen=True)
class FrameworkHealth:
    """One framework's offer health."""

    framework_id: str
    name: str
    suppressed: bool
    offers_sent: int
    decline_ratio: float
    seconds_since_accept: float
    share: float
    fair_share: float
    starving: bool
    """Wants offers, holds less than half its fair share, and has accepted nothing for a while."""
    offer_storm: bool
    """Declines nearly everything it is sent: standing filters would spare the round trips."""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _share(held: list[float], total: Resources) -> float:
    totals = (total.cpus, total.mem, total.disk, float(total.gpus))
    return max((h / t for h, t in zip(held, totals, strict=True) if t > 0), default=0.0)


def _held_scalars(cluster: Cluster) -> dict[str, list[float]]:
    """Framework id -> [cpus, mem, disk, gpus] it holds in tasks and offers. Plain floats, not Resources
    sums: during a first round at 50,000 agents there are 50,000 offers, and the health and share loops
    adding them up as Resources (as ``Cluster.held`` does for the allocator) took most of the master."""
    held: dict[str, list[float]] = {}
    parts = chain(
        ((t.framework_id, t.resources) for t in cluster.tasks.values()),
        ((o.framework_id, o.resources) for o in cluster.offers.values()),
    )
    for framework_id, r in parts:
        acc = held.get(framework_id)
        if acc is None:
            acc = held[framework_id] = [0.0, 0.0, 0.0, 0.0]
        acc[0] += r.cpus
        acc[1] += r.mem
        acc[2] += r.disk
        acc[3] += r.gpus
    return held


def assess(
    cluster: Cluster, now: float, starvation_after: float = DEFAULT_STARVATION_AFTER
) -> list[FrameworkHealth]:
    """The health of every framework."""
    total = cluster.total
    held = _held_scalars(cluster)
    nothing = [0.0, 0.0, 0.0, 0.0]
    wanting = [fw for fw in cluster.frameworks.values() if not fw.suppressed]
    weights = sum(fw.weight for fw in wanting) or 1.0
    report = []
    for fw in cluster.frameworks.values():
        s = fw.stats
        decided = s.offers_accepted + s.offers_declined
        decline_ratio = s.offers_declined / decided if decided else 0.0
        since = now - (fw.last_accept_at or fw.subscribed_at)
        share = _share(held.get(fw.framework_id, nothing), total)
        fair = 0.0 if fw.suppressed else fw.weight / weights
        report.append(
            FrameworkHealth(
                framework_id=fw.framework_id,
                name=fw.name,
                suppressed=fw.suppressed,
                offers_sent=s.offers_sent,
                decline_ratio=round(decline_ratio, 3),
                seconds_since_accept=round(since, 1),
                share=round(share, 4),
                fair_share=round(fair, 4),
                starving=not fw.suppressed and since > starvation_after and share < fair / 2,
                offer_storm=decided >= STORM_MIN_OFFERS and decline_ratio >= STORM_DECLINE_RATIO,
            )
        )
    return report
