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
