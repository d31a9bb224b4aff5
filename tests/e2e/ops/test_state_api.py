"""The leading master's state API, its OpenAPI description, the terminal tables, operator kill, metrics."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from meseta.cli import app
from meseta.master import MasterService
from meseta.master.views import StateView
from meseta.sdk import FrameworkClient, wire
from meseta.testing.local import local_cluster, short_task, until_state
from meseta.testing.waiting import wait_for
from tests.conftest import METRICS

pytestmark = pytest.mark.e2e


def _get(url: str) -> tuple[int, Any]:
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


async def get(url: str) -> tuple[int, Any]:
    return await asyncio.to_thread(_get, url)


async def cli(*args: str) -> str:
    result = await asyncio.to_thread(CliRunner().invoke, app, list(args))
    assert result.exit_code == 0, result.output
    return result.output


async def decline_everything(client: FrameworkClient, stop: asyncio.Event) -> None:
    async for event in client.events():
        if isinstance(event, wire.Offers):
            await client.decline([o.offer_id for o in event.offers], refuse_seconds=0.2)
        if stop.is_set():
            return


def metric_points(name: str) -> list[Any]:
    data = METRICS.get_metrics_data()
    assert data is not None
    return [
        point
        for rm in data.resource_metrics
        for sm in rm.scope_metrics
        for metric in sm.metrics
        if metric.name == name
        for point in metric.data.data_points
    ]


async def test_state_api_tables_kill_and_metrics(amqp_url: str, etcd_prefix: str, tmp_path: Path) -> None:
    token = tmp_path / "operator-token"
    token.write_text("state-api-operator\n")
    async with local_cluster(amqp_url, etcd_prefix, agents=3, operator_token="state-api-operator") as cluster:
        await cluster.master.leading.wait()
        base = f"http://127.0.0.1:{cluster.master.api.port}"
        runner = await cluster.framework("runner", role="batch", weight=2.0)
        decliner = await cluster.framework("decliner", role="web")
        stop = asyncio.Event()
        declining = asyncio.create_task(decline_everything(decliner, stop))
        long_task = short_task("long-1", cpus=1, mem=64, script="sleep 60")
        agent_id, _ = await until_state(runner, wire.TaskState.RUNNING, long_task)

        def seen() -> bool:
            state = cluster.master.state()
            by_id = {f.framework_id: f for f in state.frameworks}
            return by_id[decliner.framework_id or ""].offers_declined >= 3 and len(state.history) >= 3

        await wait_for(seen, 20, "declines and share samples")

        status, body = await get(f"{base}/api/v1/state")
        assert status == 200
        state = StateView.model_validate(body)
        assert state.leader.leading and state.leader.epoch == cluster.master.epoch > 0
        assert {a.agent_id for a in state.agents} == {a.agent_id for a in cluster.agents}
        assert state.totals.total.cpus == 6 and state.totals.used.cpus == 1
        host = next(a for a in state.agents if a.agent_id == agent_id)
        assert host.used.cpus == 1 and host.total.cpus == 2 and host.attributes["rack"] in ("r0", "r1")
        assert host.utilization["cpus"] >= 0.5 and host.tasks == 1
        frameworks = {f.name: f for f in state.frameworks}
        assert frameworks["runner"].role == "batch" and frameworks["runner"].weight == 2.0
        # Fair shares follow the weights; the runner holds 1 of 6 cpus (and what it is offered).
        assert frameworks["runner"].fair_share == pytest.approx(2 / 3, abs=1e-3)
        assert frameworks["decliner"].fair_share == pytest.approx(1 / 3, abs=1e-3)
        assert frameworks["runner"].dominant_share >= 1 / 6 - 1e-6
        assert frameworks["decliner"].declined_offer_ratio == 1.0
        assert frameworks["runner"].offers_accepted >= 1 and frameworks["runner"].tasks == 1
        [task] = state.tasks
        assert (task.task_id, task.state, task.agent_id) == ("long-1", wire.TaskState.RUNNING, agent_id)
        accepted = [c for c in state.cycles if c.decision == "accept"]
        assert accepted and accepted[0].tasks == 1 and accepted[0].round_trip_ms is not None
        assert 0 < accepted[0].round_trip_ms < 10_000
        assert any(c.decision == "decline" for c in state.cycles)
        assert any(runner.framework_id in s.shares for s in state.history)

        # The parts are the same documents as the whole.
        status, tasks = await get(f"{base}/api/v1/tasks")
        assert status == 200 and [t["task_id"] for t in tasks] == ["long-1"]
        status, agents = await get(f"{base}/api/v1/agents")
        assert status == 200 and len(agents) == 3
        # Each part renders alone (not the whole state, which takes a large cluster's master a while).
        status, parts = await get(f"{base}/api/v1/frameworks")
        assert status == 200 and {f["name"] for f in parts} == {"runner", "decliner"}
        status, parts = await get(f"{base}/api/v1/cycles")
        assert status == 200 and {c["decision"] for c in parts} >= {"accept", "decline"}
        for part in ("offers", "history"):
            status, parts = await get(f"{base}/api/v1/{part}")
            assert status == 200 and isinstance(parts, list)

        # The OpenAPI description covers every route, and its references resolve.
        status, spec = await get(f"{base}/openapi.json")
        assert status == 200 and spec["openapi"].startswith("3.")
        for path in ("state", "agents", "frameworks", "tasks", "offers", "cycles", "history", "leader"):
            assert f"/api/v1/{path}" in spec["paths"]
        refs = {m for m in json.dumps(spec).split('"') if m.startswith("#/components/schemas/")}
        assert refs and all(r.rsplit("/", 1)[1] in spec["components"]["schemas"] for r in refs)
        assert "dominant_share" in spec["components"]["schemas"]["FrameworkView"]["properties"]

        # A standby serves the API too, but says it does not lead.
        standby = MasterService(dataclasses.replace(cluster.master.settings, name="standby-master"))
        await standby.start()
        try:
            status, body = await get(f"http://127.0.0.1:{standby.api.port}/api/v1/state")
            assert status == 503 and body["leading"] is False and body["name"] == "standby-master"
            # The CLI moves on to the leader.
            out = await cli("agents", "--api", f"http://127.0.0.1:{standby.api.port},{base}")
        finally:
            await standby.stop()
        for agent in cluster.agents:
            assert agent.agent_id in out
        out = await cli("tasks", "--api", base)
        assert "long-1" in out and "RUNNING" in out
        out = await cli("frameworks", "--api", base)
        assert "runner" in out and "decliner" in out and "100.0%" in out  # the decliner's declines
        out = await cli("status", "--api", base)
        assert cluster.master.settings.name in out and "offer round trip p50" in out
        assert f"{base}: ready (leader)" in out  # its /ready, as compose's health checks read it
        out = await cli("offers", "--json", "--api", base)
        assert all(o["framework_id"] in (runner.framework_id, decliner.framework_id) for o in json.loads(out))

        # An operator's kill, through the operator API: the framework hears KILLED, and why.
        out = await cli("kill", "long-1", "--api", base, "--token-file", str(token))
        assert f"killing long-1 of {runner.framework_id} on {agent_id}" in out
        _, killed = await until_state(runner, wire.TaskState.KILLED)
        assert killed.reason == wire.StatusReason.KILLED_BY_OPERATOR
        refused = await asyncio.to_thread(
            CliRunner().invoke, app, ["kill", "no-such", "--api", base, "--token-file", str(token)]
        )
        assert refused.exit_code == 1 and "HTTP 404: no live task no-such" in refused.output
        (tmp_path / "wrong").write_text("guess")
        refused = await asyncio.to_thread(
            CliRunner().invoke,
            app,
            ["kill", "long-1", "--api", base, "--token-file", str(tmp_path / "wrong")],
        )
        assert refused.exit_code == 1 and "HTTP 403" in refused.output

        # Policy and role, through the operator API too; the allocator reads them from etcd.
        out = await cli("policy", "lottery", "--api", base, "--token-file", str(token))
        assert "policy set to lottery" in out
        await wait_for(lambda: cluster.allocator.policy.name == "lottery", 10)
        out = await cli(
            "role", "web", "--weight", "3", "--quota-cpus", "1", "--api", base, "--token-file", str(token)
        )
        assert "role web: weight 3" in out
        await wait_for(lambda: cluster.allocator.state.role("web").weight == 3.0, 10)
        refused = await asyncio.to_thread(
            CliRunner().invoke, app, ["policy", "nope", "--api", base, "--token-file", str(token)]
        )
        assert refused.exit_code == 1 and "unknown policy 'nope'" in refused.output

        # Metrics: offers by outcome, the round trip, tasks by state, shares.
        outcomes = {
            p.attributes["outcome"]
            for p in metric_points("meseta.offers")
            if p.attributes["framework_id"] in (runner.framework_id, decliner.framework_id)
        }
        assert {"sent", "accepted", "declined"} <= outcomes
        trips = [
            p
            for p in metric_points("meseta.offer.round_trip")
            if p.attributes["framework_id"] == runner.framework_id
        ]
        assert trips and trips[0].count >= 1 and trips[0].sum > 0
        assert any(p.count > 0 for p in metric_points("meseta.allocation.cycle_time"))
        shares = [p for p in metric_points("meseta.framework.share") if p.attributes["name"] == "decliner"]
        assert shares
        stop.set()
        declining.cancel()
