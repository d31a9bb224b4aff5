"""How the master runs: its settings and their defaults (the CLI reads them from here)."""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass, field
from pathlib import Path

from meseta.master.pacing import DEFAULT_HEARTBEAT_RATE
from meseta.runtime import defaults

DEFAULT_OFFER_TIMEOUT = 30.0
DEFAULT_STARVATION_AFTER = 30.0
"""Seconds a framework may want offers and get none before it counts as starving."""
DEFAULT_API_PORT = 5050
"""The state API's port for ``meseta master`` (a master built in code serves none unless told)."""


SYNC_SECONDS_PER_AGENT = 0.0025
"""The periodic view's interval is at least this per agent. A view costs the allocator about 23 us an agent
(decoding 17, taking it 6) and the master 4, so this keeps it under 1 % of either. At 50,000 agents a
view every 30 s held the allocator 1.2 s each time (measured in-process), offering nothing meanwhile;
with this, every 125 s."""


@dataclass(frozen=True)
class MasterSettings:
    """How the master runs."""

    amqp_url: str
    etcd_endpoint: str = defaults.ETCD_ENDPOINT
    etcd_prefix: str = defaults.ETCD_PREFIX
    offer_timeout: float = DEFAULT_OFFER_TIMEOUT
    """Seconds an offer stays valid before it is rescinded."""
    sweep_interval: float = 0.5
    """Seconds between checks for expired offers and due revocations."""
    revocation_grace: float = 5.0
    """Seconds a framework has between a revocation notice and the kill."""
    name: str = field(default_factory=lambda: f"master-{socket.gethostname()}-{os.getpid()}")
    lease_ttl: int = defaults.LEASE_TTL
    """Seconds of the leader lease: a dead leader's standby takes over within about this long."""
    agent_timeout: float = 5.0
    """Seconds without a heartbeat after which an agent and its tasks are lost (longer where agents
    were told to beat slowly: see ``heartbeat_rate``)."""
    heartbeat_rate: float = DEFAULT_HEARTBEAT_RATE
    """Agent heartbeats per second this master holds at most, by telling agents to beat every
    agents / rate seconds or slower (meseta.master.pacing); 0: agents keep their own interval."""
    framework_timeout: float = 10.0
    """Seconds without a framework heartbeat (or call) before it counts as disconnected."""
    starvation_after: float = DEFAULT_STARVATION_AFTER
    health_interval: float = 5.0
    api_host: str = "127.0.0.1"
    api_port: int | None = None
    """Port of the state API and web page; 0 picks a free one, None serves none."""
    api_advertise: str | None = None
    """This master's API URL as operators reach it (a standby redirects them to the leader's); by
    default ``http://<api_host, or the host name where it listens on all>:<port>``."""
    operator_token: str | None = None
    """The operator credential (``Authorization: Bearer``) the write endpoints need; None: they refuse
    every call (403)."""
    launch_timeout: float = 30.0
    """Seconds after which a task still STAGING, that its agent's heartbeats do not list, is LOST (its
    launch never arrived: the agent's queue was lost with a broker node, say)."""
    unreachable_timeout: float = 300.0
    """Seconds a lost agent's partition-aware tasks stay UNREACHABLE: back within it, they are RUNNING
    again; past it, GONE (and killed if the agent returns)."""
    state_sync_interval: float = 30.0
    """Seconds between the master's whole view sent to the allocator (STATE_SYNC), so capacity an event
    lost in a broker fault held never stays leaked; longer on a large cluster (:meth:`sync_interval`)."""
    queue_type: str | None = None
    """``quorum`` or ``classic`` for the queues whose loss loses work; None: ``MESETA_QUEUE_TYPE``, else
    quorum with several brokers' URLs and classic with one (meseta.sdk.bus.default_queue_type)."""
    dev: bool = False
    """Development mode: the broker's ``guest`` account is accepted and no sender is checked (no tenant
    boundaries). Otherwise the master must log in as ``<prefix>.master`` and checks every sender."""
    acl_file: Path | None = None
    """JSON of the roles, weights and priorities each framework principal may subscribe with
    (meseta.master.authority.Acl); without it every principal gets the defaults."""
    sample_interval: float = 1.0
    """Seconds between samples of the frameworks' shares (the page's share-over-time chart)."""

    def sync_interval(self, agents: int) -> float:
        """Seconds between periodic views for a cluster of ``agents``: ``state_sync_interval``, or
        :data:`SYNC_SECONDS_PER_AGENT` each where that is longer (past 12,000 agents at 30 s)."""
        return max(self.state_sync_interval, agents * SYNC_SECONDS_PER_AGENT)
