"""Leader election through etcd: a lease with a TTL, and a transaction on the leader key.

A candidate puts ``<prefix>/<role>/leader`` only if the key does not exist, attached to its lease; the key
vanishes when the lease expires (the leader died) or is revoked. The winner's **epoch** (the fencing token
every message it sends carries) is etcd's revision of that put: it only grows, across every member. While
leading it refreshes the lease every quarter of the TTL, from a thread of its own; when it cannot, it
steps down *before* the lease can expire on the server, so two leaders never act at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import threading
import time
from collections.abc import Callable

from meseta.runtime.etcd import EtcdStore
from meseta.sdk import eventloop

log = logging.getLogger(__name__)

DEFAULT_TTL = 1
"""Seconds; etcd's floor is 1.5 election timeouts (1 s with ``--election-timeout 500``)."""


DEFAULT_STALL_LIMIT = 30.0
"""Seconds without any progress of a leader's event loop after which it lets its lease go."""


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
        stall_limit: seconds the service's event loop may make no progress at all before the lease is
            let go (a busy loop still makes progress; a stuck one does not).
    """

    def __init__(
        self,
        store: EtcdStore,
        role: str,
        candidate: str,
        ttl: int = DEFAULT_TTL,
        poll: float = 0.1,
        stall_limit: float = DEFAULT_STALL_LIMIT,
    ) -> None:
        self.store = store
        self.role = role
        self.candidate = candidate
        self.ttl = ttl
        self.poll = poll
        self.stall_limit = stall_limit
        self.lease_id: int | None = None
        self.epoch = 0
        self._keeper: _Keeper | None = None

    @property
    def refreshed(self) -> int:
        """Lease refreshes that succeeded while leading (0 before)."""
        return 0 if self._keeper is None else self._keeper.refreshed

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
                with contextlib.suppress(Exception):
                    await self.store.failover()  # another member, where there are several
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
        # The epoch is etcd's revision of the very put that won: made in the election's transaction,
        # unique and increasing across the whole etcd cluster, kept by every member that has the data
        # (a counter key, read and bumped after winning, was a second write a failover could separate
        # from the first).
        got = await client.get(self.key)
        if got is None or got.value != self.candidate.encode():
            await client.revoke_lease(lease.id)
            self.lease_id = None
            return False  # lost again at once (the lease lapsed): campaign on
        self.epoch = int(got.mod_revision)
        return True

    async def keep(self) -> None:
        """Keep the lease while leading; raise :class:`LostLeadership` as soon as it cannot be kept.

        The refreshes run in a thread with its own event loop and etcd connection (:class:`_Keeper`): a
        master handling the first offers to 10,000 agents has seconds of work queued on its loop, and a
        refresh's reply waiting behind it lost the lease of a service that was busy, not dead. This loop
        only shows the keeper it is alive; a loop that stalls for ``stall_limit`` gets no more refreshes.
        """
        assert self.lease_id is not None
        loop = asyncio.get_running_loop()
        lost: asyncio.Future[None] = loop.create_future()

        def report(exc: LostLeadership) -> None:  # called from the keeper's thread
            def fail() -> None:
                if not lost.done():
                    lost.set_exception(exc)

            with contextlib.suppress(RuntimeError):  # the loop closed: nobody left to tell
                loop.call_soon_threadsafe(fail)

        keeper = self._keeper = _Keeper(self, self.lease_id, report)
        keeper.start()
        try:
            while True:
                keeper.tick()
                await asyncio.wait({lost}, timeout=self.ttl / 8)
                if lost.done():
                    lost.result()
        finally:
            keeper.stop()
            await asyncio.to_thread(keeper.join, 5)

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

    async def advertise(self, url: str) -> None:
        """Say where this candidate serves (``<prefix>/<role>/api/<candidate>``): a standby sends
        callers to the leader's URL (307)."""
        await self.store.put_json({"url": url}, self.role, "api", self.candidate)

    async def withdraw(self) -> None:
        await self.store.delete(self.role, "api", self.candidate)

    async def leader_url(self) -> str | None:
        """The leader's URL, as it advertised it (None: nobody leads, or the leader serves none)."""
        name = await self.leader()
        found = None if name is None else await self.store.get_json(self.role, "api", name)
        url = found.get("url") if isinstance(found, dict) else None
        return url if isinstance(url, str) else None


def service_url(host: str, port: int, advertise: str | None) -> str:
    """A service's HTTP URL as others reach it: ``advertise`` where given, else this host's name in place
    of a wildcard address."""
    if advertise is not None:
        return advertise
    return f"http://{socket.gethostname() if host in ('0.0.0.0', '::', '') else host}:{port}"


class _Keeper(threading.Thread):
    """Refreshes one lease from its own thread and event loop, while the service's loop ticks.

    The server's lease runs ``ttl`` from when it processed the last refresh, which is no earlier than
    when that refresh was sent. Stepping down once 2/3 of the TTL has passed since the last successful
    refresh was *sent* is therefore always before any other candidate can win. Each refresh may use
    whatever is left of that window, so a slow (loaded) etcd is not mistaken for a lost one.
    """

    def __init__(
        self, leadership: Leadership, lease_id: int, report: Callable[[LostLeadership], None]
    ) -> None:
        super().__init__(name=f"lease-{leadership.role}", daemon=True)
        self.role = leadership.role
        self.ttl = leadership.ttl
        self.stall_limit = leadership.stall_limit
        store = leadership.store
        # The member the store uses first, then the others: a lease lives in the cluster, not a member.
        start = store.endpoints.index(store.endpoint)
        self.endpoints = [*store.endpoints[start:], *store.endpoints[:start]]
        self.refreshed = 0
        """Refreshes that succeeded (read by tests and operators)."""
        self.lease_id = lease_id
        self.report = report
        self.beat = time.monotonic()
        self._stopping = threading.Event()

    def tick(self) -> None:
        """The service's event loop is alive."""
        self.beat = time.monotonic()

    def stop(self) -> None:
        self._stopping.set()

    def run(self) -> None:
        eventloop.run(self._keep())

    async def _keep(self) -> None:
        # Its own client (this thread's loop), over TLS and with the user where the endpoint says so.
        self._client = self.endpoints[0].client(timeout=5)
        try:
            await self._refresh_until_lost()
        except LostLeadership as exc:
            if not self._stopping.is_set():
                self.report(exc)
        finally:
            with contextlib.suppress(Exception):
                await self._client.close()

    async def _next_member(self) -> None:
        """After a failed refresh: the next member, in case the one in use is the one that failed."""
        if len(self.endpoints) == 1:
            return
        with contextlib.suppress(Exception):
            await self._client.close()
        self.endpoints = [*self.endpoints[1:], self.endpoints[0]]
        self._client = self.endpoints[0].client(timeout=5)

    async def _refresh_until_lost(self) -> None:
        window = 2 * self.ttl / 3
        # One try's share of the window: a member that is gone, or a cluster electing a new leader, holds
        # a refresh until it times out, and the window must leave room to try another member after it
        # (with the whole window for one try, losing etcd's leader deposed the master: BENCHMARKS item 28).
        # With one member there is nothing else to try: a slow reply (etcd's fsync on a loaded 2-core CI
        # machine) cut short at a quarter of the window lost a 1 s lease that a whole-window wait kept.
        attempt = max(window / 4, 0.2) if len(self.endpoints) > 1 else window
        sent_ok = time.monotonic()
        failed = False
        while not self._stopping.is_set():
            await asyncio.sleep(0.05 if failed else self.ttl / 4)
            sent = time.monotonic()
            if sent - self.beat > self.stall_limit:
                # Busy is fine, stuck is not: let the lease lapse so that a standby takes over.
                raise LostLeadership(
                    f"the {self.role}'s event loop made no progress for {sent - self.beat:.1f} s"
                )
            left = window - (sent - sent_ok)
            try:
                if left <= 0:
                    raise TimeoutError("no refresh succeeded in time")
                async with asyncio.timeout(min(left, attempt)):
                    reply = await self._client.refresh_lease(self.lease_id)
                if reply is None or reply.TTL <= 0:
                    raise LostLeadership(f"the {self.role} lease is gone (revoked or expired)")
                sent_ok = sent
                failed = False
                self.refreshed += 1
            except LostLeadership:
                raise
            except Exception as exc:  # etcd unreachable or slow: keep trying while the lease surely holds
                if time.monotonic() - sent_ok >= window:
                    raise LostLeadership(
                        f"etcd unreachable for {time.monotonic() - sent_ok:.2f} s: {exc!r}"
                    ) from exc
                log.warning("refreshing the %s lease failed: %r", self.role, exc)
                failed = True
                await self._next_member()
