"""Image pulls from real registries on this machine (scripts/infra.sh starts Debian's docker-registry: an
open one, and one behind htpasswd credentials), each test pushing a repository of its own."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import docker
import pytest

from meseta.sdk import wire
from meseta.sdk.wire import StatusReason, TaskState
from meseta.testing.local import TASK_IMAGE, local_cluster
from meseta.testing.processes import free_port
from meseta.testing.watcher import TaskWatcher

pytestmark = pytest.mark.e2e

REGISTRY = f"127.0.0.1:{os.environ.get('MESETA_REGISTRY_PORT', '5005')}"
AUTH_REGISTRY = f"127.0.0.1:{os.environ.get('MESETA_AUTH_REGISTRY_PORT', '5006')}"
USER, PASSWORD = "meseta", "meseta-registry-password"  # scripts/infra.sh's fixture credentials


@contextlib.contextmanager
def pushed(registry: str, auth: dict[str, str] | None = None) -> Iterator[str]:
    """The task image under a repository of this test's in ``registry``, and not on this host."""
    client = docker.from_env()
    repository = f"{registry}/t-{uuid.uuid4().hex[:10]}"
    ref = f"{repository}:v1"
    try:
        client.images.get(TASK_IMAGE).tag(repository, "v1")
        for line in client.images.push(repository, tag="v1", stream=True, decode=True, auth_config=auth):
            assert "error" not in line, line
        client.images.remove(ref)
        yield ref
    finally:
        with contextlib.suppress(docker.errors.ImageNotFound):
            client.images.remove(ref, force=True)
        client.close()


def task(task_id: str, image: str, **container: object) -> wire.TaskInfo:
    spec = wire.ContainerSpec.model_validate({"image": image, "command": ["true"], **container})
    return wire.TaskInfo(task_id=task_id, resources=wire.Resources(cpus=0.1, mem=32), container=spec)


def pulls(cluster: object) -> int:
    return int(cluster.agents[0].containerizer.images.pulls)  # type: ignore[attr-defined]


async def test_a_missing_image_is_pulled_once_for_two_tasks(amqp_url: str, etcd_prefix: str) -> None:
    with pushed(REGISTRY) as image:
        async with local_cluster(amqp_url, etcd_prefix, agents=1) as cluster:
            async with TaskWatcher(await cluster.framework("puller")) as w:
                agent = cluster.agents[0].agent_id
                await w.launch(task("first", image), task("second", image), on=agent)
                for task_id in ("first", "second"):
                    await w.until_state(task_id, TaskState.FINISHED, 60)
                told = [
                    s
                    for t in ("first", "second")
                    for s in w.history[t]
                    if s.reason == StatusReason.IMAGE_PULLING
                ]
                assert told and all(s.state == TaskState.STARTING for s in told)
                assert all(f"pulling image {image}" in s.message for s in told)
                assert pulls(cluster) == 1  # launched together: one pull, shared
                # Present now: if-missing does not pull again; always does.
                await w.launch(task("third", image), on=agent)
                await w.until_state("third", TaskState.FINISHED, 30)
                assert StatusReason.IMAGE_PULLING not in [s.reason for s in w.history["third"]]
                await w.launch(task("fourth", image, pull="always"), on=agent)
                await w.until_state("fourth", TaskState.FINISHED, 30)
                assert pulls(cluster) == 2


async def test_pull_failures_name_the_registry_s_answer(amqp_url: str, etcd_prefix: str) -> None:
    async with local_cluster(amqp_url, etcd_prefix, agents=1) as cluster:
        async with TaskWatcher(await cluster.framework("puller")) as w:
            await w.launch(task("absent", f"{REGISTRY}/never-pushed-{uuid.uuid4().hex[:8]}:v1"))
            failed = await w.until_state("absent", TaskState.ERROR, 30)
            assert failed.reason == StatusReason.IMAGE_PULL_FAILED
            assert f"from {REGISTRY} failed" in failed.message and "manifest unknown" in failed.message

            with pushed(AUTH_REGISTRY, {"username": USER, "password": PASSWORD}) as image:
                await w.launch(task("no-credentials", image))
                failed = await w.until_state("no-credentials", TaskState.ERROR, 30)
                assert failed.reason == StatusReason.IMAGE_PULL_FAILED
                assert "no basic auth credentials" in failed.message, failed.message
                auth = wire.RegistryAuth(username=USER, password=PASSWORD)
                await w.launch(task("with-credentials", image, registry_auth=auth))
                await w.until_state("with-credentials", TaskState.FINISHED, 60)
                assert PASSWORD not in str(w.history["with-credentials"])

            with pushed(REGISTRY) as image:
                await w.launch(task("never", image, pull="never"))
                failed = await w.until_state("never", TaskState.ERROR, 30)
                assert failed.reason == StatusReason.CONTAINER_LAUNCH_FAILED
                assert "not on this agent" in failed.message


async def test_the_agent_s_own_credentials(amqp_url: str, etcd_prefix: str, tmp_path: Path) -> None:
    auth_file = tmp_path / "registries.json"
    auth_file.write_text(json.dumps({AUTH_REGISTRY: {"username": USER, "password": PASSWORD}}))
    with pushed(AUTH_REGISTRY, {"username": USER, "password": PASSWORD}) as image:
        async with local_cluster(amqp_url, etcd_prefix, agents=1, registry_auth_file=auth_file) as cluster:
            async with TaskWatcher(await cluster.framework("puller")) as w:
                await w.launch(task("agent-credentials", image))
                await w.until_state("agent-credentials", TaskState.FINISHED, 60)


@contextlib.asynccontextmanager
async def slow_proxy(target: str, delay: float) -> AsyncIterator[str]:
    """A TCP relay to ``target`` that holds each answer chunk back ``delay`` seconds: a slow registry."""
    host, port = target.split(":")

    async def relay(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, pause: float) -> None:
        with contextlib.suppress(OSError):
            while chunk := await reader.read(65536):
                await asyncio.sleep(pause)
                writer.write(chunk)
                await writer.drain()
        writer.close()

    async def serve(client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        upstream_r, upstream_w = await asyncio.open_connection(host, int(port))
        await asyncio.gather(relay(client_r, upstream_w, 0), relay(upstream_r, client_w, delay))

    listen = free_port()
    server = await asyncio.start_server(serve, "127.0.0.1", listen)
    try:
        yield f"127.0.0.1:{listen}"
    finally:
        server.close()


async def test_a_pull_slower_than_its_timeout_fails_with_why(amqp_url: str, etcd_prefix: str) -> None:
    with pushed(REGISTRY) as image:
        async with slow_proxy(REGISTRY, delay=0.5) as proxy:
            slow_image = image.replace(REGISTRY, proxy)
            async with local_cluster(amqp_url, etcd_prefix, agents=1, pull_timeout=0.3) as cluster:
                async with TaskWatcher(await cluster.framework("puller")) as w:
                    await w.launch(task("slow", slow_image))
                    failed = await w.until_state("slow", TaskState.ERROR, 30)
                    assert failed.reason == StatusReason.IMAGE_PULL_FAILED
                    assert "did not finish within 0.3 s (--pull-timeout)" in failed.message
        # The engine finishes the abandoned pull on its own: leave nothing of it behind.
        client = docker.from_env()
        with contextlib.suppress(docker.errors.ImageNotFound):
            client.images.remove(slow_image, force=True)
        client.close()
