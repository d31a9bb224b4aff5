"""How often agents heartbeat, as the cluster grows: the master holds its own heartbeat rate.

As Nomad's servers stretch heartbeat TTLs to hold a fixed rate, the master tells agents to beat no more
often than every ``agents / rate`` seconds: at 10,000 agents beating every 10 s the master fell 30,000
heartbeats behind. Agents keep their own interval where that is longer (small clusters beat as
configured). Agents are told on registering, and all at once (one broadcast) when the interval has
grown by a quarter since the last broadcast; a shorter one only once the cluster has stayed smaller for
a while. The silence after which an agent counts as lost grows with the interval, and after the
interval shrinks the old one is still allowed for a while: an agent may have slept the long interval
just before it was told.
"""

from __future__ import annotations

from dataclasses import dataclass

DEFAULT_HEARTBEAT_RATE = 100.0
"""Agent heartbeats per second a master holds at most (Nomad's servers hold 50)."""
CHANGE = 0.25
"""Relative change of the interval that makes the master tell every agent."""
MISSED = 4.0
"""Intervals without a heartbeat after which an agent is lost (when that is longer than the timeout)."""


@dataclass
class HeartbeatPacer:
    rate: float
    """Heartbeats per second the master wants at most; 0 leaves agents to their own interval."""
    floor: float = 1.0
    """Shorter intervals are not told: agents' own are about that (a broadcast per few agents, for
    nothing, while a cluster is small)."""
    advertised: float = 0.0
    """The interval last told to every agent (0: none yet)."""
    _lower_since: float | None = None
    """Since when the cluster has wanted a shorter interval than the one told."""
    _longest: float = 0.0
    _longest_until: float = 0.0

    def interval(self, agents: int) -> float:
        """The interval for this many agents: 0 where the agents' own is slow enough for the rate."""
        wanted = agents / self.rate if self.rate > 0 else 0.0
        return wanted if wanted >= self.floor else 0.0

    def observe(self, seconds: float) -> None:
        """An agent registers beating this slowly (its own interval, or one an earlier master told it):
        after a failover, the new master starts from there rather than from its first few agents."""
        if self.rate > 0 and seconds >= self.floor:
            self.advertised = max(self.advertised, seconds)

    def update(self, agents: int, now: float) -> float | None:
        """The new interval to tell every agent, when it has moved enough since the last broadcast.

        Slower at once; faster only once the cluster has stayed smaller for ``MISSED`` intervals: a
        cluster still re-registering with a new master looks small, and telling all its agents to beat
        fast would bring the very storm the interval prevents."""
        wanted = self.interval(agents)
        if wanted == self.advertised:
            self._lower_since = None
            return None
        if wanted > 0 and wanted >= self.advertised * (1 + CHANGE):
            self._lower_since = None
            self.advertised = wanted
            return wanted
        if wanted > self.advertised * (1 - CHANGE):
            self._lower_since = None
            return None
        if self._lower_since is None:
            self._lower_since = now
        if now - self._lower_since < MISSED * self.advertised:
            return None
        # Agents told the old interval may be asleep for that long yet.
        self._longest, self._longest_until = self.advertised, now + MISSED * self.advertised
        self._lower_since = None
        self.advertised = wanted
        return wanted

    def timeout(self, base: float, now: float) -> float:
        """Seconds of silence after which an agent is lost: ``base``, or longer for slow heartbeats."""
        longest = self.advertised
        if now < self._longest_until:
            longest = max(longest, self._longest)
        return max(base, MISSED * longest)
