"""The starvation and offer-storm detector, with no I/O."""

from __future__ import annotations

from meseta.master.cluster import AgentInfo, Cluster, FrameworkInfo, TaskEntry
from meseta.master.starvation import STORM_MIN_OFFERS, assess
from meseta.sdk.wire import Resources


def cluster() -> Cluster:
    c = Cluster()
    c.add_agent(AgentInfo("a1", "h1", {}, Resources(cpus=4, mem=4096), last_seen=0))
    for fid in ("fed", "hungry", "idle"):
        c.frameworks[fid] = FrameworkInfo(fid, fid, "*", 1.0, subscribed_at=0.0)
    c.frameworks["idle"].suppressed = True
    c.add_task(TaskEntry("fed", "t1", "a1", Resources(cpus=4, mem=1024)))
    c.frameworks["fed"].last_accept_at = 90.0
    return c


def test_a_framework_with_demand_and_nothing_for_long_is_starving() -> None:
    report = {h.framework_id: h for h in assess(cluster(), now=100.0, starvation_after=30)}
    assert report["fed"].share == 1.0 and not report["fed"].starving
    assert report["hungry"].starving
    assert report["hungry"].share == 0.0
    assert report["hungry"].fair_share == 0.5  # two frameworks want offers; the suppressed one does not count
    assert report["hungry"].seconds_since_accept == 100.0
    assert not report["idle"].starving and report["idle"].fair_share == 0.0


def test_not_starving_before_the_threshold() -> None:
    report = {h.framework_id: h for h in assess(cluster(), now=20.0, starvation_after=30)}
    assert not report["hungry"].starving


def test_offer_storm_is_flagged_by_decline_ratio() -> None:
    c = cluster()
    stats = c.frameworks["hungry"].stats
    stats.offers_sent, stats.offers_declined, stats.offers_accepted = (
        STORM_MIN_OFFERS,
        STORM_MIN_OFFERS - 1,
        1,
    )
    report = {h.framework_id: h for h in assess(c, now=100.0)}
    assert report["hungry"].offer_storm
    assert report["hungry"].decline_ratio == 0.95
    assert not report["fed"].offer_storm
