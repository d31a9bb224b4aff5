"""Leases kept from a thread of their own: a busy leader keeps leading, a stuck one steps down."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest

from meseta.runtime.defaults import ETCD_ENDPOINT as ETCD
from meseta.runtime.etcd import EtcdStore
from meseta.runtime.leader import Leadership, LostLeadership
from meseta.sdk import wire
from meseta.testing.local import local_cluster, run_one, short_task
from meseta.testing.waiting import wait_for


@pytest.fixture
async def store(etcd_prefix: str) -> AsyncIterator[EtcdStore]:
    found = EtcdStore(ETCD, etcd_prefix)
    await found.connect()
    yield found
    await found.close()


def _hold_the_event_loop(seconds: float) -> None:
    """Run on the loop without yielding for ``seconds``: the loop is held, as by a long handler."""
    time.sleep(seconds)


async def _leader(store: EtcdStore, role: str) -> str | None:
    value = await store.client.get(store.key(role, "leader"))
    return value.value.decode() if value is not None else None


async def test_a_leader_whose_loop_is_busy_for_longer_than_the_ttl_keeps_its_lease(store: EtcdStore) -> None:
    leader = Leadership(store, "master", "busy", ttl=1, stall_limit=30)
    await leader.campaign()
    keeping = asyncio.create_task(leader.keep())
    await asyncio.sleep(0)  # let keep() start its keeper
    # Three TTLs of work that never yields (what a master's first round at 10,000 agents looked like):
    # before, the refreshes' replies waited behind it and the lease lapsed.
    _hold_the_event_loop(3)
    assert not keeping.done()
    assert await _leader(store, "master") == "busy"
    rival = Leadership(store, "master", "rival", ttl=1)
    assert not await rival._try_once()
    keeping.cancel()
    with pytest.raises(asyncio.CancelledError):
        await keeping
    await leader.resign()


async def test_a_leader_whose_loop_is_stuck_lets_its_lease_go(store: EtcdStore) -> None:
    leader = Leadership(store, "master", "stuck", ttl=1, stall_limit=1)
    await leader.campaign()
    keeping = asyncio.create_task(leader.keep())
    await asyncio.sleep(0)
    _hold_the_event_loop(3)  # stuck for longer than stall_limit + ttl: the keeper stopped refreshing
    with pytest.raises(LostLeadership, match="made no progress"):
        await asyncio.wait_for(keeping, 5)
    rival = Leadership(store, "master", "rival", ttl=1)
    assert await asyncio.wait_for(rival.campaign(), 10) > 0
    assert await _leader(store, "master") == "rival"
    await rival.resign()


async def test_several_etcd_endpoints_the_first_that_answers_is_used(amqp_url: str, etcd_prefix: str) -> None:
    # A member down at the start is passed over, by the store and by the lease's keeper.

    endpoints = f"127.0.0.1:1,{ETCD}"
    async with local_cluster(amqp_url, etcd_prefix, agents=1, etcd_endpoint=endpoints) as cluster:
        client = await cluster.framework("members")
        assert (await run_one(client, short_task("t1"))).state == wire.TaskState.FINISHED
        await wait_for(lambda: cluster.master.leadership.refreshed >= 8, 15, "lease refreshes")
        assert cluster.master.store.endpoint.port == 2379 and cluster.master._failure is None


async def test_an_epoch_is_the_revision_of_the_put_that_won(store: EtcdStore) -> None:
    # Made in the election's own transaction: it cannot be separated from winning (a counter bumped
    # after winning could), and it grows with every write to the etcd cluster, whoever wins.
    epochs = []
    for name in ("a", "b", "c"):
        candidate = Leadership(store, "epochs", name, ttl=1)
        epochs.append(await asyncio.wait_for(candidate.campaign(), 10))
        got = await store.client.get(candidate.key)
        assert got is not None and got.mod_revision == epochs[-1]
        await store.put_json({"unrelated": name}, "noise")  # other writes move the revision on
        await candidate.resign()
    assert epochs == sorted(epochs) and len(set(epochs)) == 3
    assert epochs[2] - epochs[1] >= 2  # the noise between them counted
