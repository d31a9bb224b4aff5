"""The gateway's settings (``meseta gateway``'s flags; the defaults live here)."""

from __future__ import annotations

import socket
from dataclasses import dataclass, field
from pathlib import Path

from meseta.runtime import defaults

DEFAULT_PORT = 5052
"""Beside the master's state API (5050, Mesos's master port): a gateway and a master share a host."""


@dataclass(frozen=True)
class GatewaySettings:
    amqp_url: str
    """The broker; frameworks use it themselves in development mode (no principals file)."""
    etcd_endpoint: str = defaults.ETCD_ENDPOINT
    etcd_prefix: str = defaults.ETCD_PREFIX
    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    advertise: str | None = None
    """This gateway's URL as frameworks reach it (a standby sends them here when this one leads)."""
    advertise_host: str | None = None
    """The hostname SUBSCRIBED's master_info names (default: this host's name)."""
    principals_file: Path | None = None
    credentials_file: Path | None = None
    """The cluster's credentials (``meseta users provision``): where ``amqp_user`` principals log in."""
    dev: bool = False
    name: str = field(default_factory=lambda: f"gateway-{socket.gethostname()}")
    lease_ttl: int = defaults.LEASE_TTL
    default_image: str = defaults.TASK_IMAGE
    """The image of a task that names none (a Mesos command task without a container)."""
    heartbeat_interval: float = 15.0
    """Seconds between HEARTBEAT events on a quiet stream (Mesos's own)."""
    subscribe_timeout: float = 10.0
    """Seconds a SUBSCRIBE waits for a Meseta master before it is answered 503."""
    chunk_bytes: int = 16384
    """The largest HTTP chunk of the event stream: a longer record spans chunks."""
    max_body_bytes: int = 4 * 1024 * 1024
