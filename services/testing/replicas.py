"""An etcd cluster of three members on this machine, for the replicated control plane's tests: Debian's own
``etcd`` binary, each member a process of its own on ports of its own, its data in a directory of its own.
Members can be killed (SIGKILL)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

from meseta.testing.processes import free_port


@dataclass
class EtcdMember:
    name: str
    client_port: int
    peer_port: int
    data: Path
    proc: asyncio.subprocess.Process | None = None

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.client_port}"


@dataclass
class EtcdCluster:
    """Three etcd members; ``endpoints`` names them all, comma-separated."""

    root: Path
    size: int = 3
    members: list[EtcdMember] = field(default_factory=list)

    @property
    def endpoints(self) -> str:
        return ",".join(m.endpoint for m in self.members)

    def _initial(self) -> str:
        return ",".join(f"{m.name}=http://127.0.0.1:{m.peer_port}" for m in self.members)

    async def _launch(self, member: EtcdMember, state: str) -> None:
        log = (self.root / f"{member.name}.log").open("ab")
        member.proc = await asyncio.create_subprocess_exec(
            "etcd", "--name", member.name, "--data-dir", str(member.data),
            "--listen-client-urls", f"http://{member.endpoint}",
            "--advertise-client-urls", f"http://{member.endpoint}",
            "--listen-peer-urls", f"http://127.0.0.1:{member.peer_port}",
            "--initial-advertise-peer-urls", f"http://127.0.0.1:{member.peer_port}",
            "--initial-cluster", self._initial(), "--initial-cluster-state", state,
            "--initial-cluster-token", self.root.name,
            "--heartbeat-interval", "50", "--election-timeout", "500",
            stdout=log, stderr=log,
        )  # fmt: skip
        log.close()

    async def start(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        for i in range(self.size):
            self.members.append(EtcdMember(f"m{i}", free_port(), free_port(), self.root / f"m{i}"))
        for member in self.members:
            await self._launch(member, "new")

    def kill(self, member: EtcdMember) -> None:
        if member.proc is not None and member.proc.returncode is None:
            member.proc.kill()

    async def stop(self) -> None:
        for member in self.members:
            self.kill(member)
            if member.proc is not None:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(member.proc.wait(), 10)


@asynccontextmanager
async def etcd_cluster(root: Path, size: int = 3) -> AsyncIterator[EtcdCluster]:
    """A cluster of ``size`` etcd members, stopped afterwards (its data under ``root``)."""
    cluster = EtcdCluster(root, size)
    try:
        await cluster.start()
        yield cluster
    finally:
        await cluster.stop()
