"""What the Mesos API gateway costs a framework: ACCEPT -> TASK_RUNNING, through the SDK and through the
gateway, on one cluster of processes (master, allocator, a no-op agent, a gateway), in one run.

The SDK's path is framework -> master -> agent -> master -> framework (four broker hops). The gateway's
adds an HTTP request in (the ACCEPT) and a stream record out (the UPDATE), with the gateway's own
translation, and no broker hop: the gateway's SDK client is the framework there.

    ../.venv/bin/python gateway.py [--tasks 200] [--out gateway.json]
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
import urllib.request
from functools import partial
from pathlib import Path
from typing import Any

from harness import noop_task, summary, write_result

from meseta.sdk import FrameworkClient, wire
from meseta.testing.mesos import Subscription, subscribe
from meseta.testing.processes import ProcessCluster, free_port


async def through_sdk(amqp_url: str, tasks: int) -> list[float]:
    client = FrameworkClient(amqp_url, "bench-sdk")
    await client.subscribe(timeout=30)
    events = client.events()
    samples: list[float] = []
    try:
        for i in range(tasks):
            offer = None
            while offer is None:
                event = await anext(events)
                if isinstance(event, wire.Offers):
                    offer = event.offers[0]
                    if len(event.offers) > 1:
                        await client.decline([o.offer_id for o in event.offers[1:]], refuse_seconds=0)
            began = time.perf_counter()
            await client.accept([offer.offer_id], [noop_task(f"sdk-{i}", 0.1, 16, 0)])
            while True:
                event = await anext(events)
                if (
                    isinstance(event, wire.Update)
                    and event.status.task_id == f"sdk-{i}"
                    and event.status.state == wire.TaskState.RUNNING
                ):
                    samples.append((time.perf_counter() - began) * 1000)
                    break
    finally:
        await client.teardown()
        await client.close()
    return samples


def mesos_noop_task(task_id: str, agent_id: str) -> dict[str, Any]:
    return {
        "name": task_id,
        "task_id": {"value": task_id},
        "agent_id": {"value": agent_id},
        "resources": [
            {"name": "cpus", "type": "SCALAR", "scalar": {"value": 0.1}},
            {"name": "mem", "type": "SCALAR", "scalar": {"value": 16}},
        ],
        "command": {"shell": False, "value": "noop", "environment": {"variables": [
            {"name": "MESETA_NOOP_SECONDS", "value": "0"}]}},
        "container": {"type": "DOCKER", "docker": {"image": "noop"}},
    }  # fmt: skip


def is_running(task_id: str, event: dict[str, Any]) -> bool:
    if event.get("type") != "UPDATE":
        return False
    status = event["update"]["status"]
    return bool(status["task_id"]["value"] == task_id and status["state"] == "TASK_RUNNING")


async def through_gateway(url: str, tasks: int) -> list[float]:
    sub = await subscribe(url, {"name": "bench-mesos", "failover_timeout": 0})
    assert isinstance(sub, Subscription), sub
    samples: list[float] = []
    seen = 0
    try:
        for i in range(tasks):
            event = await sub.wait(lambda e: e.get("type") == "OFFERS", 30, "offers", seen)
            seen = sub.events.index(event) + 1
            offers = event["offers"]["offers"]
            if len(offers) > 1:
                await sub.call(
                    "DECLINE", {"offer_ids": [o["id"] for o in offers[1:]], "filters": {"refuse_seconds": 0}}
                )
            offer = offers[0]
            task_id = f"mesos-{i}"
            launch = {
                "type": "LAUNCH",
                "launch": {"task_infos": [mesos_noop_task(task_id, offer["agent_id"]["value"])]},
            }
            began = time.perf_counter()
            await sub.call(
                "ACCEPT",
                {"offer_ids": [offer["id"]], "operations": [launch], "filters": {"refuse_seconds": 0}},
            )
            running = await sub.wait(partial(is_running, task_id), 30, f"{task_id} running", seen)
            samples.append((time.perf_counter() - began) * 1000)
            status = running["update"]["status"]
            await sub.call("ACKNOWLEDGE", {k: status[k] for k in ("agent_id", "task_id", "uuid")})
    finally:
        await sub.call("TEARDOWN")
        await sub.close()
    return samples


async def main(tasks: int, out: str) -> None:
    log_dir = Path(tempfile.mkdtemp(prefix="meseta-bench-gateway-"))
    env = {"MESETA_LOG_LEVEL": "WARNING"}
    async with ProcessCluster(log_dir, env=env) as cluster:
        await cluster.allocator(0)
        await cluster.master(0)
        await cluster.agent(0, "host-0", "--isolator=noop", "--cpus=8", "--mem=8192")
        port = free_port()
        await cluster.start(
            "gateway-0", "gateway", f"--port={port}", "--name=gateway-0", "--heartbeat-interval=15"
        )
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                await asyncio.to_thread(lambda: urllib.request.urlopen(f"{url}/ready", timeout=2).read())
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError(
                        f"the gateway did not start: {cluster.log('gateway-0')[-2000:]}"
                    ) from None
                await asyncio.sleep(0.2)
        # Alternate the two, twice, so neither gets the quieter machine.
        sdk: list[float] = []
        mesos: list[float] = []
        for _ in range(2):
            sdk += await through_sdk(cluster.amqp_url, tasks // 2)
            mesos += await through_gateway(url, tasks // 2)
    sdk_summary, mesos_summary = summary(sdk), summary(mesos)
    result: dict[str, Any] = {
        "what": "ACCEPT -> TASK_RUNNING (ms), one task at a time, no-op agent",
        "tasks": tasks,
        "sdk": sdk_summary,
        "gateway": mesos_summary,
        "gateway_minus_sdk_p50_ms": round(mesos_summary["p50_ms"] - sdk_summary["p50_ms"], 3),
    }
    path = write_result(out, result)
    for name, figures in (("SDK", sdk_summary), ("gateway", mesos_summary)):
        print(f"ACCEPT -> RUNNING through the {name}: p50 {figures['p50_ms']} ms, p99 {figures['p99_ms']} ms")
    print(f"-> {path}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--tasks", type=int, default=200)
    parser.add_argument("--out", default="gateway.json")
    args = parser.parse_args()
    asyncio.run(main(args.tasks, args.out))
