"""Runs tasks as Docker containers with the task's limits, ports and GPUs.

The Docker SDK is synchronous: every call runs in this containerizer's own thread pool, so a burst of
launches never starves the event loop's default executor.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final, Protocol, TypeVar

import docker
import docker.errors
import docker.types
import requests
from docker.models.containers import _create_container_args

from meseta.agent.confinement import Confinement
from meseta.agent.images import ImagePuller, Progress
from meseta.agent.kmsg import follow_kernel_log, oom_killed_in_kernel_log
from meseta.sdk.wire import ContainerSpec, RegistryAuth, TaskInfo

log = logging.getLogger(__name__)

T = TypeVar("T")

LABEL_CLUSTER: Final = "meseta.cluster"
LABEL_AGENT: Final = "meseta.agent_id"
LABEL_FRAMEWORK: Final = "meseta.framework_id"
LABEL_TASK: Final = "meseta.task_id"

_WAIT_SLICE = 2  # seconds per blocking wait call, so stopping never hangs on a long task
_EXEC_POLL = 0.05  # seconds between looks at an exec the engine still reports running
_CPU_SHARES_PER_CPU = 1024
_CFS_PERIOD_US = 100_000
"""The CFS period the cpu quota is a share of (the kernel's default, as Mesos uses)."""
_CFS_MIN_QUOTA_US = 1_000
"""The smallest quota the kernel (and Docker) accept."""
_SIGKILLED = 128 + 9


class ImageMissing(Exception):
    """The task's image is not on this host (and its pull policy is ``never``)."""


@dataclass(frozen=True)
class Exit:
    """How a container ended."""

    code: int
    oom_killed: bool


@dataclass(frozen=True)
class Launch:
    """Everything a containerizer needs to start one task."""

    task: TaskInfo
    framework_id: str
    gpu_ids: tuple[str, ...] = ()
    extra_env: tuple[tuple[str, str], ...] = ()
    host_network: bool = False


class Containerizer(Protocol):
    """What the agent needs from a container runtime (Docker, or plain processes)."""

    async def ping(self) -> None: ...
    async def pull(self, spec: ContainerSpec, progress: Progress) -> None: ...
    async def create(self, launch: Launch) -> str: ...
    async def start(self, container_id: str) -> None: ...
    async def wait(self, container_id: str) -> Exit: ...
    async def stop(self, container_id: str, grace_seconds: float, stop_signal: str = "SIGTERM") -> None: ...
    async def logs(self, container_id: str, tail_bytes: int) -> tuple[str, str]: ...
    async def exec(self, container_id: str, argv: tuple[str, ...]) -> int: ...
    async def address(self, container_id: str) -> str: ...
    async def find(self, framework_id: str, task_id: str) -> str | None: ...
    async def remove(self, container_id: str) -> None: ...
    async def collect_garbage(self, retention_seconds: float) -> int: ...
    def close(self) -> None: ...


def task_env(launch: Launch) -> dict[str, str]:
    """The environment a task sees: its own, plus where its ports and GPUs are."""
    env = dict(launch.task.container.env)
    ports = [p for r in launch.task.resources.ports for p in range(r.begin, r.end + 1)]
    for i, port in enumerate(ports):
        env[f"PORT{i}"] = str(port)
    if ports:
        env["PORTS"] = ",".join(map(str, ports))
    if launch.gpu_ids:
        env["MESETA_GPU_IDS"] = ",".join(launch.gpu_ids)
    env.update(dict(launch.extra_env))
    return env


def cpu_limits(cpus: float) -> dict[str, int]:
    """Docker's create arguments that hold a task to ``cpus``: a hard CFS quota and weighted shares."""
    return {
        "cpu_period": _CFS_PERIOD_US,
        "cpu_quota": max(_CFS_MIN_QUOTA_US, round(cpus * _CFS_PERIOD_US)),
        "cpu_shares": max(2, int(cpus * _CPU_SHARES_PER_CPU)),
    }


class DockerContainerizer:
    """Docker as the agent's container runtime.

    Args:
        cluster: label value shared by all containers of one cluster (tests clean up with it).
        agent_id: label value naming the agent that owns the container.
        base_url: Docker engine URL; the environment's default when None.
    """

    def __init__(
        self,
        cluster: str,
        agent_id: str,
        base_url: str | None = None,
        threads: int = 64,
        confinement: Confinement | None = None,
        pull_timeout: float = 600.0,
        registry_auth: dict[str, RegistryAuth] | None = None,
    ) -> None:
        self.cluster = cluster
        self.agent_id = agent_id
        self.confinement = confinement or Confinement()
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix=f"docker-{agent_id}")
        kwargs: dict[str, Any] = {"max_pool_size": threads}
        self._client = (
            docker.DockerClient(base_url=base_url, **kwargs) if base_url else docker.from_env(**kwargs)
        )
        self.images = ImagePuller(self._client, self._call, pull_timeout, registry_auth or {})
        self._finished_at: dict[str, float] = {}
        """When each exited container of this agent's ended (epoch seconds), as seen by :meth:`wait` or
        asked of the engine once: the retention sweep needs it for every kept container, every sweep."""
        follow_kernel_log()  # from now on, so no OOM record of this agent's tasks is overwritten unread

    async def _call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, functools.partial(fn, *args, **kwargs))

    async def ping(self) -> None:
        """Fail early when no engine answers."""
        await self._call(self._client.ping)

    async def pull(self, spec: ContainerSpec, progress: Progress) -> None:
        """Pull the task's image (meseta.agent.images); PullFailed when it cannot be."""
        await self.images.pull(spec, progress)

    def labels(self, framework_id: str, task_id: str) -> dict[str, str]:
        """The labels that let the agent find a task's container again."""
        return {
            LABEL_CLUSTER: self.cluster,
            LABEL_AGENT: self.agent_id,
            LABEL_FRAMEWORK: framework_id,
            LABEL_TASK: task_id,
        }

    async def create(self, launch: Launch) -> str:
        """Create (not start) the task's container; returns its id."""
        task, spec = launch.task, launch.task.container
        ports = [p for r in task.resources.ports for p in range(r.begin, r.end + 1)]
        mem_bytes = int(task.resources.mem * 1024 * 1024)
        kwargs: dict[str, Any] = {
            "command": list(spec.argv()) or None,
            "environment": task_env(launch),
            "working_dir": spec.working_dir,
            "labels": self.labels(launch.framework_id, task.task_id),
            # A CFS quota, not nano_cpus: Docker refuses nano_cpus above the host's cpu count, and an
            # agent may declare more cpus than its host has (Mesos agents routinely do). The kernel
            # takes any quota; one above the host's cpus simply never throttles.
            **cpu_limits(task.resources.cpus),
            "mem_limit": mem_bytes,
            "memswap_limit": mem_bytes,  # no swap: a task over its memory is OOM-killed, not slowed
            "detach": True,
            **self.confinement.docker_kwargs(),
        }
        if (user := self.confinement.user(spec)) is not None:
            kwargs["user"] = user
        if spec.mounts:
            kwargs["volumes"] = {
                m.host_path: {"bind": m.container_path, "mode": "ro" if m.read_only else "rw"}
                for m in spec.mounts
            }
        if launch.host_network:
            kwargs["network_mode"] = "host"
        elif ports:
            # The same number inside and out: the task reads PORTn and binds it.
            kwargs["ports"] = {f"{p}/tcp": p for p in ports}
        if launch.gpu_ids:
            kwargs["device_requests"] = [
                docker.types.DeviceRequest(device_ids=list(launch.gpu_ids), capabilities=[["gpu"]])
            ]
        # docker-py's own translation of these arguments, then the engine's create alone: the model's
        # create() inspects the new container as well, one engine call a task the agent does not need.
        kwargs.update(image=spec.image, version=self._client.api._version)
        try:
            created = await self._call(self._client.api.create_container, **_create_container_args(kwargs))
        except docker.errors.ImageNotFound as exc:
            raise ImageMissing(
                f"image {spec.image!r} is not on this agent (pull: {spec.pull}): {exc.explanation}"
            ) from None
        return str(created["Id"])

    async def start(self, container_id: str) -> None:
        """Start a created container (by id: no inspection first)."""
        await self._call(self._client.api.start, container_id)

    async def wait(self, container_id: str) -> Exit:
        """Wait for the container to exit."""
        while True:
            try:
                result = await self._call(self._client.api.wait, container_id, timeout=_WAIT_SLICE)
                break
            except (requests.exceptions.ReadTimeout, requests.exceptions.ConnectionError):
                continue
        state = (await self._call(self._client.api.inspect_container, container_id))["State"]
        if (finished := _parse_time(state.get("FinishedAt", ""))) is not None:
            self._finished_at[container_id] = finished
        code = int(result.get("StatusCode", -1))
        oom_killed = bool(state.get("OOMKilled"))
        if code == _SIGKILLED and not oom_killed:
            # Docker misses OOM kills that come before containerd watches the cgroup; the kernel does not.
            oom_killed = await asyncio.to_thread(oom_killed_in_kernel_log, container_id)
        return Exit(code=code, oom_killed=oom_killed)

    async def stop(self, container_id: str, grace_seconds: float, stop_signal: str = "SIGTERM") -> None:
        """``stop_signal``, then SIGKILL if the container still runs after the grace period.

        Not Docker's stop: its grace is whole seconds and its signal the image's, and the call holds one of
        the pool's threads for the whole grace; here the waiting is done in slices.
        """
        try:
            container = await self._call(self._client.containers.get, container_id)
            try:
                await self._call(container.kill, signal=stop_signal)
            except docker.errors.APIError as exc:
                if exc.status_code == 409:  # not running (any more)
                    return
                raise
            deadline = time.monotonic() + grace_seconds
            while (left := deadline - time.monotonic()) > 0:
                try:
                    await self._call(container.wait, timeout=min(left, _WAIT_SLICE))
                    return
                except (requests.exceptions.ReadTimeout, requests.exceptions.ConnectionError):
                    continue
            with contextlib.suppress(docker.errors.APIError):  # it may just have ended
                await self._call(container.kill, signal="SIGKILL")
        except docker.errors.NotFound:
            pass

    async def exec(self, container_id: str, argv: tuple[str, ...]) -> int:
        """Run ``argv`` inside the running container (a command health check); its exit code, once the
        engine has one: the start call can return while the engine still reports the exec running with
        no exit code (under load; docker-py's exec_run then gives None, which counted as a failed check
        and killed healthy tasks). The caller bounds the wait (the check's timeout)."""
        api = self._client.api
        created = await self._call(api.exec_create, container_id, list(argv), stdout=False, stderr=False)
        await self._call(api.exec_start, created["Id"])
        while True:
            state = await self._call(api.exec_inspect, created["Id"])
            if not state.get("Running") and state.get("ExitCode") is not None:
                return int(state["ExitCode"])
            await asyncio.sleep(_EXEC_POLL)

    async def address(self, container_id: str) -> str:
        """Where the agent reaches the task's ports: its container's address on its network (the task
        binds PORTn inside), or the loopback for a container on the host's network."""
        container = await self._call(self._client.containers.get, container_id)
        if container.attrs.get("HostConfig", {}).get("NetworkMode") == "host":
            return "127.0.0.1"
        settings = container.attrs.get("NetworkSettings", {})
        found = settings.get("IPAddress") or next(
            (n["IPAddress"] for n in (settings.get("Networks") or {}).values() if n.get("IPAddress")), ""
        )
        return str(found) or "127.0.0.1"

    async def logs(self, container_id: str, tail_bytes: int) -> tuple[str, str]:
        """The last ``tail_bytes`` of the container's stdout and stderr."""
        container = await self._call(self._client.containers.get, container_id)
        out = await self._call(container.logs, stdout=True, stderr=False)
        err = await self._call(container.logs, stdout=False, stderr=True)
        return _tail(out, tail_bytes), _tail(err, tail_bytes)

    async def find(self, framework_id: str, task_id: str) -> str | None:
        """The container of a task, running or exited, if it is still kept."""
        labels = [f"{k}={v}" for k, v in self.labels(framework_id, task_id).items()]
        found = await self._call(self._client.containers.list, all=True, filters={"label": labels})
        return str(found[0].id) if found else None

    async def remove(self, container_id: str) -> None:
        """Remove a container (gone already is fine)."""
        with contextlib.suppress(docker.errors.NotFound):
            await self._call(self._client.api.remove_container, container_id, force=True)
        self._finished_at.pop(container_id, None)

    async def collect_garbage(self, retention_seconds: float) -> int:
        """Remove this agent's exited containers older than the retention; returns how many.

        One listing a sweep, and an inspection only of a container whose end this agent did not see (one
        that ended before a restart), once: docker-py's models list inspected every kept container on
        every sweep, hundreds of engine calls every few seconds on a busy agent."""
        filters = {
            "label": [f"{LABEL_CLUSTER}={self.cluster}", f"{LABEL_AGENT}={self.agent_id}"],
            "status": "exited",
        }
        listed = await self._call(self._client.api.containers, all=True, filters=filters)
        exited = {str(summary["Id"]) for summary in listed}
        # Forget containers removed by anyone else; one that exited after the listing is asked again.
        self._finished_at = {cid: at for cid, at in self._finished_at.items() if cid in exited}
        removed = 0
        for container_id in sorted(exited):
            finished = self._finished_at.get(container_id)
            if finished is None:
                try:
                    state = (await self._call(self._client.api.inspect_container, container_id))["State"]
                except docker.errors.NotFound:
                    continue
                finished = _parse_time(state.get("FinishedAt", ""))
                if finished is None:
                    continue
                self._finished_at[container_id] = finished
            if time.time() - finished >= retention_seconds:
                await self.remove(container_id)
                removed += 1
        return removed

    def close(self) -> None:
        """Release the thread pool and the engine connection."""
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._client.close()


def _tail(data: bytes, limit: int) -> str:
    return data[-limit:].decode(errors="replace")


def _parse_time(stamp: str) -> float | None:
    """Docker's RFC 3339 time with nanoseconds, as epoch seconds."""
    if not stamp or stamp.startswith("0001-"):
        return None
    base, _, frac = stamp.rstrip("Z").partition(".")
    seconds = datetime.fromisoformat(base + "+00:00").timestamp()
    return seconds + (float(f"0.{frac[:6]}") if frac else 0.0)
