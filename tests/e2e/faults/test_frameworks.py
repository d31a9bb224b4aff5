"""Framework failover, secrets and reconciliation on real services."""

from __future__ import annotations

import pytest

from meseta.runtime.defaults import ETCD_ENDPOINT as ETCD
from meseta.runtime.etcd import EtcdStore
from meseta.sdk import FrameworkClient, SubscribeError, wire
from meseta.testing.local import Cluster, local_cluster, next_event, short_task
from meseta.testing.waiting import wait_for

pytestmark = pytest.mark.e2e

FOREVER = "while true; do sleep 0.1; done"


async def launch(client: FrameworkClient, *tasks: wire.TaskInfo) -> None:
    """Accept the next offer with ``tasks`` and wait until all of them run."""
    offer = (await next_event(client, wire.Offers)).offers[0]
    await client.accept([offer.offer_id], tasks)
    running: set[str] = set()
    while running != {t.task_id for t in tasks}:
        update = await next_event(client, wire.Update)
        if update.status.state == wire.TaskState.RUNNING:
            running.add(update.status.task_id)


def disconnected(cluster: Cluster, framework_id: str) -> bool:
    fw = cluster.master.cluster.frameworks.get(framework_id)
    return fw is not None and fw.disconnected_at is not None


async def test_a_framework_that_comes_back_in_time_keeps_its_tasks_and_updates(
    amqp_url: str, etcd_prefix: str
) -> None:
    async with local_cluster(amqp_url, etcd_prefix, agents=1) as cluster:
        first = FrameworkClient(amqp_url, "durable", failover_timeout=30)
        await first.subscribe()
        await launch(first, short_task("svc", script=FOREVER), short_task("short", script="sleep 2"))
        framework_id, secret = first.framework_id or "", first.secret
        await first.close()  # the scheduler dies
        await wait_for(lambda: disconnected(cluster, framework_id), 10, "the master to notice")
        # While it is away, 'short' finishes: the update waits in the framework's queue.
        await wait_for(
            lambda: "short" not in {t for _, t in cluster.master.cluster.tasks}, 15, "short to end"
        )

        again = FrameworkClient(
            amqp_url, "durable", framework_id=framework_id, secret=secret, failover_timeout=30
        )
        assert await again.subscribe() == framework_id
        cluster.frameworks.append(again)
        update = await next_event(again, wire.Update)
        while update.status.task_id != "short" or not update.status.state.terminal:
            update = await next_event(again, wire.Update)
        assert update.status.state == wire.TaskState.FINISHED
        assert not disconnected(cluster, framework_id)
        await again.reconcile(["svc"])
        answer = await next_event(again, wire.Update)
        while answer.status.reason != wire.StatusReason.RECONCILIATION:
            answer = await next_event(again, wire.Update)
        assert (answer.status.task_id, answer.status.state) == ("svc", wire.TaskState.RUNNING)


async def test_a_framework_that_stays_away_loses_its_tasks(amqp_url: str, etcd_prefix: str) -> None:
    async with local_cluster(amqp_url, etcd_prefix, agents=1) as cluster:
        gone = FrameworkClient(amqp_url, "flaky", failover_timeout=1)
        await gone.subscribe()
        await launch(gone, short_task("orphan", script=FOREVER))
        framework_id, secret = gone.framework_id or "", gone.secret
        await gone.close()
        await wait_for(lambda: framework_id not in cluster.master.cluster.frameworks, 15, "its removal")
        await wait_for(lambda: not cluster.agents[0].tasks, 15, "its task to be killed")
        store = EtcdStore(ETCD, etcd_prefix)
        await store.connect()
        assert await store.get_json("frameworks", framework_id) is None
        await store.close()
        late = FrameworkClient(amqp_url, "flaky", framework_id=framework_id, secret=secret)
        with pytest.raises(SubscribeError, match="UNKNOWN_FRAMEWORK"):
            await late.subscribe(timeout=5)
        await late.close()


async def test_calls_with_another_id_or_a_wrong_secret_are_refused(amqp_url: str, etcd_prefix: str) -> None:
    async with local_cluster(amqp_url, etcd_prefix, agents=1) as cluster:
        victim = await cluster.framework("victim")
        await launch(victim, short_task("precious", script=FOREVER))
        impostor = await cluster.framework("impostor")
        impostor.framework_id = victim.framework_id  # it claims to be the victim, with its own secret
        await impostor.kill("precious")
        error = await next_event(impostor, wire.Error)
        assert error.code == wire.ErrorCode.UNAUTHORIZED
        stolen = FrameworkClient(amqp_url, "thief", framework_id=victim.framework_id, secret="guessed")
        with pytest.raises(SubscribeError, match="UNAUTHORIZED"):
            await stolen.subscribe(timeout=5)
        await stolen.close()
        # Nothing changed: the task runs, and the victim heard of no error.
        await victim.reconcile()
        answer = await next_event(victim, wire.Update)
        assert (answer.status.task_id, answer.status.state) == ("precious", wire.TaskState.RUNNING)
        assert victim.stats.errors == 0
        assert cluster.agents[0].tasks


async def test_reconciliation_explicit_and_implicit(amqp_url: str, etcd_prefix: str) -> None:
    async with local_cluster(amqp_url, etcd_prefix, agents=1) as cluster:
        client = await cluster.framework("careful")
        await launch(client, short_task("alive", script=FOREVER))
        await client.reconcile(["alive", "never-was"])
        answers = {}
        while len(answers) < 2:
            update = await next_event(client, wire.Update)
            if update.status.reason == wire.StatusReason.RECONCILIATION:
                answers[update.status.task_id] = update.status.state
        assert answers == {"alive": wire.TaskState.RUNNING, "never-was": wire.TaskState.LOST}
        await client.reconcile()
        update = await next_event(client, wire.Update)
        assert (update.status.task_id, update.status.reason) == ("alive", wire.StatusReason.RECONCILIATION)
        assert len(cluster.master.cluster.tasks) == 1
