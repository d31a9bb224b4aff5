"""The Mesos v1 scheduler API of ``meseta gateway``, spoken raw over HTTP against a real cluster."""

from __future__ import annotations

import time

import aiohttp
import pytest

from meseta.runtime.defaults import TASK_IMAGE
from meseta.runtime.etcd import EtcdStore
from meseta.testing.local import local_cluster
from meseta.testing.mesos import Json, Subscription, running_gateway, scalar, subscribe, task_info, url_of
from meseta.testing.waiting import wait_for
from tests.conftest import ETCD

pytestmark = pytest.mark.timeout(180)

INFO = {"name": "raw", "user": "root", "failover_timeout": 60}


def offers_of(event: Json) -> list[Json]:
    return list(event["offers"]["offers"]) if event.get("type") == "OFFERS" else []


def update_of(event: Json, task_id: str, state: str | None = None) -> bool:
    if event.get("type") != "UPDATE":
        return False
    status = event["update"]["status"]
    return bool(status["task_id"]["value"] == task_id and (state is None or status["state"] == state))


async def next_offer(sub: Subscription, start: int = 0, agent: str | None = None) -> Json:
    event = await sub.wait(
        lambda e: any(agent is None or o["agent_id"]["value"] == agent for o in offers_of(e)),
        30,
        "an offer",
        start,
    )
    return next(o for o in offers_of(event) if agent is None or o["agent_id"]["value"] == agent)


async def test_stream_framing_calls_and_failover(amqp_url: str, etcd_prefix: str) -> None:
    async with (
        local_cluster(amqp_url, etcd_prefix, agents=2) as cluster,
        running_gateway(
            amqp_url, etcd_prefix, heartbeat_interval=1.0, chunk_bytes=64, max_body_bytes=256 * 1024
        ) as gateway,
    ):
        base = url_of(gateway)
        async with aiohttp.ClientSession() as http:
            async with http.get(f"{base}/version") as response:
                assert (await response.json())["version"].startswith("1.")
            # Protobuf bodies are refused, plainly.
            async with http.post(
                f"{base}/api/v1/scheduler",
                data=b"\x08\x01",
                headers={"Content-Type": "application/x-protobuf"},
            ) as response:
                assert response.status == 415 and "application/json" in await response.text()

        sub = await subscribe(base, INFO)
        assert isinstance(sub, Subscription)
        assert sub.response.headers.get("Transfer-Encoding") == "chunked" and sub.stream_id
        subscribed = sub.events[0]
        assert subscribed["type"] == "SUBSCRIBED"
        assert subscribed["subscribed"]["heartbeat_interval_seconds"] == 1.0
        assert subscribed["subscribed"]["master_info"]["version"].startswith("1.")
        framework_id = sub.framework_id
        assert framework_id in cluster.master.cluster.frameworks

        offer = await next_offer(sub)
        assert offer["framework_id"]["value"] == framework_id and offer["hostname"].startswith("host-")
        assert scalar(offer, "cpus") == 2 and scalar(offer, "mem") == 1024
        ports = next(r for r in offer["resources"] if r["name"] == "ports")
        assert ports["type"] == "RANGES" and ports["ranges"]["range"][0]["begin"] > 0
        # Records are longer than the gateway's 64-byte chunks here: the stream reassembles them.
        assert sub.records_across_chunks > 0 and sub.chunks > len(sub.events)
        await sub.wait(lambda e: e["type"] == "HEARTBEAT", 5, "a HEARTBEAT")

        # Calls need the subscription's stream id, and only its framework's.
        async with aiohttp.ClientSession() as http:
            call = {"type": "REVIVE", "framework_id": {"value": framework_id}}
            async with http.post(f"{base}/api/v1/scheduler", json=call) as response:
                assert response.status == 400 and "Mesos-Stream-Id" in await response.text()
            other = await subscribe(base, {**INFO, "name": "other"})
            assert isinstance(other, Subscription)
            headers = {"Mesos-Stream-Id": other.stream_id}
            async with http.post(f"{base}/api/v1/scheduler", json=call, headers=headers) as response:
                assert response.status == 400 and "does not match" in await response.text()
            await other.call("TEARDOWN")

        # ACCEPT: one task that runs, one that cannot be translated (TASK_ERROR), on one offer.
        agent = offer["agent_id"]["value"]
        good = task_info("t-good", agent, "echo hello", TASK_IMAGE)
        bad = {
            **task_info("t-bad", agent, "true", TASK_IMAGE),
            "resources": [{"name": "bananas", "type": "SCALAR"}],
        }
        launch = {"type": "LAUNCH", "launch": {"task_infos": [good, bad]}}
        accept = {"offer_ids": [offer["id"]], "operations": [launch], "filters": {"refuse_seconds": 1}}
        assert (await sub.call("ACCEPT", accept)).status == 202
        error = await sub.wait(lambda e: update_of(e, "t-bad"), 10, "t-bad's update")
        status = error["update"]["status"]
        assert status["state"] == "TASK_ERROR" and status["reason"] == "REASON_TASK_INVALID"
        assert "bananas" in status["message"] and "uuid" not in status
        finished = await sub.wait(lambda e: update_of(e, "t-good", "TASK_FINISHED"), 60, "t-good finished")
        status = finished["update"]["status"]
        assert status["source"] == "SOURCE_EXECUTOR" and status["agent_id"]["value"] == agent
        # Acknowledged by uuid (each agent's update has one): the agent forgets the updates.
        held = next(a for a in cluster.agents if a.settings.agent_id == agent)
        assert held.updates.pending[framework_id] > 0
        for event in [e for e in sub.events if update_of(e, "t-good")]:
            ack = {k: event["update"]["status"][k] for k in ("agent_id", "task_id", "uuid")}
            assert (await sub.call("ACKNOWLEDGE", ack)).status == 202
        await wait_for(
            lambda: held.updates.pending[framework_id] == 0, 10, "the agent to forget acked updates"
        )
        bad_ack = {**ack, "uuid": "not base64!"}
        assert (await sub.call("ACKNOWLEDGE", bad_ack)).status == 400

        # An ACCEPT of an offer that is gone: 202, then TASK_LOST with REASON_INVALID_OFFERS.
        stale = {"offer_ids": [offer["id"]], "operations": [{"type": "LAUNCH", "launch": {"task_infos": [
            task_info("t-stale", agent, "true", TASK_IMAGE)]}}]}  # fmt: skip
        assert (await sub.call("ACCEPT", stale)).status == 202
        lost = await sub.wait(lambda e: update_of(e, "t-stale"), 10, "t-stale's update")
        assert lost["update"]["status"]["state"] == "TASK_LOST"
        assert lost["update"]["status"]["reason"] == "REASON_INVALID_OFFERS"
        unsupported = {"offer_ids": [offer["id"]], "operations": [{"type": "RESERVE"}]}
        response = await sub.call("ACCEPT", unsupported)
        assert response.status == 400
        # A body near the limit is read whole (it comes in many reads); one over it is 413; a malformed
        # credential is 401 even where none is asked for.
        padded = {"offer_ids": [offer["id"]], "filters": {"refuse_seconds": 1}, "padding": "x" * 250_000}
        assert (await sub.call("DECLINE", padded)).status == 202
        padded["padding"] = "x" * 300_000
        assert (await sub.call("DECLINE", padded)).status == 413
        async with aiohttp.ClientSession() as http:
            headers = {"Authorization": "Basic !!!"}
            body = {"type": "SUBSCRIBE", "subscribe": {"framework_info": INFO}}
            async with http.post(f"{base}/api/v1/scheduler", json=body, headers=headers) as response:
                assert response.status == 401
        # An id the wire contract refuses (too long): 400 with the reason, nothing sent to the master.
        response = await sub.call("DECLINE", {"offer_ids": [{"value": "o" * 5000}]})
        assert response.status == 400 and "offer_ids" in await response.text()

        # DECLINE with refuse_seconds: that agent is not offered again for 3 s. First every offer held is
        # given back (refuse_seconds 0), so the one declined is a fresh one: the cpus t-good freed were
        # offered at once (a filter refuses only what was declined), and that offer came before the mark.
        mark = len(sub.events)
        held = [o["id"] for e in sub.events for o in offers_of(e) if o["id"] != offer["id"]]
        if held:
            assert (
                await sub.call("DECLINE", {"offer_ids": held, "filters": {"refuse_seconds": 0}})
            ).status == 202
        declined = await next_offer(sub, mark)
        agent = declined["agent_id"]["value"]
        declined_at = time.monotonic()
        await sub.call("DECLINE", {"offer_ids": [declined["id"]], "filters": {"refuse_seconds": 3}})
        mark = len(sub.events)
        again = await sub.wait(
            lambda e: any(o["agent_id"]["value"] == agent for o in offers_of(e)), 20, "the agent again", mark
        )
        assert sub.arrived[sub.events.index(again)] - declined_at >= 2.9

        # A long task, then the framework's connection drops and it re-subscribes by id within its
        # failover timeout: same framework, the task still running, the old stream's id refused.
        offer = await next_offer(sub, len(sub.events))
        agent = offer["agent_id"]["value"]
        launch = {
            "type": "LAUNCH",
            "launch": {"task_infos": [task_info("t-long", agent, "sleep 600", TASK_IMAGE)]},
        }
        await sub.call("ACCEPT", {"offer_ids": [offer["id"]], "operations": [launch]})
        await sub.wait(lambda e: update_of(e, "t-long", "TASK_RUNNING"), 60, "t-long running")
        old_stream = sub.stream_id
        await sub.close()
        again_sub = await subscribe(base, INFO, framework_id=framework_id)
        assert isinstance(again_sub, Subscription)
        assert again_sub.framework_id == framework_id and again_sub.stream_id != old_stream
        async with aiohttp.ClientSession() as http:
            call = {"type": "REVIVE", "framework_id": {"value": framework_id}}
            headers = {"Mesos-Stream-Id": old_stream}
            async with http.post(f"{base}/api/v1/scheduler", json=call, headers=headers) as response:
                assert response.status == 400

        # RECONCILE: the running task by id, and one the master never heard of.
        reconcile = {"tasks": [{"task_id": {"value": "t-long"}}, {"task_id": {"value": "t-never"}}]}
        assert (await again_sub.call("RECONCILE", reconcile)).status == 202
        answer = await again_sub.wait(lambda e: update_of(e, "t-long"), 10, "t-long reconciled")
        assert answer["update"]["status"]["state"] == "TASK_RUNNING"
        assert answer["update"]["status"]["reason"] == "REASON_RECONCILIATION"
        never = await again_sub.wait(lambda e: update_of(e, "t-never"), 10, "t-never reconciled")
        assert never["update"]["status"]["state"] == "TASK_LOST"

        # TEARDOWN: the stream ends, the task is killed, the master forgets the framework.
        assert (await again_sub.call("TEARDOWN")).status == 202
        await again_sub.ended.wait()
        await wait_for(lambda: framework_id not in cluster.master.cluster.frameworks, 20, "the teardown")
        await again_sub.close()


async def test_standby_redirects_and_no_master_is_503(amqp_url: str, etcd_prefix: str) -> None:
    # No Meseta master runs: the leading gateway answers SUBSCRIBE 503 (pymesos retries).
    async with running_gateway(amqp_url, etcd_prefix, subscribe_timeout=1.0) as leader:
        refused = await subscribe(url_of(leader), INFO)
        assert isinstance(refused, aiohttp.ClientResponse) and refused.status == 503
        # A second gateway stands by and sends frameworks to the leader's URL.
        async with running_gateway(amqp_url, etcd_prefix, lead=False) as standby:
            assert not standby.leading.is_set()
            redirected = await subscribe(url_of(standby), INFO)
            assert isinstance(redirected, aiohttp.ClientResponse) and redirected.status == 307
            assert redirected.headers["Location"] == f"{url_of(leader)}/api/v1/scheduler"
    # A gateway that stands by while the leader it sees has no known URL says 503, not a bad redirect.
    store = EtcdStore(ETCD, etcd_prefix)
    await store.connect()
    try:
        lease = await store.client.lease(30)
        await store.client.put(store.key("gateway", "leader"), b"ghost", lease=lease)
        async with running_gateway(amqp_url, etcd_prefix, lead=False) as standby:
            refused = await subscribe(url_of(standby), INFO)
            assert isinstance(refused, aiohttp.ClientResponse) and refused.status == 503
        await store.client.revoke_lease(lease.id)
    finally:
        await store.close()
