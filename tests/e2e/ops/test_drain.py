"""Draining agents and maintenance windows through the operator API, against a real cluster."""

from __future__ import annotations

import asyncio
import json
import os
import time
import urllib.error
import urllib.request
from dataclasses import replace
from typing import Any

import pytest
from typer.testing import CliRunner

from meseta.cli import app
from meseta.master import MasterService
from meseta.sdk import FrameworkClient, wire
from meseta.testing.local import Cluster, local_cluster, short_task
from meseta.testing.waiting import wait_for

pytestmark = pytest.mark.e2e

TOKEN = "operator-test-credential"


def _call(method: str, url: str, token: str | None, body: Any = None) -> tuple[int, Any, dict[str, str]]:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method)
    if token is not None:
        request.add_header("Authorization", f"Bearer {token}")

    class NoRedirects(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args: Any, **kwargs: Any) -> None:
            return None

    try:
        with urllib.request.build_opener(NoRedirects).open(request, timeout=5) as r:
            return r.status, json.loads(r.read()), dict(r.headers)
    except urllib.error.HTTPError as exc:
        text = exc.read()
        try:
            answer = json.loads(text) if text else None
        except ValueError:  # aiohttp's own pages (a redirect's) are text
            answer = text.decode(errors="replace")
        return exc.code, answer, dict(exc.headers)


async def call(method: str, url: str, token: str | None = TOKEN, body: Any = None) -> tuple[int, Any]:
    status, answer, _ = await asyncio.to_thread(_call, method, url, token, body)
    return status, answer


def api(cluster: Cluster) -> str:
    assert cluster.master.api_url is not None
    return cluster.master.api_url


async def agent_state(cluster: Cluster, agent_id: str) -> str:
    status, agents = await call("GET", api(cluster) + "/api/v1/agents")
    assert status == 200
    return str(next(a["state"] for a in agents if a["agent_id"] == agent_id))


async def until_agent_state(cluster: Cluster, agent_id: str, state: str, timeout: float = 10) -> None:
    """Until the state API shows the agent in ``state`` (it renders at most every half second)."""
    deadline = time.monotonic() + timeout
    while (seen := await agent_state(cluster, agent_id)) != state:
        if time.monotonic() > deadline:
            raise AssertionError(f"agent {agent_id} is {seen}, not {state}, after {timeout} s")
        await asyncio.sleep(0.1)


async def cli(*args: str) -> str:
    env = {"MESETA_OPERATOR_TOKEN": TOKEN}
    result = await asyncio.to_thread(CliRunner().invoke, app, list(args), env=env)
    assert result.exit_code == 0, result.output
    return result.output


class Watcher:
    """A framework's events in the background: offers declined at once (briefly, so they come back),
    each offer's agent, the updates and drain notices."""

    def __init__(self, client: FrameworkClient) -> None:
        self.client = client
        self.offered: list[tuple[float, str]] = []
        self.updates: list[wire.TaskStatus] = []
        self.notices: list[wire.DrainNotice] = []
        self.launch: tuple[str, list[wire.TaskInfo]] | None = None
        """(agent id, tasks) to launch on the first offer of that agent."""
        self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        async for event in self.client.events():
            match event:
                case wire.Offers():
                    for offer in event.offers:
                        self.offered.append((time.time(), offer.agent_id))
                        if self.launch is not None and offer.agent_id == self.launch[0]:
                            await self.client.accept([offer.offer_id], self.launch[1])
                            self.launch = None
                        else:
                            await self.client.decline([offer.offer_id], refuse_seconds=0.2)
                case wire.Update():
                    self.updates.append(event.status)
                case wire.DrainNotice():
                    self.notices.append(event)

    def state(self, task_id: str) -> wire.TaskStatus | None:
        found = [s for s in self.updates if s.task_id == task_id]
        return found[-1] if found else None

    def offered_since(self, since: float, agent_id: str) -> bool:
        return any(at >= since and a == agent_id for at, a in self.offered)

    def stop(self) -> None:
        self._task.cancel()


async def test_a_drained_agent_tells_its_frameworks_kills_at_the_deadline_and_comes_back(
    amqp_url: str, etcd_prefix: str
) -> None:
    async with local_cluster(amqp_url, etcd_prefix, agents=2, operator_token=TOKEN) as cluster:
        drained = cluster.agents[0].agent_id
        client = await cluster.framework("drained-one")
        watcher = Watcher(client)
        service = short_task("service-1", script="sleep 600")
        batch = short_task("batch-1", script="sleep 2")
        watcher.launch = (drained, [service, batch])
        try:
            await wait_for(
                lambda: all(
                    (s := watcher.state(t)) is not None and s.state == wire.TaskState.RUNNING
                    for t in ("service-1", "batch-1")
                ),
                60,
                "both tasks to run",
            )
            began = time.time()
            out = await cli("drain", drained, "--deadline", "4s", "--api", api(cluster))
            assert "DRAINING" in out
            # The framework is told first, with both tasks and the deadline.
            await wait_for(lambda: watcher.notices, 10, "the drain notice")
            (notice,) = watcher.notices
            assert (notice.agent_id, set(notice.task_ids)) == (drained, {"service-1", "batch-1"})
            assert began + 3 <= notice.deadline <= time.time() + 4
            # The batch task finishes before the deadline; the service task is killed at it.
            await wait_for(lambda: (s := watcher.state("service-1")) and s.state.terminal, 30, "the kill")
            killed, finished = watcher.state("service-1"), watcher.state("batch-1")
            assert killed is not None and finished is not None
            assert (killed.state, killed.reason) == (wire.TaskState.KILLED, wire.StatusReason.AGENT_DRAINED)
            assert finished.state == wire.TaskState.FINISHED
            assert time.time() >= notice.deadline
            await until_agent_state(cluster, drained, "DRAINED")
            # Offers kept coming for the other agent, none for the drained one (allowing a second for
            # offers in flight when the drain began).
            assert watcher.offered_since(began, cluster.agents[1].agent_id)
            assert not watcher.offered_since(began + 1, drained)
            # Back in service: offered again.
            back = time.time()
            await cli("undrain", drained, "--api", api(cluster))
            await wait_for(lambda: watcher.offered_since(back, drained), 20, "offers on the undrained agent")
            await until_agent_state(cluster, drained, "ACTIVE")
        finally:
            watcher.stop()


async def test_a_maintenance_window_drains_its_agents_only_once_it_starts(
    amqp_url: str, etcd_prefix: str
) -> None:
    async with local_cluster(amqp_url, etcd_prefix, agents=2, operator_token=TOKEN) as cluster:
        agent_id = cluster.agents[1].agent_id
        watcher = Watcher(await cluster.framework("watching"))
        try:
            scheduled = time.time()
            start = scheduled + 4
            body = {"agent_ids": [agent_id], "start": start, "duration_seconds": 300}
            status, window = await call("POST", api(cluster) + "/api/v1/maintenance", body=body)
            assert status == 201, window
            # Before the window: offered as usual.
            await wait_for(lambda: watcher.offered_since(scheduled, agent_id), 20, "offers before the window")
            assert time.time() < start
            assert await agent_state(cluster, agent_id) == "ACTIVE"
            # In the window: drained, and offered no more.
            await wait_for(lambda: time.time() > start + 1, 10, "the window to start")
            await until_agent_state(cluster, agent_id, "DRAINED")
            quiet_from = time.time()
            await wait_for(
                lambda: watcher.offered_since(quiet_from, cluster.agents[0].agent_id), 20, "offers"
            )
            assert not watcher.offered_since(quiet_from, agent_id)
            # Cancelled: back in service.
            status, _ = await call("DELETE", api(cluster) + f"/api/v1/maintenance/{window['window_id']}")
            assert status == 200
            back = time.time()
            await wait_for(lambda: watcher.offered_since(back, agent_id), 20, "offers after the window")
            status, windows = await call("GET", api(cluster) + "/api/v1/maintenance")
            assert (status, windows) == (200, [])
        finally:
            watcher.stop()


ENDPOINTS = [
    ("POST", "/api/v1/agents/{agent}/drain", {"deadline_seconds": 1}),
    ("POST", "/api/v1/agents/{agent}/undrain", None),
    ("POST", "/api/v1/agents/{agent}/gone", None),
    ("GET", "/api/v1/maintenance", None),
    ("POST", "/api/v1/maintenance", {"agent_ids": ["{agent}"], "start": 1, "duration_seconds": 1}),
    ("DELETE", "/api/v1/maintenance/none", None),
    ("POST", "/api/v1/tasks/none/kill", None),
    ("POST", "/api/v1/frameworks/none/teardown", None),
    ("PUT", "/api/v1/policy", {"policy": "drf"}),
    ("PUT", "/api/v1/roles/prod", {"weight": 2}),
]


async def test_every_operator_endpoint_needs_the_credential_and_a_standby_redirects(
    amqp_url: str, etcd_prefix: str
) -> None:
    async with local_cluster(amqp_url, etcd_prefix, agents=1, operator_token=TOKEN) as cluster:
        agent = cluster.agents[0].agent_id
        standby = MasterService(replace(cluster.master.settings, name=f"standby-{os.getpid()}"))
        await standby.start()
        try:
            leader_url, standby_url = api(cluster), standby.api_url
            assert standby_url is not None and standby_url != leader_url
            for method, path, body in ENDPOINTS:
                path = path.format(agent=agent)
                body = json.loads(json.dumps(body).replace("{agent}", agent)) if body else None
                for base in (leader_url, standby_url):
                    status, answer = await call(method, base + path, token=None, body=body)
                    assert status == 401, (method, path, answer)
                    status, answer = await call(method, base + path, token="wrong", body=body)
                    assert status == 403, (method, path, answer)
                status, answer, headers = await asyncio.to_thread(
                    _call, method, standby_url + path, TOKEN, body
                )
                assert status == 307, (method, path, answer)
                assert headers["Location"] == leader_url + path
            # Bad input is refused with the reason, and nothing happens.
            status, answer = await call(
                "POST", leader_url + f"/api/v1/agents/{agent}/drain", body={"deadline_seconds": -1}
            )
            assert status == 400 and "deadline_seconds" in answer["error"]
            status, answer = await call("POST", leader_url + "/api/v1/agents/no-such-agent/drain", body={})
            assert status == 404
            for bad in (
                {"agent_ids": ["../not an id"], "start": 1, "duration_seconds": 1},
                {"agent_ids": [agent], "start": 1, "duration_seconds": 1e308 * 10},  # JSON Infinity
                {"agent_ids": [agent], "start": 1, "duration_seconds": 1, "extra": "field"},
            ):
                status, answer = await call("POST", leader_url + "/api/v1/maintenance", body=bad)
                assert status == 400, (bad, answer)
            huge = {"agent_ids": [agent], "start": 1, "duration_seconds": 1, "window_id": "w" * 2_000_000}
            assert (await call("POST", leader_url + "/api/v1/maintenance", body=huge))[0] == 413
            assert await call("GET", leader_url + "/api/v1/maintenance") == (200, [])
            assert await agent_state(cluster, agent) == "ACTIVE"
            # The CLI follows the standby's redirect.
            out = await cli("drain", agent, "--deadline", "0", "--api", standby_url)
            assert "DRAINED" in out
            await until_agent_state(cluster, agent, "DRAINED")
        finally:
            await standby.stop()


async def test_the_operator_kills_a_task_sets_policy_and_roles_and_tears_a_framework_down(
    amqp_url: str, etcd_prefix: str
) -> None:
    async with local_cluster(amqp_url, etcd_prefix, agents=1, operator_token=TOKEN) as cluster:
        client = await cluster.framework("operated")
        watcher = Watcher(client)
        watcher.launch = (cluster.agents[0].agent_id, [short_task("long-1", script="sleep 600")])
        try:
            await wait_for(
                lambda: (s := watcher.state("long-1")) is not None and s.state == wire.TaskState.RUNNING,
                60,
                "the task to run",
            )
            status, answer = await call("POST", api(cluster) + "/api/v1/tasks/long-1/kill")
            assert (status, answer["state"], answer["framework_id"]) == (202, "KILLING", client.framework_id)
            await wait_for(
                lambda: (s := watcher.state("long-1")) is not None and s.state.terminal, 30, "the kill"
            )
            killed = watcher.state("long-1")
            assert killed is not None
            assert (killed.state, killed.reason) == (
                wire.TaskState.KILLED,
                wire.StatusReason.KILLED_BY_OPERATOR,
            )
            assert (await call("POST", api(cluster) + "/api/v1/tasks/long-1/kill"))[0] == 404
            # Policy and roles go to etcd through the master; the allocator takes them at its next read.
            status, _ = await call("PUT", api(cluster) + "/api/v1/policy", body={"policy": "lottery"})
            assert status == 200
            await wait_for(lambda: cluster.allocator.policy.name == "lottery", 10, "the new policy")
            assert (await call("PUT", api(cluster) + "/api/v1/policy", body={"policy": "nope"}))[0] == 400
            role = {"weight": 3, "quota": {"cpus": 1, "mem": 64}}
            assert (await call("PUT", api(cluster) + "/api/v1/roles/prod", body=role))[0] == 200
            await wait_for(lambda: cluster.allocator.state.role("prod").weight == 3, 10, "the role's weight")
            # Tear the framework down from the terminal.
            await cli("teardown", str(client.framework_id), "--api", api(cluster))
            assert client.framework_id not in cluster.master.cluster.frameworks
            assert (await call("POST", api(cluster) + f"/api/v1/frameworks/{client.framework_id}/teardown"))[
                0
            ] == 404
        finally:
            watcher.stop()
