"""One real offer cycle, end to end: allocator -> master -> framework -> master -> agent -> Docker."""

from __future__ import annotations

import asyncio

import docker
import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from meseta.agent.containerizer import LABEL_CLUSTER, LABEL_TASK
from meseta.sdk import wire
from meseta.testing.local import local_cluster, run_batch, short_task

pytestmark = pytest.mark.e2e


async def test_two_frameworks_run_all_tasks_in_real_containers(
    amqp_url: str, etcd_prefix: str, spans: InMemorySpanExporter
) -> None:
    async with local_cluster(amqp_url, etcd_prefix, agents=3) as cluster:
        alpha = await cluster.framework("alpha")
        beta = await cluster.framework("beta")
        runs = await asyncio.wait_for(
            asyncio.gather(
                run_batch(alpha, [short_task(f"a-{i}", cpus=0.5, mem=32) for i in range(20)]),
                run_batch(beta, [short_task(f"b-{i}", cpus=0.25, mem=48) for i in range(20)]),
            ),
            timeout=90,
        )
        for run in runs:
            assert run.states() == {"FINISHED": 20}, run.final
            assert all(s.exit_code == 0 for s in run.final.values())
        # Both frameworks were offered resources on more than one agent: the cluster was shared.
        assert len({o.agent_id for o in runs[0].offers}) > 1
        assert len({o.agent_id for o in runs[1].offers}) > 1

        # The containers really carried the tasks' limits.
        client = docker.from_env()
        containers = client.containers.list(all=True, filters={"label": f"{LABEL_CLUSTER}={cluster.name}"})
        assert len(containers) == 40
        by_task = {c.labels[LABEL_TASK]: c for c in containers}
        for task_id, cpus, mem in (("a-0", 0.5, 32), ("b-0", 0.25, 48)):
            host_config = by_task[task_id].attrs["HostConfig"]
            assert host_config["CpuQuota"] / host_config["CpuPeriod"] == cpus
            assert host_config["Memory"] == mem * 1024 * 1024
            assert by_task[task_id].attrs["State"]["ExitCode"] == 0
        client.close()

    # One task's offer cycle is one trace across the four parties.
    finished = spans.get_finished_spans()
    launch = next(s for s in finished if s.name == "agent launch" and s.attributes["meseta.task_id"] == "a-7")
    trace_spans = [s for s in finished if s.context.trace_id == launch.context.trace_id]
    scopes = {s.instrumentation_scope.name for s in trace_spans}
    assert {"meseta.allocator", "meseta.master", "meseta.framework", "meseta.agent"} <= scopes
    names = {s.name for s in trace_spans}
    assert {
        "allocator allocate",
        "master ALLOCATION",
        "framework decide",
        "master ACCEPT",
        "agent LAUNCH",
    } <= names
    decide = next(s for s in trace_spans if s.name == "framework decide")
    assert decide.attributes["meseta.decision"] == "accept"
    # Consumer spans follow OpenTelemetry's messaging conventions, with a link to the producer.
    for name, exchange, key in (
        ("master ACCEPT", wire.Exchange.CALLS, wire.RoutingKey.CALL),
        ("agent LAUNCH", wire.Exchange.LAUNCHES, launch.attributes["meseta.agent_id"]),
    ):
        consumer = next(s for s in trace_spans if s.name == name)
        assert consumer.attributes is not None and consumer.parent is not None
        assert consumer.attributes["messaging.system"] == "rabbitmq"
        assert consumer.attributes["messaging.destination.name"] == exchange
        assert consumer.attributes["messaging.rabbitmq.destination.routing_key"] == key
        assert consumer.attributes["messaging.operation.type"] == "process"
        assert consumer.attributes["messaging.message.id"]
        (link,) = consumer.links
        assert (link.context.trace_id, link.context.span_id) == (
            consumer.context.trace_id,
            consumer.parent.span_id,
        )
    # The first RUNNING status travels in the same trace, from the agent through the master to the framework.
    assert sum(1 for s in trace_spans if s.name == "framework UPDATE") >= 2
    root = next(s for s in trace_spans if s.parent is None)
    assert root.name == "allocator allocate"


async def test_declined_resources_are_offered_to_the_other_framework(amqp_url: str, etcd_prefix: str) -> None:
    async with local_cluster(amqp_url, etcd_prefix, agents=1) as cluster:
        first = await cluster.framework("first")
        first_events = first.events()
        offer = (await asyncio.wait_for(anext(first_events), 10)).offers[0]  # type: ignore[union-attr]
        assert offer.resources == cluster.agents[0].settings.resources

        second = await cluster.framework("second")
        await first.decline([offer.offer_id], refuse_seconds=60)
        event = await asyncio.wait_for(anext(second.events()), 10)
        assert isinstance(event, wire.Offers)
        (reoffer,) = event.offers
        assert reoffer.agent_id == offer.agent_id
        assert reoffer.resources == offer.resources
        assert reoffer.offer_id != offer.offer_id
        assert first.stats.offers_declined == 1
        assert cluster.master.cluster.frameworks[first.framework_id].stats.offers_declined == 1  # type: ignore[index]
