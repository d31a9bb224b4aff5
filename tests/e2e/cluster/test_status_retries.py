"""At-least-once status updates: an agent resends what the framework has not acknowledged."""

from __future__ import annotations

import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from meseta.sdk import wire
from meseta.testing.local import local_cluster, next_event, short_task
from meseta.testing.waiting import wait_for

pytestmark = pytest.mark.e2e


async def test_unacknowledged_updates_are_resent_until_acknowledged(
    amqp_url: str, etcd_prefix: str, spans: InMemorySpanExporter
) -> None:
    async with local_cluster(amqp_url, etcd_prefix, agents=1, isolator="noop") as cluster:
        agent = cluster.agents[0]
        client = await cluster.framework("forgetful", auto_acknowledge=False)
        offer = (await next_event(client, wire.Offers)).offers[0]
        await client.accept([offer.offer_id], [short_task("t1")])
        statuses: list[wire.TaskStatus] = []
        while not statuses or not statuses[-1].state.terminal:
            statuses.append((await next_event(client, wire.Update)).status)
        states = [s.state for s in statuses]
        assert states == [wire.TaskState.STARTING, wire.TaskState.RUNNING, wire.TaskState.FINISHED]
        assert len(agent.unacknowledged) == 3

        # Nothing acknowledged: after the retry interval (1 s here, doubling) each comes again, twice;
        # the client hands the scheduler none of them twice and acknowledges none behind its back, so
        # the agent still holds all three (an SDK that acknowledged the first resends saw no second).
        await wait_for(lambda: client.stats.duplicate_updates >= 6, 20, "two rounds of resends")
        assert len(agent.unacknowledged) == 3
        assert agent.resent >= 6

        # The framework acknowledges: that ends the resending.
        for status in statuses:
            await client.acknowledge(status)
        await wait_for(lambda: not agent.unacknowledged, 15, "the acknowledged updates to be dropped")
        assert client.stats.duplicate_updates <= agent.resent

        # Resent, each update still reaches the master and the framework in its task's trace. The count
        # is read first: a resend handled later adds spans, never takes them away.
        duplicates = client.stats.duplicate_updates
        finished = spans.get_finished_spans()
        cycle = {s.context.trace_id for s in finished if s.name == "agent LAUNCH"}
        assert len(cycle) == 1
        reached = [s for s in finished if s.name in ("master STATUS_UPDATE", "framework UPDATE")]
        assert len(reached) >= 2 * (3 + duplicates)
        assert {s.context.trace_id for s in reached} == cycle
