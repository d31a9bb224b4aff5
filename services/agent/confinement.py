"""What a task's container may not do: mount host paths outside the agent's allow-list, gain privileges,
keep Linux capabilities beyond a small set, fork without bound, or fill the disk with logs."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Final

import docker.types

from meseta.sdk.wire import ContainerSpec

CAPABILITIES: Final = ("CHOWN", "DAC_OVERRIDE", "FOWNER", "KILL", "NET_BIND_SERVICE", "SETGID", "SETUID")
"""Every other capability is dropped: what a root process in a container commonly needs to run a
service (own its files, change user, bind a low port, signal its children), nothing that reaches the
host (no SYS_ADMIN, NET_ADMIN, SYS_PTRACE, MKNOD, NET_RAW, ...)."""
LOG_MAX_SIZE: Final = "10m"
LOG_MAX_FILES: Final = "3"


@dataclass(frozen=True)
class Confinement:
    """An agent's limits on its tasks' containers."""

    allowed_mounts: tuple[str, ...] = ()
    pids_limit: int = 4096
    task_user: str | None = None
    """``uid[:gid]`` of every task that names no user of its own (None: the image's user, often root)."""
    switches_users: bool = True
    """Whether the isolator can run a task as another user (Docker can; plain processes cannot)."""

    def user(self, spec: ContainerSpec) -> str | None:
        """Who the task's processes run as: its own user, else the agent's default, else the image's."""
        return spec.user or self.task_user

    def refusal(self, spec: ContainerSpec) -> str | None:
        """Why the container may not run here, or None: a mount outside the allow-list, or a user this
        isolator cannot switch to."""
        if spec.user is not None and not self.switches_users:
            return f"this agent's isolator cannot run a task as user {spec.user} (the docker isolator can)"
        for mount in spec.mounts:
            path = os.path.normpath(mount.host_path)  # "/srv/data/../../etc" is /etc
            if not any(_under(path, rule, mount.read_only) for rule in self.allowed_mounts):
                mode = "read-only" if mount.read_only else "read-write"
                allowed = ", ".join(self.allowed_mounts) or "none"
                return (
                    f"mount of {mount.host_path} ({mode}) is not allowed on this agent "
                    f"(--allow-mount; allowed: {allowed})"
                )
        return None

    def docker_kwargs(self) -> dict[str, Any]:
        """Docker's create arguments for these limits."""
        return {
            "cap_drop": ["ALL"],
            "cap_add": list(CAPABILITIES),
            "security_opt": ["no-new-privileges"],
            "pids_limit": self.pids_limit,
            "log_config": docker.types.LogConfig(
                type="json-file", config={"max-size": LOG_MAX_SIZE, "max-file": LOG_MAX_FILES}
            ),
        }


def _under(path: str, rule: str, read_only: bool) -> bool:
    root, _, mode = rule.partition(":")
    if not read_only and mode != "rw":
        return False
    root = os.path.normpath(root)
    return path == root or path.startswith(root.rstrip("/") + "/")
