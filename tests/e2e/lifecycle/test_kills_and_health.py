"""Graceful kills and health checks on real Docker containers (busybox's httpd as the service)."""

from __future__ import annotations

import time

import pytest

from meseta.sdk import wire
from meseta.sdk.wire import HealthCheck, StatusReason, TaskState
from meseta.testing.local import TASK_IMAGE, local_cluster
from meseta.testing.processes import free_port
from meseta.testing.watcher import TaskWatcher

pytestmark = pytest.mark.e2e


def task(task_id: str, script: str, port: int | None = None, **kwargs: object) -> wire.TaskInfo:
    ports = (wire.PortRange(begin=port, end=port),) if port else ()
    return wire.TaskInfo.model_validate(
        {
            "task_id": task_id,
            "resources": wire.Resources(cpus=0.2, mem=32, ports=ports),
            "container": wire.ContainerSpec.shell(TASK_IMAGE, script),
            **kwargs,
        }
    )


def agent_with_ports(ports: list[int]) -> wire.Resources:
    # Ports of the test's own (free now): parallel tests' containers publish theirs on the same host.
    return wire.Resources(
        cpus=2, mem=1024, ports=tuple(wire.PortRange(begin=p, end=p) for p in sorted(ports))
    )


IGNORES_TERM = "trap 'echo got TERM' TERM; while true; do sleep 0.1; done"


async def test_a_kill_is_killing_then_its_signal_then_sigkill_after_the_grace(
    amqp_url: str, etcd_prefix: str
) -> None:
    async with local_cluster(amqp_url, etcd_prefix, agents=1) as cluster:
        agent = cluster.agents[0].agent_id
        client = await cluster.framework("killer")
        async with TaskWatcher(client) as w:
            # Ignores SIGTERM: it ends by SIGKILL after its 4 s grace.
            await w.launch(task("stubborn", IGNORES_TERM, kill_grace_seconds=4), on=agent)
            # Exits 7 on its own kill signal, SIGUSR1: the signal comes first, and it was the task's.
            polite = "trap 'exit 7' USR1; while true; do sleep 0.1; done"
            await w.launch(task("polite", polite, kill_signal="SIGUSR1", kill_grace_seconds=30), on=agent)
            await w.until_state("stubborn", TaskState.RUNNING)
            await w.until_state("polite", TaskState.RUNNING)

            await client.kill("stubborn")
            killing = await w.until_state("stubborn", TaskState.KILLING, 10)
            assert "SIGTERM, then SIGKILL after 4 s" in killing.message
            # The agent's commands go on during the grace: another task launches on it meanwhile.
            await w.launch(task("meanwhile", "sleep 30"), on=agent)
            running = await w.until_state("meanwhile", TaskState.RUNNING, 10)
            killed = await w.until_state("stubborn", TaskState.KILLED, 20)
            assert running.timestamp < killed.timestamp
            assert killed.exit_code == 137 and killed.reason == StatusReason.KILLED_BY_FRAMEWORK
            assert killed.timestamp - killing.timestamp >= 3.5  # its grace, not Docker's stop at once
            assert w.states("stubborn")[-2:] == [TaskState.KILLING, TaskState.KILLED]

            await client.kill("polite")
            killed = await w.until_state("polite", TaskState.KILLED, 10)
            assert killed.exit_code == 7  # its trap ran: SIGUSR1 arrived, and before any SIGKILL

            # A kill's own grace overrides the task's: SIGKILL after 0 s, not 4.
            await w.launch(task("hurried", IGNORES_TERM, kill_grace_seconds=60), on=agent)
            await w.until_state("hurried", TaskState.RUNNING)
            started = time.monotonic()
            await client.kill("hurried", grace_seconds=0)
            killed = await w.until_state("hurried", TaskState.KILLED, 10)
            assert killed.exit_code == 137 and time.monotonic() - started < 8


async def test_http_tcp_and_command_checks_and_readiness(amqp_url: str, etcd_prefix: str) -> None:
    ports = [free_port() for _ in range(3)]
    resources = agent_with_ports(ports)
    async with local_cluster(amqp_url, etcd_prefix, agents=1, resources=resources) as cluster:
        client = await cluster.framework("checker")
        # A task's server starts a moment after its container is RUNNING, on a loaded machine after the
        # first probe (CI saw the listener's first verdict unhealthy): the grace period covers that.
        fast = {"interval_seconds": 0.3, "timeout_seconds": 2, "grace_period_seconds": 2}
        async with TaskWatcher(client) as w:
            # httpd serves /www; the readiness file comes after 2 s, the health file goes away after 6 s.
            web = (
                "mkdir -p /www; echo ok > /www/health; "
                "(sleep 2; echo ok > /www/ready) & (sleep 6; rm /www/health) & "
                "exec httpd -f -p $PORT0 -h /www"
            )
            http = HealthCheck(kind="http", path="/health", max_consecutive_failures=3, **fast)
            ready = HealthCheck(kind="http", path="/ready", interval_seconds=0.3, timeout_seconds=1)
            await w.launch(task("web", web, ports[0], health_check=http, readiness_check=ready))
            # Listens for good: healthy, and stays so.
            tcp = HealthCheck(kind="tcp", max_consecutive_failures=5, **fast)
            await w.launch(task("listener", "httpd -f -p $PORT0 -h /", ports[1], health_check=tcp))
            # Its check file goes after 5 s.
            command = HealthCheck(kind="command", command=("test", "-f", "/tmp/ok"), **fast)
            cmd = "touch /tmp/ok; (sleep 5; rm /tmp/ok) & sleep 600"
            await w.launch(task("commanded", cmd, health_check=command))
            # Nothing listens on its port: failures count only after its 1 s grace period.
            grace = {**fast, "grace_period_seconds": 1.0}
            deaf = HealthCheck(kind="tcp", max_consecutive_failures=2, **grace)
            await w.launch(task("deaf", "sleep 600", ports[2], health_check=deaf))

            running = await w.until_state("web", TaskState.RUNNING)
            assert running.ready is False  # it has a readiness check that has not passed
            healthy = await w.until("web", lambda s: s.healthy is True, 10, "healthy")
            assert healthy.state == TaskState.RUNNING and healthy.reason == StatusReason.HEALTH_CHANGED
            became_ready = await w.until("web", lambda s: s.ready is True, 10, "ready")
            assert became_ready.reason == StatusReason.READY
            unhealthy = await w.until("web", lambda s: s.healthy is False, 15, "unhealthy")
            assert unhealthy.message.startswith("unhealthy: ")
            failed = await w.until_state("web", TaskState.FAILED, 15)
            assert failed.reason == StatusReason.HEALTH_CHECK_FAILED
            # The FAILED update names the last failure: the file removed, httpd answers 404.
            assert "3 times in a row (last: GET /health answered 404)" in failed.message
            assert w.states("web")[-2:] == [TaskState.KILLING, TaskState.FAILED]
            # Readiness flipped once: one READY update, however long it ran.
            assert [s.reason for s in w.history["web"]].count(StatusReason.READY) == 1

            failed = await w.until_state("commanded", TaskState.FAILED, 15)
            assert failed.reason == StatusReason.HEALTH_CHECK_FAILED
            assert any(s.healthy is True for s in w.history["commanded"])

            failed = await w.until_state("deaf", TaskState.FAILED, 15)
            assert failed.reason == StatusReason.HEALTH_CHECK_FAILED
            first_check = next(s for s in w.history["deaf"] if s.healthy is False)
            running = next(s for s in w.history["deaf"] if s.state == TaskState.RUNNING)
            assert first_check.timestamp - running.timestamp >= 0.9  # not before its grace period

            listener = w.history["listener"]
            assert next(s.healthy for s in listener if s.healthy is not None) is True
            assert listener[-1].state == TaskState.RUNNING and listener[-1].healthy is True
            # The master keeps the verdicts: the state API shows them.
            tasks = {t.task_id: t for t in cluster.master.state().tasks}
            assert tasks["listener"].healthy is True and tasks["listener"].ready is None
