"""Status updates that travel in batches keep their own traces all the way to the framework."""

from __future__ import annotations

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from meseta.sdk import tracing, wire
from meseta.sdk.bus import Bus
from meseta.testing.local import local_cluster, next_event
from meseta.testing.waiting import wait_for

pytestmark = pytest.mark.e2e


async def test_a_batch_of_updates_reaches_the_framework_in_each_tasks_trace(
    amqp_url: str, etcd_prefix: str, spans: InMemorySpanExporter
) -> None:
    async with local_cluster(amqp_url, etcd_prefix, agents=1) as cluster:
        client = await cluster.framework("batched")
        agent_id = cluster.agents[0].agent_id
        tracer = tracing.tracer("test")
        updates, trace_ids = [], []
        for i in range(2):
            with tracer.start_as_current_span(
                f"task {i}", context=trace.set_span_in_context(trace.INVALID_SPAN)
            ):
                trace_ids.append(trace.get_current_span().get_span_context().trace_id)
                status = wire.TaskStatus(task_id=f"t{i}", state=wire.TaskState.RUNNING, agent_id=agent_id)
                updates.append(
                    wire.StatusUpdate(
                        agent_id=agent_id,
                        framework_id=client.framework_id or "",
                        status=status,
                        trace=tracing.inject({}),
                    )
                )
        bus = Bus(amqp_url, "agent")
        await bus.connect()
        try:
            batch = wire.StatusUpdates(agent_id=agent_id, updates=tuple(updates))
            await bus.publish(wire.Exchange.STATUS, wire.RoutingKey.STATUS, batch)
            got = [await next_event(client, wire.Update), await next_event(client, wire.Update)]
        finally:
            await bus.close()
        assert [u.status.task_id for u in got] == ["t0", "t1"]

        def traced(name: str) -> set[int]:
            return {s.context.trace_id for s in spans.get_finished_spans() if s.name == name}

        # Each status: its own span at the master and at the framework, in its own task's trace.
        await wait_for(lambda: set(trace_ids) <= traced("framework UPDATE"), 10, "the framework's spans")
        assert set(trace_ids) <= traced("master STATUS_UPDATE")
