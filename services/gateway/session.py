"""One Mesos framework's subscription through the gateway: its SDK client and its event stream.

The session subscribes to Meseta as the framework (an SDK :class:`FrameworkClient`, so the gateway adds
one broker hop neither way: calls go from here to the master, events from the master to here) and turns
Meseta's events into Mesos's. It ends when the framework's HTTP stream closes, when the framework
re-subscribes on another stream (failover), or at TEARDOWN; the framework stays registered with the
master until its ``failover_timeout`` has passed without a new subscription.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections import OrderedDict
from dataclasses import dataclass, field

from meseta.gateway import translate
from meseta.gateway.translate import Json
from meseta.sdk import wire
from meseta.sdk.client import FrameworkClient

log = logging.getLogger(__name__)

QUEUE_LIMIT = 10_000
"""Events held for a slow framework; past it the stream is ended (the framework re-subscribes and
reconciles) rather than the gateway's memory growing without bound."""

ACCEPTS_KEPT = 1024
"""Recent ACCEPTs remembered to decline their offers if refused (a refusal comes within a round trip)."""

FORWARDED_ERRORS = frozenset({wire.ErrorCode.UNKNOWN_FRAMEWORK, wire.ErrorCode.UNAUTHORIZED})
"""Meseta errors that Mesos would send as ERROR (the framework is removed or not allowed). A refused
call is not one: Mesos answers a bad ACCEPT with TASK_LOST / TASK_ERROR updates only, which Meseta's
master sends as well, and a Mesos scheduler usually aborts on ERROR."""


@dataclass
class Session:
    """A subscribed framework, as the gateway holds it."""

    client: FrameworkClient
    principal: str
    role: str
    stream_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    events: asyncio.Queue[Json | None] = field(default_factory=lambda: asyncio.Queue(QUEUE_LIMIT))
    ended: bool = False
    accepts: OrderedDict[str, tuple[list[str], float]] = field(default_factory=OrderedDict)
    """ACCEPT calls not yet known valid, by message id: their offers and the unused part's filter."""
    _pump: asyncio.Task[None] | None = None

    @property
    def framework_id(self) -> str:
        assert self.client.framework_id is not None
        return self.client.framework_id

    def start(self) -> None:
        """Begin turning Meseta's events into Mesos's (after the client subscribed)."""
        self._pump = asyncio.create_task(self._forward(), name=f"gateway:{self.framework_id}")

    def accepted(self, message_id: str, offer_ids: list[str], refuse_seconds: float) -> None:
        """An ACCEPT was sent: should the master refuse it, its offers are declined (below)."""
        self.accepts[message_id] = (offer_ids, refuse_seconds)
        if len(self.accepts) > ACCEPTS_KEPT:
            self.accepts.popitem(last=False)

    def push(self, event: Json) -> None:
        """Queue an event for the framework's stream; a framework too slow to read ends its stream."""
        if self.ended:
            return
        try:
            self.events.put_nowait(event)
        except asyncio.QueueFull:
            log.warning("framework %s reads too slowly: ending its stream", self.framework_id)
            self._end_stream()

    def _end_stream(self) -> None:
        """Mark the stream's end (once): the stream writer stops there. A full queue loses its oldest
        event to make room: an end mark that could not be queued would leave the stream open."""
        if self.ended:
            return
        self.ended = True
        if self.events.full():
            self.events.get_nowait()
        self.events.put_nowait(None)

    async def end(self, last: Json | None = None) -> None:
        """Close the stream (after ``last``, if given) and the SDK client. Safe twice."""
        if last is not None:
            self.push(last)
        self._end_stream()
        if self._pump is not None and self._pump is not asyncio.current_task():
            self._pump.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._pump
        await self.client.close()

    async def _forward(self) -> None:
        async for event in self.client.events():
            match event:
                case wire.Offers():
                    offers = [translate.offer(o, self.role) for o in event.offers]
                    self.push(translate.event("OFFERS", {"offers": offers}))
                case wire.Rescind():
                    self.push(translate.event("RESCIND", {"offer_id": translate.wrap(event.offer_id)}))
                case wire.Update():
                    # The framework acknowledges (ACKNOWLEDGE) what has a uuid; the master's updates
                    # have none, as in Mesos.
                    self.push(translate.event("UPDATE", {"status": translate.status(event.status)}))
                case wire.Failure():
                    self.push(translate.event("FAILURE", {"agent_id": translate.wrap(event.agent_id)}))
                case wire.Error() if event.correlation_id in self.accepts:
                    # Mesos consumes an ACCEPT's offers whatever becomes of it, and a Mesos framework
                    # never names them again; Meseta's master leaves a refused ACCEPT's offers with the
                    # framework. Declined here, they go back to the pool at once, not at their expiry.
                    offer_ids, refuse = self.accepts.pop(event.correlation_id or "")
                    log.info(
                        "framework %s: ACCEPT refused (%s), its offers declined",
                        self.framework_id,
                        event.code,
                    )
                    await self.client.decline(offer_ids, refuse_seconds=refuse)
                case wire.Error() if event.code in FORWARDED_ERRORS:
                    self.push(translate.event("ERROR", {"message": f"{event.code}: {event.message}"}))
                case wire.Error():
                    log.info(
                        "framework %s: master refused a call (%s: %s); its tasks hear why in updates",
                        self.framework_id,
                        event.code,
                        event.message,
                    )
                case _:
                    # Revocation and drain notices have no Mesos event a v1 scheduler reads (inverse
                    # offers are not sent): their tasks' KILLED updates follow.
                    log.info("framework %s: %s not forwarded (no Mesos event)", self.framework_id, event.type)
        self._end_stream()
