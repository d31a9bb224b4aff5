"""Losing the etcd member a service talks to: a three-member etcd cluster of the test's own
(meseta.testing.replicas); the store moves to the next member, and a leader keeps its lease (its keeper
moves too), so it does not step down. Real etcd."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

import pytest

from meseta.runtime.etcd import EtcdStore
from meseta.runtime.leader import Leadership
from meseta.testing.replicas import etcd_cluster
from meseta.testing.waiting import wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.skipif(shutil.which("etcd") is None, reason="no etcd binary")]


async def test_the_store_and_the_lease_survive_losing_their_member(tmp_path: Path) -> None:
    async with etcd_cluster(tmp_path / "etcd") as members:
        store = EtcdStore(members.endpoints, "/members-test")
        await wait_for_connect(store)
        leadership = Leadership(store, "master", "candidate-1", ttl=4)
        epoch = await leadership.campaign()
        keeping = asyncio.create_task(leadership.keep())
        try:
            await store.put_json({"n": 1}, "doc")
            await wait_for(lambda: leadership.refreshed >= 3, 10, "lease refreshes")
            members.kill(members.members[0])  # the member both the store and the keeper use
            # The next operation moves the store to another member; the keeper moves after a failed refresh.
            assert await store.get_json("doc") == {"n": 1}
            assert store.endpoint.port != members.members[0].client_port
            before = leadership.refreshed
            await wait_for(lambda: leadership.refreshed >= before + 4, 15, "refreshes on another member")
            assert not keeping.done(), "the leader stepped down"
            got = await store.client.get(leadership.key)
            assert got is not None and got.value == b"candidate-1" and epoch > 0
        finally:
            keeping.cancel()
            await store.close()


async def wait_for_connect(store: EtcdStore) -> None:
    """A fresh cluster elects its leader first: connect once it answers (within 10 s)."""
    for _ in range(100):
        try:
            await store.connect()
            return
        except Exception:
            await asyncio.sleep(0.1)
    raise AssertionError("the etcd cluster did not answer")


async def test_epochs_only_grow_when_members_lose_their_data(tmp_path: Path) -> None:
    """Each member in turn loses its data and is replaced (removed, wiped, added back empty): the next
    leader, elected through the member just replaced, still gets a higher epoch than every one before.
    Epochs are revisions of the replicated log, which a wiped member gets back from the others."""
    async with etcd_cluster(tmp_path / "etcd") as members:
        epochs: list[int] = []
        replaced = None
        for round_, member in enumerate(members.members):
            store = EtcdStore(replaced.endpoint if replaced else members.endpoints, "/wipe-test")
            await wait_for_connect(store)
            leadership = Leadership(store, "master", f"candidate-{round_}", ttl=4)
            epochs.append(await leadership.campaign())
            await leadership.resign()  # a graceful stop: the next one need not wait for the TTL
            await store.close()
            await members.replace(member)
            replaced = member
        # And once more, through the last member replaced (every member's data has been wiped once).
        store = EtcdStore(members.members[-1].endpoint, "/wipe-test")
        await wait_for_connect(store)
        epochs.append(await Leadership(store, "master", "candidate-last", ttl=4).campaign())
        await store.close()
        assert epochs == sorted(set(epochs)), f"an epoch went backwards or repeated: {epochs}"
