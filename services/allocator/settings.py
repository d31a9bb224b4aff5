"""How the allocator runs: its settings and their defaults (the CLI reads them from here)."""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass, field

from meseta.runtime import defaults
from meseta.sdk.wire import Resources


@dataclass(frozen=True)
class AllocatorSettings:
    """How the allocator runs."""

    amqp_url: str
    policy: str = "drf"
    """The policy until etcd names another."""
    etcd_endpoint: str | None = None
    """Where run-time configuration (policy, roles, quotas) is read and the allocator is elected. None:
    the settings only, and no election, so no epoch: a master refuses such an allocator's messages."""
    etcd_prefix: str = defaults.ETCD_PREFIX
    batch_window: float = 0.005
    """Seconds to gather events before a cycle."""
    tick_interval: float = 0.5
    """Seconds between periodic cycles (and configuration reads)."""
    min_offer: Resources | None = None
    """Global minimum offer size: smaller slices wait until they grow."""
    max_grants_per_cycle: int = 1024
    """Bounds one cycle's work; the next cycle, at once, continues."""
    name: str = field(default_factory=lambda: f"allocator-{socket.gethostname()}-{os.getpid()}")
    lease_ttl: int = defaults.LEASE_TTL
    queue_type: str | None = None
    """As the master's (meseta.master.settings.MasterSettings.queue_type)."""
    dev: bool = False
    """Development mode: the broker's ``guest`` account is accepted and senders are not checked.
    Otherwise the allocator logs in as ``<prefix>.allocator`` and takes events from the master only."""
    metrics_host: str = "127.0.0.1"
    metrics_port: int | None = None
    """Port of /metrics, /health and /ready; 0 picks a free one, None serves none."""
    revocation_hold: float = 15.0
    """Seconds a revocation in flight is counted before the allocator may ask again."""
