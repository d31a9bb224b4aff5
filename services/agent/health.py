"""A running task's health and readiness checks (Mesos's health checks, Marathon's readiness checks).

Each check runs on the agent: a command inside the task's container, an HTTP GET or a TCP connection to
the task's port at its container's address. Health changes are RUNNING updates with ``healthy`` set
(reason HEALTH_CHANGED); ``max_consecutive_failures`` failures in a row, outside the grace period, kill
the task, which then ends FAILED with reason HEALTH_CHECK_FAILED. Readiness is checked until it first
passes: one RUNNING update with ``ready`` true (reason READY), and no more checks.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable

import aiohttp

from meseta.agent.containerizer import Containerizer
from meseta.agent.tasks import LocalTask
from meseta.sdk.wire import HealthCheck, StatusReason, TaskState

log = logging.getLogger(__name__)

Report = Callable[[LocalTask, TaskState, StatusReason, str], Awaitable[None]]
Kill = Callable[[LocalTask, StatusReason], Awaitable[None]]


class Checks:
    """Runs the checks of every task that has one; a task's checks end with the task."""

    def __init__(self, containerizer: Containerizer, report: Report, kill: Kill) -> None:
        self.containerizer = containerizer
        self.report = report
        self.kill = kill
        self._session: aiohttp.ClientSession | None = None

    def start(self, local: LocalTask) -> None:
        """Begin checking ``local`` (RUNNING now); nothing when it has no check."""
        if local.info.health_check is not None:
            local.checks.append(asyncio.create_task(self._health(local, local.info.health_check)))
        if local.info.readiness_check is not None:
            local.checks.append(asyncio.create_task(self._readiness(local, local.info.readiness_check)))

    @staticmethod
    def stop(local: LocalTask) -> None:
        for check in local.checks:
            check.cancel()
        local.checks.clear()

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def _health(self, local: LocalTask, check: HealthCheck) -> None:
        await asyncio.sleep(check.delay_seconds)
        started = time.monotonic()
        failures = 0
        passed_once = False
        while local.kill_reason is None:
            ok, why = await self.probe(local, check)
            if ok:
                failures, passed_once = 0, True
                if local.healthy is not True:
                    local.healthy = True
                    await self.report(local, TaskState.RUNNING, StatusReason.HEALTH_CHANGED, "healthy")
            elif passed_once or time.monotonic() - started >= check.grace_period_seconds:
                failures += 1
                local.health_failure = why
                if local.healthy is not False:
                    local.healthy = False
                    await self.report(
                        local, TaskState.RUNNING, StatusReason.HEALTH_CHANGED, f"unhealthy: {why}"
                    )
                if failures >= check.max_consecutive_failures:
                    log.info(
                        "task %s failed its health check %d times in a row (%s): killing it",
                        local.info.task_id,
                        failures,
                        why,
                    )
                    await self.kill(local, StatusReason.HEALTH_CHECK_FAILED)
                    return
            await asyncio.sleep(check.interval_seconds)

    async def _readiness(self, local: LocalTask, check: HealthCheck) -> None:
        await asyncio.sleep(check.delay_seconds)
        while local.kill_reason is None:
            ok, _ = await self.probe(local, check)
            if ok:
                local.ready = True
                await self.report(local, TaskState.RUNNING, StatusReason.READY, "ready")
                return
            await asyncio.sleep(check.interval_seconds)

    async def probe(self, local: LocalTask, check: HealthCheck) -> tuple[bool, str]:
        """One run of ``check``: whether it passed, and if not, why."""
        assert local.container_id is not None
        if check.kind != "command" and local.address is None:
            # Once per task, and outside the check's time limit: an engine slow to answer an inspect is
            # not the task failing its check.
            try:
                local.address = await self.containerizer.address(local.container_id)
            except Exception as exc:
                return False, f"{check.kind}: its container's address is unknown ({exc})"
        try:
            async with asyncio.timeout(check.timeout_seconds):
                if check.kind == "command":
                    code = await self.containerizer.exec(local.container_id, check.command)
                    return code == 0, f"command exited with {code}"
                port = _port(local, check)
                if port is None:
                    return False, f"the task has no port {check.port_index}"
                host = local.address or "127.0.0.1"
                if check.kind == "tcp":
                    _, writer = await asyncio.open_connection(host, port)
                    writer.close()
                    with contextlib.suppress(OSError):
                        await writer.wait_closed()
                    return True, ""
                if self._session is None:
                    self._session = aiohttp.ClientSession()
                url = f"http://{host}:{port}{check.path}"
                async with self._session.get(url, allow_redirects=False) as response:
                    return 200 <= response.status < 400, f"GET {check.path} answered {response.status}"
        except TimeoutError:
            return False, f"no answer within {check.timeout_seconds:g} s"
        except (OSError, aiohttp.ClientError) as exc:
            return False, f"{check.kind}: {exc}"
        except Exception as exc:  # the engine refused the exec (the container ended meanwhile): unhealthy
            return False, f"{check.kind}: {exc}"


def _port(local: LocalTask, check: HealthCheck) -> int | None:
    if check.port is not None:
        return check.port
    ports = [p for r in local.info.resources.ports for p in range(r.begin, r.end + 1)]
    return ports[check.port_index] if check.port_index < len(ports) else None
