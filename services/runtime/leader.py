"""Leader election through etcd: a lease with a TTL, and a transaction on the leader key.

A candidate puts ``<prefix>/<role>/leader`` only if the key does not exist, attached to its lease; the key
vanishes when the lease expires (the leader died) or is revoked. The winner claims a new **epoch** (the
fencing token every message it sends carries). While leading it refreshes the lease every third of the
TTL; when it cannot, it steps down *before* the lease can expire on the server, so two leaders never act
at once.
"""

from __future__ import annotations

import asyncio
import logging
import time

from meseta.runtime.etcd import EtcdStore

log = logging.getLogger(__name__)

DEFAULT_TTL = 1
"""Seconds; etcd's floor is 1.5 election timeouts (1 s with ``--election-timeout 500``)."""


class LostLeadership(Exception):
    """The lease could not be kept: stop acting as leader now."""


class Leadership:
    """One candidate for one role (``master`` or ``allocator``).

    Args:
        store: the cluster's etcd store.
        role: what is being led.
        candidate: this candidate's name (stored as the key's value, for operators).
        ttl: lease TTL in whole seconds.
        poll: seconds between attempts while another candidate leads.
    """

    def __init__(
        self, store: EtcdStore, role: str, candidate: str, ttl: int = DEFAULT_TTL, poll: float = 0.1
    ) -> None:
        self.store = store
        self.role = role
        self.candidate = candidate
        self.ttl = ttl
        self.poll = poll
        self.lease_id: int | None = None
        self.epoch = 0

    @property
    def key(self) -> bytes:
        return self.store.key(self.role, "leader")

    async def campaign(self) -> int:
        """Wait until this candidate leads; return its new epoch."""
        while True:
            try:
                if await self._try_once():
                    log.info("%s leads %s with epoch %d", self.candidate, self.role, self.epoch)
                    return self.epoch
            except Exception as exc:  # etcd down or restarting: a candidate waits, it does not give up
                log.warning("campaign for %s: etcd unavailable (%s); retrying", self.role, exc)
                await asyncio.sleep(max(self.poll, 0.5))
                continue
            await asyncio.sleep(self.poll)

    async def _try_once(self) -> bool:
        client = self.store.client
        tx = client.transactions
        lease = await client.lease(self.ttl)
        won, _ = await client.transaction(
            compare=[tx.version(self.key) == 0],
            success=[tx.put(self.key, self.candidate.encode(), lease.id)],
            failure=[],
        )
        if not won:
            await client.revoke_lease(lease.id)
            return False
        self.lease_id = lease.id
        self.epoch = await self.store.increment(self.role, "epoch")
        return True

    async def keep(self) -> None:
        """Refresh the lease while leading; raise :class:`LostLeadership` as soon as it cannot be kept.

        The server's lease runs ``ttl`` from when it processed the last refresh, which is no earlier than
        when that refresh was sent. Stepping down once 2/3 of the TTL has passed since the last successful
        refresh was *sent* is therefore always before any other candidate can win. Each refresh may use
        whatever is left of that window, so a slow (loaded) etcd is not mistaken for a lost one.
        """
        assert self.lease_id is not None
        window = 2 * self.ttl / 3
        sent_ok = time.monotonic()
        while True:
            await asyncio.sleep(self.ttl / 4)
            sent = time.monotonic()
            left = window - (sent - sent_ok)
            try:
                if left <= 0:
                    raise TimeoutError("no refresh succeeded in time")
                async with asyncio.timeout(left):
                    reply = await self.store.client.refresh_lease(self.lease_id)
                if reply is None or reply.TTL <= 0:
                    raise LostLeadership(f"the {self.role} lease is gone (revoked or expired)")
                sent_ok = sent
            except LostLeadership:
                raise
            except Exception as exc:  # etcd unreachable or slow: keep trying while the lease surely holds
                if time.monotonic() - sent_ok >= window:
                    raise LostLeadership(
                        f"etcd unreachable for {time.monotonic() - sent_ok:.2f} s: {exc}"
                    ) from exc
                log.warning("refreshing the %s lease failed: %s", self.role, exc)

    async def resign(self) -> None:
        """Give the role up at once (a graceful stop): a standby takes over without waiting for the TTL."""
        if self.lease_id is not None:
            try:
                await self.store.client.revoke_lease(self.lease_id)
            except Exception as exc:
                log.warning("could not revoke the %s lease: %s", self.role, exc)
            self.lease_id = None

    async def leader(self) -> str | None:
        """Who leads now, if anyone."""
        got = await self.store.client.get(self.key)
        return None if got is None else bytes(got.value).decode()
