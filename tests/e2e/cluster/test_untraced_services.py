"""Services that export no span make none, and pass every trace through whole."""

from __future__ import annotations

import asyncio

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from meseta.sdk import tracing
from meseta.testing.local import local_cluster, run_batch, short_task

pytestmark = pytest.mark.e2e


async def test_a_frameworks_trace_passes_through_services_that_make_no_span(
    amqp_url: str, etcd_prefix: str, spans: InMemorySpanExporter, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The allocator, the master and the agents trace as `--trace-exporter none` has them do; the framework
    # records its spans.
    made = tracing.tracer

    def tracer(service: str) -> trace.Tracer:
        return made(service) if service == "framework" else trace.NoOpTracer()

    monkeypatch.setattr(tracing, "tracer", tracer)
    async with local_cluster(amqp_url, etcd_prefix, agents=2) as cluster:
        client = await cluster.framework("traced")
        run = await asyncio.wait_for(run_batch(client, [short_task(f"t-{i}") for i in range(6)]), 90)
        assert run.states() == {"FINISHED": 6}, run.final

    finished = spans.get_finished_spans()
    assert {s.instrumentation_scope.name for s in finished} == {"meseta.framework"}
    accepted = {
        s.context.span_id: s
        for s in finished
        if s.name == "framework decide" and s.attributes and s.attributes["meseta.decision"] == "accept"
    }
    updates = [s for s in finished if s.name == "framework UPDATE"]
    # STARTING, RUNNING and FINISHED of each task (a task too quick to be seen RUNNING has no RUNNING).
    assert len(updates) >= 12
    for update in updates:
        # Each came in the trace of the decision that launched its task, as its child: the master and the
        # agent passed the decision's context on, and the master forwarded the agent's with the update.
        assert update.parent is not None and update.parent.span_id in accepted, update
        assert update.context.trace_id == accepted[update.parent.span_id].context.trace_id
