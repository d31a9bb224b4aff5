"""Runs tasks as Docker containers with the task's cpu and memory limits.

The Docker SDK is synchronous: every call runs in this containerizer's own thread pool, so a burst of
launches never starves the event loop's default executor.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Final, TypeVar

import docker
import docker.errors
import requests

from meseta.sdk.wire import TaskInfo

log = logging.getLogger(__name__)

T = TypeVar("T")

LABEL_CLUSTER: Final = "meseta.cluster"
LABEL_AGENT: Final = "meseta.agent_id"
LABEL_FRAMEWORK: Final = "meseta.framework_id"
LABEL_TASK: Final = "meseta.task_id"

_WAIT_SLICE = 2  # seconds per blocking wait call, so stopping never hangs on a long task


class ImageMissing(Exception):
    """The task's image is not on this host (no registry is consulted)."""


@dataclass(frozen=True)
class Exit:
    """How a container ended."""

    code: int
    oom_killed: bool


class DockerContainerizer:
    """Docker as the agent's container runtime.

    Args:
        cluster: label value shared by all containers of one cluster (tests clean up with it).
        agent_id: label value naming the agent that owns the container.
        base_url: Docker engine URL; the environment's default when None.
    """

    def __init__(self, cluster: str, agent_id: str, base_url: str | None = None, threads: int = 64) -> None:
        self.cluster = cluster
        self.agent_id = agent_id
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix=f"docker-{agent_id}")
        kwargs: dict[str, Any] = {"max_pool_size": threads}
        self._client = (
            docker.DockerClient(base_url=base_url, **kwargs) if base_url else docker.from_env(**kwargs)
        )

    async def _call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, functools.partial(fn, *args, **kwargs))

    async def ping(self) -> None:
        """Fail early when no engine answers."""
        await self._call(self._client.ping)

    def labels(self, framework_id: str, task_id: str) -> dict[str, str]:
        """The labels that let the agent find a task's container again."""
        return {
            LABEL_CLUSTER: self.cluster,
            LABEL_AGENT: self.agent_id,
            LABEL_FRAMEWORK: framework_id,
            LABEL_TASK: task_id,
        }

    async def create(self, task: TaskInfo, framework_id: str) -> str:
        """Create (not start) the task's container; returns its id."""
        spec = task.container
        try:
            container = await self._call(
                self._client.containers.create,
                spec.image,
                command=list(spec.command) or None,
                environment=dict(spec.env),
                labels=self.labels(framework_id, task.task_id),
                nano_cpus=int(task.resources.cpus * 1e9),
                mem_limit=int(task.resources.mem * 1024 * 1024),
                detach=True,
            )
        except docker.errors.ImageNotFound as exc:
            raise ImageMissing(f"image {spec.image!r} is not on this agent: {exc.explanation}") from None
        return str(container.id)

    async def start(self, container_id: str) -> None:
        """Start a created container."""
        container = await self._call(self._client.containers.get, container_id)
        await self._call(container.start)

    async def wait(self, container_id: str) -> Exit:
        """Wait for the container to exit."""
        container = await self._call(self._client.containers.get, container_id)
        while True:
            try:
                result = await self._call(container.wait, timeout=_WAIT_SLICE)
                break
            except (requests.exceptions.ReadTimeout, requests.exceptions.ConnectionError):
                continue
        container.reload()
        return Exit(
            code=int(result.get("StatusCode", -1)), oom_killed=bool(container.attrs["State"].get("OOMKilled"))
        )

    async def stop(self, container_id: str, grace_seconds: float) -> None:
        """SIGTERM, then SIGKILL after the grace period."""
        try:
            container = await self._call(self._client.containers.get, container_id)
            await self._call(container.stop, timeout=max(0, int(grace_seconds)))
        except docker.errors.NotFound:
            pass

    async def remove(self, container_id: str) -> None:
        """Remove a container (gone already is fine)."""
        try:
            container = await self._call(self._client.containers.get, container_id)
            await self._call(container.remove, force=True)
        except docker.errors.NotFound:
            pass

    def close(self) -> None:
        """Release the thread pool and the engine connection."""
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._client.close()
