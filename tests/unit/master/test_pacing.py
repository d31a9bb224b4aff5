"""The master's heartbeat pacing: slower at once as the cluster grows, faster only once it stays small."""

from __future__ import annotations

import itertools

from meseta.master.pacing import MISSED, HeartbeatPacer


def test_small_clusters_keep_their_agents_own_interval() -> None:
    pacer = HeartbeatPacer(rate=100)
    assert [pacer.update(n, 0.0) for n in (1, 10, 99)] == [None, None, None]
    assert pacer.advertised == 0 and pacer.timeout(5.0, 0.0) == 5.0


def test_growth_is_told_once_per_quarter() -> None:
    pacer = HeartbeatPacer(rate=100)
    told = [t for n in range(1, 1001) if (t := pacer.update(n, 0.0)) is not None]
    # From the floor (1 s at 100 agents) to 10 s, each a quarter or more above the last.
    assert told[0] == 1.0 and told[-1] >= 10 / 1.25
    assert all(b >= a * 1.25 for a, b in itertools.pairwise(told))
    assert len(told) == 11
    assert pacer.timeout(5.0, 0.0) == MISSED * pacer.advertised


def test_a_shorter_interval_waits_until_the_cluster_stays_small() -> None:
    pacer = HeartbeatPacer(rate=100)
    assert pacer.update(1000, 0.0) == 10.0
    # Half the agents gone (or not re-registered yet): not told at once...
    assert pacer.update(500, 1.0) is None
    assert pacer.update(500, 1.0 + MISSED * 10 - 1) is None
    # ...and a cluster back to its size starts the wait again.
    assert pacer.update(1000, 50.0) is None
    assert pacer.update(500, 51.0) is None
    assert pacer.update(500, 51.0 + MISSED * 10) == 5.0
    # Agents may still sleep the old 10 s: they are allowed its silence for a while yet.
    assert pacer.timeout(5.0, 92.0) == MISSED * 10
    assert pacer.timeout(5.0, 92.0 + MISSED * 10) == MISSED * 5


def test_a_new_master_starts_from_the_interval_its_agents_keep() -> None:
    pacer = HeartbeatPacer(rate=100)
    pacer.observe(10.0)  # the first agent to re-register was told 10 s by the old master
    # A few hundred agents re-registered so far: they and the rest are not told to beat faster.
    assert [pacer.update(n, 0.0) for n in (1, 200, 800)] == [None, None, None]
    assert pacer.timeout(5.0, 0.0) == MISSED * 10
    assert pacer.update(1300, 1.0) == 13.0


def test_agents_own_short_intervals_change_nothing() -> None:
    pacer = HeartbeatPacer(rate=100)
    pacer.observe(0.5)  # below the floor: the agent's own business, as the configured timeout is
    assert pacer.update(3, 0.0) is None and pacer.update(3, 100.0) is None
    assert pacer.timeout(5.0, 0.0) == 5.0


def test_a_rate_of_zero_leaves_agents_alone() -> None:
    pacer = HeartbeatPacer(rate=0)
    pacer.observe(30.0)
    assert pacer.update(50_000, 0.0) is None and pacer.timeout(5.0, 0.0) == 5.0
