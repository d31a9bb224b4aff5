"""The starvation and offer-storm detector: why does a framework receive nothing?

Pure: from the master's state to one :class:`FrameworkHealth` per framework. The master logs the
frameworks that turn starving, and exposes the whole report in its state.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from meseta.master.cluster import Cluster
from meseta.sdk.wire import Resources

DEFAULT_STARVATION_AFTER = 30.0
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


def _share(held: Resources, total: Resources) -> float:
    totals = total.scalars()
    return max((v / totals[n] for n, v in held.scalars().items() if totals[n] > 0), default=0.0)


def assess(
    cluster: Cluster, now: float, starvation_after: float = DEFAULT_STARVATION_AFTER
) -> list[FrameworkHealth]:
    """The health of every framework."""
    total = cluster.total
    held: dict[str, Resources] = {}
    for part in cluster.held():
        held[part.framework_id] = held.get(part.framework_id, Resources()) + part.resources
    wanting = [fw for fw in cluster.frameworks.values() if not fw.suppressed]
    weights = sum(fw.weight for fw in wanting) or 1.0
    report = []
    for fw in cluster.frameworks.values():
        s = fw.stats
        decided = s.offers_accepted + s.offers_declined
        decline_ratio = s.offers_declined / decided if decided else 0.0
        since = now - (fw.last_accept_at or fw.subscribed_at)
        share = _share(held.get(fw.framework_id, Resources()), total)
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
