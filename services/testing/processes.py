"""A local cluster of real service processes: masters, allocators, agents, each a ``meseta`` process.

Used by ``meseta demo``, the fault-tolerance tests (which kill these processes with signals) and the
failover benchmark. Everything it starts it also stops: processes, containers, its vhost, its etcd keys.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import socket
import sys
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Self

import docker

from meseta.agent.containerizer import LABEL_CLUSTER
from meseta.ops.users import Credentials, provision, remove_users
from meseta.runtime import defaults
from meseta.runtime.etcd import EtcdStore
from meseta.runtime.rabbitmq import DEFAULT_MANAGEMENT_URL, Management
from meseta.sdk import wire
from meseta.testing.vhosts import create_scratch_vhost, sweep_abandoned

DEFAULT_AMQP_HOST = "127.0.0.1:5672"
DEFAULT_ETCD = defaults.ETCD_ENDPOINT


@dataclass
class ProcessCluster:
    """Processes of one cluster, by name (``master-0``, ``agent-1``, ...).

    Args:
        log_dir: where each process writes ``<name>.log``.
        env: extra environment for every process (``MESETA_*`` settings).
        principals: framework principals: the cluster then runs with provisioned principals (each
            process as its own broker user, meseta.ops.users; deleted afterwards), not as ``guest``
            in development mode. Frameworks connect with :meth:`framework_url`.
    """

    log_dir: Path
    run_id: str = field(default_factory=lambda: f"run-{uuid.uuid4().hex[:8]}")
    amqp_host: str = DEFAULT_AMQP_HOST
    """``host:port`` of the broker, or of each node of a RabbitMQ cluster, comma-separated."""
    management_url: str = DEFAULT_MANAGEMENT_URL
    etcd_endpoint: str = DEFAULT_ETCD
    env: dict[str, str] = field(default_factory=dict)
    principals: tuple[str, ...] | None = None
    credentials: Credentials | None = None
    procs: dict[str, asyncio.subprocess.Process] = field(default_factory=dict)
    args: dict[str, tuple[str, ...]] = field(default_factory=dict)
    api_ports: dict[int, int] = field(default_factory=dict)
    """Master index -> the port of its state API (free ports, picked at the first start)."""
    restart_on_exit: tuple[str, ...] = ()
    """Name prefixes (``master``, ``allocator``) of processes started again when they exit on their own,
    as compose's restart policy does: a leader that lost its lease exits, and comes back as a standby."""
    _killed: set[str] = field(default_factory=set)
    _watchers: set[asyncio.Task[None]] = field(default_factory=set)
    _log_offsets: dict[str, int] = field(default_factory=dict)
    _stopping: bool = False

    @property
    def vhost(self) -> str:
        return f"meseta-{self.run_id}"

    @property
    def amqp_url(self) -> str:
        """Development mode's URL: one per node, comma-separated, on a RabbitMQ cluster."""
        return ",".join(f"amqp://guest:guest@{host}/{self.vhost}" for host in self.amqp_host.split(","))

    @property
    def users(self) -> wire.Principals:
        """The cluster's principals (user names begin with a prefix made of the run id)."""
        return wire.Principals("".join(c if c.isalnum() else "_" for c in self.run_id))

    def url_of(self, user: str) -> str:
        """The AMQP URL of one of the cluster's users (``guest``'s in development mode)."""
        return self.amqp_url if self.credentials is None else self.credentials.url(user)

    def framework_url(self, principal: str) -> str:
        """What a framework of ``principal`` connects with."""
        return self.url_of(self.users.framework(principal))

    def _management(self) -> Management:
        """The broker's management API (of a node that is up, on a cluster: ``management_url`` moves)."""
        return Management(self.management_url)

    def _provision(self, agents: tuple[str, ...] = ()) -> None:
        assert self.principals is not None
        known = self.credentials.passwords if self.credentials is not None else {}
        self.credentials = provision(
            self._management(),
            self.vhost,
            self.users,
            agents=agents,
            frameworks=self.principals,
            host=self.amqp_host,
            known=known,
        )

    def _login(self, user: str, *also: tuple[str, str]) -> tuple[str, ...]:
        """The flags that make a process log in as ``user`` (none in development mode)."""
        if self.credentials is None:
            return ()
        return (f"--amqp-url={self.url_of(user)}", *(f"--{flag}={self.url_of(u)}" for flag, u in also))

    @property
    def etcd_prefix(self) -> str:
        return f"/meseta-{self.run_id}"

    @property
    def work_dir(self) -> Path:
        return self.log_dir / "agents"

    def _env(self) -> dict[str, str]:
        return {
            **os.environ,
            "MESETA_AMQP_URL": self.amqp_url,
            "MESETA_ETCD_ENDPOINT": self.etcd_endpoint,
            "MESETA_ETCD_PREFIX": self.etcd_prefix,
            "MESETA_CLUSTER": self.run_id,
            "MESETA_WORK_DIR": str(self.work_dir),
            # Without principals: as guest on a vhost of its own, a development cluster.
            **({"MESETA_DEV": "1"} if self.principals is None else {}),
            **self.env,
        }

    async def __aenter__(self) -> Self:
        await asyncio.to_thread(self.log_dir.mkdir, parents=True, exist_ok=True)
        # What a killed run left (its maker gone) first: a vhost of 50,000 agents' queues slows the broker.
        await asyncio.to_thread(sweep_abandoned, self._management())
        await asyncio.to_thread(create_scratch_vhost, self._management(), self.vhost)
        if self.principals is not None:
            await asyncio.to_thread(self._provision)
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop_all()
        await asyncio.to_thread(remove_containers, self.run_id)
        await asyncio.to_thread(self._management().delete_vhost, self.vhost)
        if self.credentials is not None:
            await asyncio.to_thread(remove_users, self._management(), self.credentials.passwords)
        store = EtcdStore(self.etcd_endpoint, self.etcd_prefix)
        with contextlib.suppress(Exception):
            await store.connect()
            await store.delete_prefix()
        await store.close()
        await asyncio.to_thread(shutil.rmtree, self.work_dir, True)

    async def start(self, name: str, *args: str) -> asyncio.subprocess.Process:
        """Start ``meseta ARGS...`` as process ``name`` (again, after a kill, with the same arguments)."""
        self.args[name] = args
        self._killed.discard(name)
        log = (self.log_dir / f"{name}.log").open("ab")
        self._log_offsets[name] = log.tell()
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "meseta.cli",
            *args,
            env=self._env(),
            stdout=log,
            stderr=asyncio.subprocess.STDOUT,
        )
        log.close()  # the child has its own descriptor
        self.procs[name] = proc
        if self.restart_on_exit and name.startswith(self.restart_on_exit):
            watcher = asyncio.create_task(self._restart_when_exited(name, proc))
            self._watchers.add(watcher)
            watcher.add_done_callback(self._watchers.discard)
        return proc

    async def _restart_when_exited(self, name: str, proc: asyncio.subprocess.Process) -> None:
        await proc.wait()
        if not self._stopping and name not in self._killed and self.procs.get(name) is proc:
            await self.start(name, *self.args[name])

    async def master(self, index: int, *extra: str) -> asyncio.subprocess.Process:
        port = self.api_ports.setdefault(index, free_port())
        login = self._login(self.users.master)
        return await self.start(
            f"master-{index}", "master", f"--name=master-{index}", f"--api-port={port}", *login, *extra
        )

    @property
    def apis(self) -> list[str]:
        """The masters' state API URLs."""
        return [f"http://127.0.0.1:{port}" for port in self.api_ports.values()]

    async def allocator(self, index: int, *extra: str) -> asyncio.subprocess.Process:
        login = self._login(self.users.allocator)
        return await self.start(
            f"allocator-{index}", "allocator", f"--name=allocator-{index}", *login, *extra
        )

    async def agent(self, index: int, hostname: str, *extra: str) -> asyncio.subprocess.Process:
        agent_id = f"{self.run_id}-agent-{index}"
        known = self.credentials.passwords if self.credentials is not None else {}
        if self.principals is not None and self.users.agent(agent_id) not in known:
            await asyncio.to_thread(self._provision, (agent_id,))
        login = self._login(self.users.agent(agent_id), ("executor-amqp-url", self.users.executors(agent_id)))
        return await self.start(
            f"agent-{index}", "agent", f"--agent-id={agent_id}", f"--hostname={hostname}", *login, *extra
        )

    def agent_id(self, index: int) -> str:
        return f"{self.run_id}-agent-{index}"

    async def restart(self, name: str) -> asyncio.subprocess.Process:
        """Start a process again with the arguments it had."""
        return await self.start(name, *self.args[name])

    async def kill(self, name: str, sig: int = signal.SIGKILL) -> int:
        """Send a signal and wait for the process to end; returns its exit status."""
        proc = self.procs[name]
        self._killed.add(name)
        if proc.returncode is None:
            proc.send_signal(sig)
        return await proc.wait()

    def log(self, name: str, current: bool = False) -> str:
        """The process's log; with ``current``, only what its latest start wrote."""
        with (self.log_dir / f"{name}.log").open("rb") as f:
            f.seek(self._log_offsets.get(name, 0) if current else 0)
            return f.read().decode(errors="replace")

    async def stop_all(self) -> None:
        self._stopping = True
        for watcher in self._watchers:
            watcher.cancel()
        for proc in self.procs.values():
            if proc.returncode is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs.values():
            try:
                await asyncio.wait_for(proc.wait(), 10)
            except TimeoutError:
                proc.kill()
                await proc.wait()


# Ports for tests' listeners and tasks' published ports come from below the kernel's ephemeral range
# (32768 and up): a port picked there could be taken, before its user binds it, as the local port of
# any outgoing connection on this host. Each pytest worker has a block of its own and walks it in turn,
# so parallel tests never pick one port and a port just released (a container's proxy may still hold
# it) is not picked again soon.
_PORTS_LOW, _PORTS_BLOCK, _PORTS_BLOCKS = 10_000, 1_000, 22
_next_port: int | None = None


def free_port() -> int:
    """A TCP port free on every address of this host now, apart from other tests' ports."""
    global _next_port
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    block = int(worker[2:]) % (_PORTS_BLOCKS - 1) if worker[2:].isdigit() else _PORTS_BLOCKS - 1
    low = _PORTS_LOW + block * _PORTS_BLOCK
    if _next_port is None:
        _next_port = os.getpid() % _PORTS_BLOCK  # two runs of one block at once start apart
    for _ in range(_PORTS_BLOCK):
        port = low + _next_port
        _next_port = (_next_port + 1) % _PORTS_BLOCK
        with socket.socket() as s:
            try:
                s.bind(("0.0.0.0", port))
            except OSError:
                continue  # in use here (or by a run outside this scheme)
            return port
    raise RuntimeError(f"no free port in {low}..{low + _PORTS_BLOCK - 1}")


def quick_failures(unreachable_timeout: float) -> dict[str, str]:
    """A ProcessCluster's settings under which a stopped agent is noticed within seconds (heartbeats
    every 0.5 s, lost after 2 s), partition-aware tasks are GONE after ``unreachable_timeout``, and kills
    wait 1 s: for the partition and service tests."""
    return {
        "MESETA_HEARTBEAT_INTERVAL": "0.5",
        "MESETA_AGENT_TIMEOUT": "2",
        "MESETA_UNREACHABLE_TIMEOUT": f"{unreachable_timeout:g}",
        "MESETA_LEASE_TTL": "2",
        "MESETA_KILL_GRACE": "1",
    }


def remove_containers(run_id: str) -> None:
    client = docker.from_env()
    for container in client.containers.list(all=True, filters={"label": f"{LABEL_CLUSTER}={run_id}"}):
        container.remove(force=True)
    client.close()
