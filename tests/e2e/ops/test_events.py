"""The operators' event stream (/api/v1/events): agents and tasks as they happen, within a second."""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import replace
from typing import Any

import aiohttp
import pytest

from meseta.agent import AgentService
from meseta.master import MasterService
from meseta.testing.local import local_cluster, run_one, short_task
from meseta.testing.waiting import wait_for

pytestmark = pytest.mark.e2e


class Stream:
    """Reads server-sent events in the background, each with when it arrived."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.events: list[tuple[float, dict[str, Any]]] = []
        self.opened = asyncio.Event()
        self._task = asyncio.create_task(self._read())

    async def _read(self) -> None:
        async with aiohttp.ClientSession() as session, session.get(self.url) as response:
            assert response.status == 200, await response.text()
            assert response.headers["Content-Type"].startswith("text/event-stream")
            self.opened.set()
            data: list[str] = []
            async for raw in response.content:
                line = raw.decode().rstrip("\n")
                if line.startswith("data: "):
                    data.append(line[len("data: ") :])
                elif not line and data:
                    self.events.append((time.time(), json.loads("".join(data))))
                    data = []

    def of(self, kind: str, **fields: object) -> list[tuple[float, dict[str, Any]]]:
        return [
            (at, e)
            for at, e in self.events
            if e["type"] == kind and all(e.get(k) == v for k, v in fields.items())
        ]

    async def close(self) -> None:
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)


async def test_the_event_stream_tells_agents_and_tasks_within_a_second(
    amqp_url: str, etcd_prefix: str
) -> None:
    async with local_cluster(amqp_url, etcd_prefix, agents=1) as cluster:
        assert cluster.master.api_url is not None
        stream = Stream(cluster.master.api_url + "/api/v1/events")
        await asyncio.wait_for(stream.opened.wait(), 10)
        await wait_for(lambda: cluster.master.cluster.events.subscribers == 1, 10, "the subscription")
        try:
            # An agent joins.
            settings = cluster.agents[0].settings
            newcomer = AgentService(
                replace(settings, agent_id=settings.agent_id + "-late", hostname="host-late")
            )
            await newcomer.start()
            try:
                await wait_for(lambda: stream.of("AGENT_ADDED", agent_id=newcomer.agent_id), 5, "AGENT_ADDED")
                ((arrived, event),) = stream.of("AGENT_ADDED", agent_id=newcomer.agent_id)
                assert event["hostname"] == "host-late"
                assert arrived - event["time"] < 1.0
                # A framework subscribes and runs a task: each state of it is an event.
                client = await cluster.framework("watched")
                await wait_for(lambda: stream.of("FRAMEWORK_ADDED", name="watched"), 5, "FRAMEWORK_ADDED")
                status = await run_one(client, short_task("seen-1", script="true"))
                told = time.time()
                assert status.state.value == "FINISHED"
                await wait_for(
                    lambda: stream.of("TASK_UPDATED", task_id="seen-1", state="FINISHED"), 5, "FINISHED"
                )
                ((arrived, event),) = stream.of("TASK_UPDATED", task_id="seen-1", state="FINISHED")
                assert event["framework_id"] == client.framework_id
                assert arrived - event["time"] < 1.0 and arrived - told < 1.0
                assert stream.of("TASK_UPDATED", task_id="seen-1", state="RUNNING")
            finally:
                await newcomer.stop()
        finally:
            await stream.close()
        await wait_for(lambda: cluster.master.cluster.events.subscribers == 0, 10, "the unsubscription")
        # A standby has no events to tell: 503, as for the state documents.
        standby = MasterService(replace(cluster.master.settings, name="standby-events"))
        await standby.start()
        try:
            assert standby.api_url is not None
            async with (
                aiohttp.ClientSession() as session,
                session.get(standby.api_url + "/api/v1/events") as r,
            ):
                assert r.status == 503
        finally:
            await standby.stop()
