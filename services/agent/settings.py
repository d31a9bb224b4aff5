"""How an agent runs: its settings and their defaults (the CLI reads them from here)."""

from __future__ import annotations

import socket
from dataclasses import dataclass, field
from pathlib import Path

from meseta.sdk.wire import Resources

DEFAULT_HEARTBEAT_INTERVAL = 1.0
DEFAULT_KILL_GRACE = 3.0
DEFAULT_STATUS_RETRY = 10.0
"""Seconds before an unacknowledged update is sent again, doubling each time (Mesos's agent starts at 10 s
too). At 2 s, a burst of 5,000 launches, whose acknowledgements lag seconds behind, resent most updates
and fed the backlog that delayed them."""
DEFAULT_RETENTION = 600.0
DEFAULT_WORK_DIR = Path("/var/tmp/meseta-agent")
DEFAULT_PIDS_LIMIT = 4096
DEFAULT_MAX_UNACKNOWLEDGED = 10_000
"""Unacknowledged updates per framework an agent keeps before it refuses that framework's launches."""


def default_agent_id() -> str:
    """``agent-<hostname>``, trimmed to the id alphabet."""
    host = "".join(c if c.isalnum() or c in "._-" else "-" for c in socket.gethostname())
    return f"agent-{host}"[:128]


@dataclass(frozen=True)
class AgentSettings:
    """How an agent runs."""

    amqp_url: str
    resources: Resources
    agent_id: str = field(default_factory=default_agent_id)
    hostname: str = field(default_factory=socket.gethostname)
    attributes: dict[str, str] = field(default_factory=dict)
    heartbeat_interval: float = DEFAULT_HEARTBEAT_INTERVAL
    metrics_host: str = "127.0.0.1"
    metrics_port: int | None = None
    """Port of /metrics, /health and /ready; 0 picks a free one, None serves none."""
    cluster: str = "meseta"
    """Label on every container this agent starts; one cluster's containers are found by it."""
    container_retention: float = DEFAULT_RETENTION
    """Seconds an exited task's container (and its logs) is kept before it is removed."""
    gc_interval: float = 5.0
    kill_grace_seconds: float = DEFAULT_KILL_GRACE
    pull_timeout: float = 600.0
    """Seconds an image pull may take (apart from the task's start): past it the task is an ERROR."""
    registry_auth_file: Path | None = None
    """JSON: registry host -> {"username", "password"}, for pulls whose task gives no credentials."""
    """SIGTERM-to-SIGKILL time for tasks that do not set their own."""
    isolator: str = "docker"
    """``docker`` (default) or ``process`` (subprocesses with cgroup/rlimit limits, no Docker needed)."""
    work_dir: Path = DEFAULT_WORK_DIR
    """Checkpoints go to ``work_dir/agent_id``: agents with different ids may share one."""
    docker_url: str | None = None
    status_retry_interval: float = DEFAULT_STATUS_RETRY
    """Seconds before an unacknowledged status update is first resent (doubling after each resend)."""
    gpu_ids: tuple[str, ...] | None = None
    """GPU device ids to offer; None: discover them through NVML (none when there is no NVIDIA driver)."""
    allowed_mounts: tuple[str, ...] = ()
    """Host paths a task may bind-mount (the path or anything under it), read-only; ``PATH:rw`` also
    read-write. None by default: a task that mounts ``/`` or the Docker socket is root on the host."""
    dev: bool = False
    """Development mode: the broker's ``guest`` account is accepted and senders are not checked.
    Otherwise the agent logs in as ``<prefix>.agent.<agent id>`` and takes commands from the master's
    principal only, and its executors' messages from ``<prefix>.executors.<agent id>`` only."""
    executor_amqp_url: str | None = None
    """The URL custom executors are given (the ``<prefix>.executors.<agent id>`` user), never the
    agent's own; outside development mode custom executors need it."""
    fsync_checkpoints: bool = True
    """Whether checkpoint writes reach the disk before the agent goes on (off only for emulated agents,
    which have nothing to lose and would spend the benchmark's time in fsync)."""
    executor_network: str = "host"
    """``host`` (executors share the host's network, as the agent reaches the broker) or ``bridge`` (a
    network of their own: ``executor_amqp_url`` must then reach the broker from inside a container)."""
    max_unacknowledged: int = DEFAULT_MAX_UNACKNOWLEDGED
    """Status updates a framework may leave unacknowledged here before its launches are refused."""
    task_user: str | None = None
    """Numeric ``uid[:gid]`` tasks run as when they name no user (None: the image's user)."""
    pids_limit: int = DEFAULT_PIDS_LIMIT
    """Processes a task's container may have at once (a fork bomb stops there)."""
