"""The message bus: one aio-pika connection, the topology, traced publishing and safe consuming.

Every consumer decodes against its :class:`~meseta.sdk.wire.Channel`; whatever cannot be decoded, or
makes its handler raise, is republished to the dead-letter exchange with the reason in a header and
logged. A bad message never stops a consumer.

Over 400 lines, on purpose: publishing and consuming share one connection's state and one rule, that a
handled message is acknowledged only once the publishes its handler made are confirmed (``_Deferred``);
split in two, each half would reach into the other's. What is not that rule lives elsewhere: the packed
publish in :mod:`._frames` and :mod:`._fastpath`, eager starts in :mod:`._eager`, batching in
:mod:`.batching`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Collection
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any, cast
from urllib.parse import unquote, urlsplit

import aio_pika
import aiormq
import aiormq.exceptions
from aio_pika.abc import (
    AbstractIncomingMessage,
    AbstractQueue,
    AbstractRobustChannel,
    AbstractRobustConnection,
    ExchangeType,
)
from opentelemetry import context as otel_context
from opentelemetry import trace
from pamqp.common import FieldTable

from meseta.sdk import _eager, _fastpath, _frames, tracing, wire
from meseta.sdk._nodes import connect_nodes, split_urls
from meseta.sdk.histogram import Histogram

log = logging.getLogger(__name__)

Handler = Callable[[wire.Message, AbstractIncomingMessage], Awaitable[None]]
InvalidHandler = Callable[[bytes, str, AbstractIncomingMessage], Awaitable[None]]
"""Told about a message that failed to decode (after it was dead-lettered): body, reason, message."""
Authorize = Callable[[wire.Message, str | None], str | None]
"""Whether a decoded message's sender (its broker-checked ``user_id``) may send it: None if so, else why
not (the message is dead-lettered with that reason)."""

DEFAULT_PREFETCH = 256
PUBLISH_PATIENCE = 60.0
"""Seconds a publish waits for a lost broker connection to come back before it gives up."""
CANCEL_PATIENCE = 5.0
"""Seconds a stopping consumer waits for the broker to confirm its cancellation."""
RESEND_PATIENCE = 5.0
"""Seconds one resend waits for the broker's confirm before it is sent again."""
DEFAULT_RECONNECT_INTERVAL = 5.0
"""aio_pika's seconds between a robust connection's tries, where the connection does not say."""
NACKS_BEFORE_NEW_CHANNEL = 5
"""Refusals of one publish in a row after which it is tried on a new channel (see _renew_publish_channel)."""
TRANSPORT_ERRORS: tuple[type[BaseException], ...] = (
    aiormq.exceptions.AMQPError,
    aiormq.exceptions.ChannelInvalidStateError,
    ConnectionError,
)


@dataclass
class _Deferred:
    """Publishes made while a consumed message is being handled: sent without waiting for each confirm.

    The message is acknowledged once every one of them is confirmed, so nothing is lost if the broker
    fails in between (it is redelivered), while the consumer goes on to the next message. A handler
    that awaited each confirm in turn would be held to one broker round trip per publish.
    """

    open: bool = True
    sends: list[asyncio.Future[None]] = field(default_factory=list)


_DEFERRED: ContextVar[_Deferred | None] = ContextVar("meseta_deferred_publishes", default=None)


class BusClosed(RuntimeError):
    """A publish on a bus already closed: it could never be sent (the robust channel waits for ever)."""


class Oversized(ValueError):
    """A message larger than any receiver reads (``wire.MAX_MESSAGE_BYTES``), refused before it is sent:
    the broker closes the channel of a publish over its own bound, which took the sender's channel down
    with it (a master's 2.9 MB state sync stopped the master)."""


def is_transport_error(exc: BaseException) -> bool:
    """The broker link failed (not the message, not the handler): retry rather than give up on it.

    aiormq cancels in-flight operations when the connection drops; that is told apart from a real
    cancellation of the current task, which must propagate.
    """
    if isinstance(exc, TRANSPORT_ERRORS):
        return True
    task = asyncio.current_task()
    return isinstance(exc, asyncio.CancelledError) and task is not None and not task.cancelling()


_DEDUPE_WINDOW = 10_000  # message ids remembered per consumer, so a redelivery is handled once


class Bus:
    """A service's link to RabbitMQ.

    Args:
        url: AMQP URL, vhost included; several, comma-separated, for a RabbitMQ cluster's nodes (tried in
            order, and moved between as they fail: meseta.sdk._nodes).
        service: the service name, used for its tracer and in dead-letter headers.
        declare_topology: declare the exchanges, the dead-letter queue and its own queues, or only check
            that they exist (``meseta users provision`` and the master declare them). By default, the
            master and any user that is not a Meseta principal (``guest`` in development) declare; every
            other principal has no configure permission, so it checks.
    """

    def __init__(
        self, url: str, service: str, *, declare_topology: bool | None = None, queue_type: str | None = None
    ) -> None:
        self.url = url
        self.urls = split_urls(url)
        self.service = service
        self.user = user_of(self.urls[0])
        """The broker user this bus logs in as, stamped as ``user_id`` on everything it publishes."""
        self.identity = wire.identify(self.user)
        """What the user name says of this bus's principal (None: ``guest``, a development cluster)."""
        if declare_topology is None:
            declare_topology = self.identity is None or self.identity.kind == "master"
        self.declare_topology = declare_topology
        self.queue_type = queue_type or default_queue_type(len(self.urls))
        """What :meth:`declare_queue` makes of a queue asked for ``replicated``: ``quorum`` or ``classic``."""
        if self.queue_type not in wire.QUEUE_TYPES:
            raise ValueError(f"queue type {self.queue_type!r}: one of {wire.QUEUE_TYPES}")
        self._tracer = tracing.tracer(service)
        self._connection: AbstractRobustConnection | None = None
        self._publish_channel: AbstractRobustChannel | None = None
        self._consume_channel: AbstractRobustChannel | None = None
        self._probe_channel: AbstractRobustChannel | None = None
        """Where :meth:`_declarable` tries declarations: one channel for all of them, replaced only after
        a refusal (which closes it). A channel opened and closed per queue cost the broker a third of an
        agent's start (3,000 agents' queues set up at 135 a second so, against 202 without)."""
        self._probe_lock = asyncio.Lock()
        """One declaration tried at a time: a refusal closes the channel under every try on it, and a
        try failed so would be taken for a refusal of its own queue."""
        self._exchanges: dict[str, aio_pika.abc.AbstractExchange] = {}
        self._consumers: list[asyncio.Task[None]] = []
        self._acking: set[asyncio.Task[None]] = set()
        self._background: set[asyncio.Future[None]] = set()
        self.dead_lettered = 0
        self.refused = 0
        """Messages dead-lettered because their sender may not send them (see ``consume``)."""
        self.epoch: int | None = None
        """This service's leadership epoch, stamped on everything it publishes (None: not a leader)."""
        self.epochs_accepted: list[int] = []
        """Each new epoch a fenced consumer accepted, in order (for operators and tests)."""
        self.fenced = 0
        self.reconnects = 0
        """How often the robust connection came back after losing the broker."""
        self.publish_latency = Histogram()
        """Seconds from each publish to the broker's confirm (resends included)."""
        self._closed = False
        self._resending = 0
        """Publishes waiting to be resent after the link failed; new ones queue behind them."""
        self._resend_order = asyncio.Lock()
        self._slow = 0
        """Publishes through the client's own path not yet confirmed: later ones go that way too."""
        self.fast_path = _fastpath.Verdict(False, "not connected")
        """Whether publishes take the packed path (meseta.sdk._fastpath), and why not."""

    async def connect(self) -> None:
        """Connect and declare the shared topology."""
        self._closed = False
        properties: FieldTable = {"connection_name": self.service}
        connection: AbstractRobustConnection
        if len(self.urls) == 1:
            connection = await aio_pika.connect_robust(self.urls[0], client_properties=properties)
        else:
            connection = await connect_nodes(self.urls, client_properties=properties)
        self._connection = connection
        connection.reconnect_callbacks.add(self._on_reconnect)
        self._publish_channel = await self._connection.channel(publisher_confirms=True)
        self.fast_path = _fastpath.check(await self._publish_channel.get_underlay_channel())
        _fastpath.say_once(self.service, self.fast_path)
        self._consume_channel = await self._connection.channel()
        await self._consume_channel.set_qos(prefetch_count=DEFAULT_PREFETCH)
        await self._declare_exchanges()

    @property
    def reconnect_interval(self) -> float:
        """Seconds between the robust connection's tries: those who lost the broker with this service
        come back up to this long after it does."""
        interval = getattr(self._connection, "reconnect_interval", None)
        return float(interval) if isinstance(interval, int | float) else DEFAULT_RECONNECT_INTERVAL

    @property
    def connected(self) -> bool:
        """Whether the connection to the broker is up now."""
        connection = self._connection
        return connection is not None and not self._closed and bool(connection.connected.is_set())

    def _on_reconnect(self, *_: object) -> None:
        self.reconnects += 1
        log.warning("%s: reconnected to the broker (%d times)", self.service, self.reconnects)

    async def _declare_exchanges(self) -> None:
        assert self._publish_channel is not None
        for name in wire.Exchange:
            kind = ExchangeType.FANOUT if name is wire.Exchange.DEAD_LETTER else ExchangeType.DIRECT
            try:
                self._exchanges[name] = await self._publish_channel.declare_exchange(
                    name, kind, durable=True, passive=not self.declare_topology
                )
            except aiormq.exceptions.ChannelNotFoundEntity as exc:
                raise RuntimeError(
                    f"{self.service}: exchange {name} does not exist: run `meseta users provision` "
                    "(or start a master) first"
                ) from exc
        if self.declare_topology:
            await self._declare_dead_letters()

    async def _declare_dead_letters(self) -> None:
        """The dead-letter queue, bounded (a flood of bad messages grew it to 249 MB), and a quorum queue
        on a cluster (a classic one went down with its node, and the vhost could not be deleted while
        it was down). On a channel of its own: where an older Meseta declared the queue otherwise, the
        broker refuses the declaration and closes the channel it came on; the service goes on, and says
        how to declare it again."""
        assert self._connection is not None
        channel = await self._connection.channel()
        try:
            queue = await channel.declare_queue(
                wire.Queue.DEAD_LETTER,
                durable=True,
                arguments=dead_letter_arguments(quorum=self.queue_type == "quorum"),
            )
            await queue.bind(wire.Exchange.DEAD_LETTER)
        except aiormq.exceptions.ChannelPreconditionFailed:
            log.warning(
                "%s: %s was declared otherwise (unbounded by an older Meseta, or of another queue type): "
                "delete it (rabbitmqctl delete_queue %s -p VHOST) and it is declared again at the next start",
                self.service,
                wire.Queue.DEAD_LETTER,
                wire.Queue.DEAD_LETTER,
            )
        finally:
            with contextlib.suppress(Exception):
                await channel.close()

    async def declare_queue(
        self,
        name: str,
        exchange: wire.Exchange,
        routing_key: str,
        *,
        durable: bool = True,
        exclusive: bool = False,
        expires_ms: int | None = None,
        replicated: bool = False,
    ) -> AbstractQueue:
        """Declare a queue bound to ``exchange`` whose broker-side rejections are dead-lettered too.

        ``replicated``: a queue whose loss loses work, a quorum queue unless :attr:`queue_type` says
        classic. A queue that exists already with other arguments (a classic one an older Meseta declared)
        is used as it is, with a warning saying how to change it: the broker refuses to redeclare it.

        Without ``declare_topology`` the queue must exist already (declared and bound by whoever may):
        this only looks it up, as a principal without configure permission must.
        """
        assert self._consume_channel is not None
        if not self.declare_topology:
            return await self._consume_channel.declare_queue(name, passive=True)
        arguments = queue_arguments(expires_ms, quorum=replicated and self.queue_type == "quorum")
        if await self._declarable(name, durable, exclusive, arguments):
            queue = await self._consume_channel.declare_queue(
                name, durable=durable, exclusive=exclusive, arguments=arguments
            )
        else:
            queue = await self._consume_channel.declare_queue(name, passive=True)
        await queue.bind(exchange, routing_key)
        return queue

    async def _declarable(self, name: str, durable: bool, exclusive: bool, arguments: dict[str, Any]) -> bool:
        """Whether the broker takes this declaration; tried on a channel of its own, since a refusal closes
        the channel it came on (and the robust channel would repeat it at every reconnect)."""
        if exclusive:
            return True  # a private queue: nobody else declared it
        assert self._connection is not None
        async with self._probe_lock:
            channel = self._probe_channel
            # Replaced only after a refusal: across a reconnect the robust channel comes back by itself (one
            # opened while it is away would be another channel for the connection to restore, each time).
            if channel is None:
                channel = self._probe_channel = await self._connection.channel()
            try:
                # Not robust: a reconnect restores the consuming channel's queues, not these tries.
                await channel.declare_queue(name, durable=durable, arguments=arguments, robust=False)
                return True
            except aiormq.exceptions.ChannelPreconditionFailed as exc:
                refusal = exc
                self._probe_channel = None
                # Closed by the broker; closed here too, or the robust channel would reopen itself.
                with contextlib.suppress(Exception):
                    await channel.close()
        log.warning(
            "%s: queue %s exists with other arguments (%s); used as it is. To make it a %s queue, "
            "delete it while the cluster is stopped (rabbitmqctl delete_queue %s -p VHOST)",
            self.service,
            name,
            str(refusal)[:200],
            arguments.get("x-queue-type", "classic"),
            name,
        )
        return False

    async def existing_queue(self, name: str) -> AbstractQueue:
        """A queue someone else declared (and bound), looked up as it is."""
        assert self._consume_channel is not None
        return await self._consume_channel.declare_queue(name, passive=True)

    async def delete_queue(self, name: str) -> None:
        """Delete a queue and what it holds (a robust channel then no longer re-declares it)."""
        assert self._consume_channel is not None
        await self._consume_channel.queue_delete(name)

    async def reply_queue(self) -> AbstractQueue:
        """A private (exclusive) queue for answers sent with ``reply_to``, under a name principals may
        declare (meseta.ops.users)."""
        assert self._consume_channel is not None
        return await self._consume_channel.declare_queue(wire.reply_queue(wire.unique_hex()), exclusive=True)

    async def publish(
        self,
        exchange: wire.Exchange | str,
        routing_key: str,
        message: wire.Message,
        *,
        reply_to: str | None = None,
        context: otel_context.Context | None = None,
        persistent: bool = False,
        wait: bool = True,
    ) -> None:
        """Publish ``message`` with the trace context in its headers; ``exchange=""`` is the default one.

        With ``wait=False`` it returns once the message is queued for sending, in order with the rest;
        the broker's confirm is awaited in the background (a failure is logged).
        """
        assert self._publish_channel is not None
        body = wire.encode(message)
        if len(body) > wire.MAX_MESSAGE_BYTES:
            raise Oversized(
                f"{self.service}: {message.type} of {len(body)} bytes not sent: receivers refuse messages "
                f"over {wire.MAX_MESSAGE_BYTES} bytes"
            )
        headers = tracing.inject({}, context)
        if self.epoch is not None:
            headers[wire.HEADER_EPOCH] = self.epoch
        outgoing = _frames.Outgoing(
            exchange=exchange,
            routing_key=routing_key,
            body=body,
            message_type=message.type,
            message_id=message.message_id,
            headers=headers,
            persistent=persistent,
            correlation_id=message.correlation_id,
            reply_to=reply_to,
            user_id=self.user,
        )
        if not wait:
            send = _eager.start(self._send(outgoing))
            self._background.add(send)
            send.add_done_callback(self._sent_in_background)
            return
        deferred = _DEFERRED.get()
        if deferred is not None and deferred.open:
            # Started now, in call order: the frames are queued for the connection's writer before the
            # handler goes on, and any publish that must wait (for the channel, or a resend) waits in a
            # queue (the channel's lock, the resend order) in that same order.
            deferred.sends.append(_eager.start(self._send(outgoing)))
            # One turn of the loop for the connection's writer, woken by those frames: they leave now,
            # not after the rest of the handler (a launch waited ~0.2 ms for the master's bookkeeping).
            await asyncio.sleep(0)
            return
        await self._send(outgoing)

    async def _send(self, outgoing: _frames.Outgoing) -> None:
        """Publish and wait for the broker's confirm, retrying across reconnects for a while, in order.

        A publish that fails with the link is resent once the connection is back, and every publish made
        while any wait to be resent goes after them: otherwise a message sent just after the reconnect
        overtook older ones (a framework's REVIVE before its SUPPRESS starved it for ever).
        """
        if self._closed:
            raise BusClosed(f"{self.service}: the bus is closed; {outgoing.message_type} not sent")
        began = time.perf_counter()
        try:
            await self._send_in_order(outgoing)
        finally:
            self.publish_latency.observe(time.perf_counter() - began)

    async def _send_in_order(self, outgoing: _frames.Outgoing) -> None:
        if not self._resending:
            try:
                await self._publish_once(outgoing)
                return
            except BaseException as exc:
                if not is_transport_error(exc) or self._connection is None:
                    raise
        self._resending += 1
        try:
            async with self._resend_order:  # FIFO: in the order the publishes failed or were made
                await self._resend(outgoing)
        finally:
            self._resending -= 1

    async def _publish_once(self, outgoing: _frames.Outgoing) -> None:
        """Publish and wait for the broker's confirm.

        Through the fast path (:mod:`meseta.sdk._fastpath`) where it is on; through the client's own
        publish where it is off, where the client's channel is busy (another publish holds it, or the
        writer's queue is full) or closed, and for every publish until those are confirmed: one packed
        meanwhile would overtake them.
        """
        assert self._publish_channel is not None
        channel = cast(aiormq.Channel, await self._publish_channel.get_underlay_channel())
        if not self.fast_path.enabled or self._slow or _fastpath.busy(channel):
            self._slow += 1
            try:
                await self._publish_slowly(channel, outgoing)
            finally:
                self._slow -= 1
            return
        await _fastpath.publish(channel, outgoing)

    async def _publish_slowly(self, channel: aiormq.Channel, outgoing: _frames.Outgoing) -> None:
        # With wait=False the client queues the frames and releases the channel's lock at once, rather
        # than holding it until its writer has run. (aiormq's abstract channel does not declare wait.)
        await channel.basic_publish(
            outgoing.body,
            exchange=outgoing.exchange,
            routing_key=outgoing.routing_key,
            properties=outgoing.properties(),
            mandatory=True,
            wait=False,
        )

    async def _resend(self, outgoing: _frames.Outgoing) -> None:
        deadline = time.monotonic() + PUBLISH_PATIENCE
        nacks = 0
        while True:
            if self._closed:
                raise BusClosed(f"{self.service}: the bus is closed; {outgoing.message_type} not sent")
            connection = self._connection
            if connection is None:
                raise BusClosed(f"{self.service}: no connection; {outgoing.message_type} not sent")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(connection.connected.wait(), max(0.1, deadline - time.monotonic()))
            try:
                # Bounded: this publish holds every later one back, and a confirm lost in a broker
                # restart would hold them for ever (a resend may duplicate; receivers drop repeated ids).
                await asyncio.wait_for(self._publish_once(outgoing), RESEND_PATIENCE)
                return
            except BaseException as exc:
                if (
                    not (is_transport_error(exc) or isinstance(exc, TimeoutError))
                    or time.monotonic() > deadline
                ):
                    raise
                if isinstance(exc, aiormq.exceptions.DeliveryError):
                    nacks += 1
                    if nacks % NACKS_BEFORE_NEW_CHANNEL == 0:
                        await self._renew_publish_channel()
                # The robust connection restores itself and its channels: wait for it, then send again.
                log.info(
                    "%s: publish of %s to %s/%s failed (%r); waiting for the broker",
                    self.service,
                    outgoing.message_type,
                    outgoing.exchange or "(default)",
                    outgoing.routing_key,
                    exc,
                )
                await asyncio.sleep(0.05)

    async def _renew_publish_channel(self) -> None:
        """Publish on a new channel from now on. After a RabbitMQ node of a cluster is lost, a channel
        opened on another node while a quorum queue elected its new leader can have every later publish
        to that queue refused (nacked) for minutes, while a new channel's are taken at once (seen with
        RabbitMQ 3.10: agents' heartbeats refused until the master took the agents for lost)."""
        assert self._publish_channel is not None
        log.warning(
            "%s: the broker keeps refusing publishes on this channel; opening a new one", self.service
        )
        with contextlib.suppress(*TRANSPORT_ERRORS):
            underlay = await self._publish_channel.get_underlay_channel()
            await underlay.close()  # the robust channel opens itself again (aio_pika restores it)

    def _sent_in_background(self, task: asyncio.Future[None]) -> None:
        self._background.discard(task)
        if not task.cancelled() and (exc := task.exception()) is not None:
            log.error("%s: a publish failed: %r", self.service, exc)

    def consume(
        self,
        queue: AbstractQueue,
        channel: wire.Channel,
        handler: Handler,
        on_invalid: InvalidHandler | None = None,
        fence: bool = False,
        stamped: Collection[type[wire.Message]] = (),
        authorize: Authorize | None = None,
    ) -> asyncio.Task[None]:
        """Handle the queue's messages one at a time, in order, in a background task.

        With ``fence``, messages stamped with an epoch lower than one already seen come from a deposed
        leader: they are dropped. A higher epoch is adopted only from a message that decodes, so an
        undecodable one cannot silence the consumer. Messages of the ``stamped`` types are only ever sent
        by a leader: one that carries no epoch is refused (dead-lettered with the reason). ``authorize``
        is asked about each decoded message's sender before anything else, fencing included: a message
        from a principal that may not send it can neither be handled nor move the epoch.
        """
        task = asyncio.create_task(
            self._consume(queue, channel, handler, on_invalid, fence, frozenset(stamped), authorize),
            name=f"{self.service}:{queue.name}",
        )
        self._consumers.append(task)
        return task

    async def _consume(
        self,
        queue: AbstractQueue,
        channel: wire.Channel,
        handler: Handler,
        on_invalid: InvalidHandler | None,
        fence: bool,
        stamped: frozenset[type[wire.Message]],
        authorize: Authorize | None,
    ) -> None:
        """Consume until cancelled. Each delivery is handled in the task the client starts for it, in
        delivery order (the lock queues them first come, first served), rather than handed through a
        queue to this task: a turn of the event loop and a queue less on every hop (aio-pika's queue
        iterator). The robust queue registers the consumer again after a reconnect, as it did the
        iterator's."""
        state = _ConsumerState()
        fencing = _Fencing(state, stamped) if fence or stamped else None
        order = asyncio.Lock()
        stopped = False

        async def on_message(incoming: AbstractIncomingMessage) -> None:
            async with order:
                if stopped:
                    # Delivered before the consumer was cancelled, not handled: to the queue again.
                    with contextlib.suppress(*TRANSPORT_ERRORS):
                        await incoming.reject(requeue=True)
                    return
                try:
                    await self._handle_one(
                        incoming, channel, handler, state.seen, on_invalid, fencing, authorize
                    )
                except BaseException as exc:
                    if not is_transport_error(exc):
                        log.exception("%s: consuming %s failed", self.service, queue.name)
                        raise
                    log.warning(
                        "%s: lost the broker on %s; unacknowledged messages come again",
                        self.service,
                        queue.name,
                    )

        consumer_tag = await queue.consume(on_message)
        try:
            await asyncio.Future()  # until cancelled
        finally:
            stopped = True
            if not queue.channel.is_closed:
                with contextlib.suppress(*TRANSPORT_ERRORS, TimeoutError):
                    await asyncio.wait_for(queue.cancel(consumer_tag), CANCEL_PATIENCE)

    async def _admit(
        self, incoming: AbstractIncomingMessage, message: wire.Message, fencing: _Fencing
    ) -> bool:
        """Fencing, once the message decoded: refuse an unstamped leader's message, and drop (and ack) one
        stamped with an epoch older than one already seen."""
        state = fencing.state
        epoch = _epoch(incoming)
        if epoch is None:
            if type(message) in fencing.stamped:
                await self.dead_letter(
                    incoming, f"unstamped {message.type}: only a leader sends it, with its epoch"
                )
                return False
            return True
        if epoch < state.highest:
            self.fenced += 1
            log.warning(
                "%s: dropped %s from deposed epoch %d (now %d)",
                self.service,
                incoming.type,
                epoch,
                state.highest,
            )
            await _ack(incoming)
            return False
        if epoch > state.highest:
            state.highest = epoch
            self.epochs_accepted.append(epoch)
        return True

    async def _handle_one(
        self,
        incoming: AbstractIncomingMessage,
        channel: wire.Channel,
        handler: Handler,
        seen: OrderedDict[str, None],
        on_invalid: InvalidHandler | None = None,
        fencing: _Fencing | None = None,
        authorize: Authorize | None = None,
    ) -> None:
        try:
            message = wire.decode(incoming.body, channel)
        except wire.DecodeError as exc:
            await self.dead_letter(incoming, exc.reason)
            if on_invalid is not None and not exc.reason.startswith("oversized"):
                try:
                    await on_invalid(incoming.body, exc.reason, incoming)
                except Exception:
                    log.exception("%s: reporting an invalid message failed", self.service)
            return
        if authorize is not None and (refusal := authorize(message, incoming.user_id)) is not None:
            self.refused += 1
            await self.dead_letter(incoming, f"refused: {refusal}")
            return
        if fencing is not None and not await self._admit(incoming, message, fencing):
            return
        if message.message_id in seen:
            log.info("%s: duplicate %s %s ignored", self.service, message.type, message.message_id)
            await _ack(incoming)
            return
        seen[message.message_id] = None
        if len(seen) > _DEDUPE_WINDOW:
            seen.popitem(last=False)
        parent = tracing.extract(incoming.headers)
        deferred = _Deferred()
        token = _DEFERRED.set(deferred)
        if isinstance(self._tracer, trace.NoOpTracer):
            # No span is made: the handler runs in the sender's context (no attributes to build).
            scope = self._tracer.start_as_current_span("", context=parent)
        else:
            producer = trace.get_current_span(parent).get_span_context()
            scope = self._tracer.start_as_current_span(
                f"{self.service} {message.type}",
                context=parent,
                kind=trace.SpanKind.CONSUMER,
                attributes=tracing.consumer_attributes(
                    self.service, message.type, message.message_id, incoming.exchange, incoming.routing_key
                ),
                # OpenTelemetry's messaging conventions: the producer's context as a link besides the
                # parent (a batch's consumer would have several; here the parent is that one producer).
                links=(trace.Link(producer),) if producer.is_valid else (),
            )
        with scope as span:
            try:
                try:
                    await handler(message, incoming)
                finally:
                    deferred.open = False
                    _DEFERRED.reset(token)
            except BaseException as exc:
                if is_transport_error(exc):
                    # Not the message's fault: leave it unacknowledged, the broker redelivers it.
                    log.warning(
                        "%s: lost the broker while handling %s; it will be redelivered",
                        self.service,
                        message.type,
                    )
                    seen.pop(message.message_id, None)
                    return
                if isinstance(exc, asyncio.CancelledError):
                    raise
                span.record_exception(exc)
                span.set_status(trace.Status(trace.StatusCode.ERROR, str(exc)))
                log.exception("%s: handler for %s failed", self.service, message.type)
                await self.dead_letter(incoming, f"handler failed: {exc!r}")
                return
        if not deferred.sends:
            await _ack(incoming)
            return
        acking = asyncio.create_task(self._ack_when_sent(incoming, deferred.sends, message.message_id, seen))
        self._acking.add(acking)
        acking.add_done_callback(self._acking.discard)

    async def _ack_when_sent(
        self,
        incoming: AbstractIncomingMessage,
        sends: list[asyncio.Future[None]],
        message_id: str,
        seen: OrderedDict[str, None],
    ) -> None:
        results = await asyncio.gather(*sends, return_exceptions=True)
        failed = [r for r in results if isinstance(r, BaseException)]
        if any(is_transport_error(r) for r in failed):
            # Unacknowledged, it comes again once the broker is back: handle it again then.
            seen.pop(message_id, None)
            return
        for exc in failed:
            log.error("%s: a publish of a handled message failed: %r", self.service, exc)
        with contextlib.suppress(*TRANSPORT_ERRORS):
            await _ack(incoming)

    async def dead_letter(self, incoming: AbstractIncomingMessage, reason: str) -> None:
        """Move a message to the dead-letter queue with ``reason``, and log it."""
        origin = f"{incoming.exchange or '(default)'}/{incoming.routing_key}"
        log.warning("%s: dead-lettering a message from %s: %s", self.service, origin, reason)
        self.dead_lettered += 1
        assert self._publish_channel is not None
        headers = dict(incoming.headers or {})
        headers.update(
            {wire.HEADER_REASON: reason[:1000], wire.HEADER_ORIGIN: origin, "x-meseta-service": self.service}
        )
        body = incoming.body
        if len(body) > wire.DEAD_LETTER_BODY_BYTES:
            # Enough to see what it was; a flood of large bodies must not become a large queue.
            headers[wire.HEADER_ORIGINAL_BYTES] = len(body)
            body = body[: wire.DEAD_LETTER_BODY_BYTES]
        await self._exchanges[wire.Exchange.DEAD_LETTER].publish(
            aio_pika.Message(
                body, headers=headers, delivery_mode=aio_pika.DeliveryMode.PERSISTENT, user_id=self.user
            ),
            routing_key=wire.RoutingKey.DEAD_LETTER,
        )
        await _ack(incoming)

    async def close(self) -> None:
        """Stop consuming, then close the connection. Safe to call twice."""
        for task in self._consumers:
            task.cancel()
        await asyncio.gather(*self._consumers, return_exceptions=True)
        self._consumers.clear()
        # Let handled messages' publishes finish (their acknowledgements go out with them), and calls.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(
                asyncio.gather(*self._acking, *self._background, return_exceptions=True), 5
            )
        self._closed = True
        if self._connection is not None and not self._connection.is_closed:
            await self._connection.close()
        self._connection = None


@dataclass
class _ConsumerState:
    seen: OrderedDict[str, None] = field(default_factory=OrderedDict)
    """Message ids handled lately, so a redelivery is handled once."""
    highest: int = 0
    """The highest leader epoch seen on this queue."""


@dataclass(frozen=True)
class _Fencing:
    """A fenced consumer's epoch state, and the message types only a leader sends."""

    state: _ConsumerState
    stamped: frozenset[type[wire.Message]]


async def _ack(incoming: AbstractIncomingMessage) -> None:
    """Acknowledge without waiting for the connection's writer task to send it (as in ``Bus._send``):
    a consumer that awaited each acknowledgement's write handled one message per few event-loop turns."""
    assert incoming.delivery_tag is not None
    await incoming.channel.basic_ack(delivery_tag=incoming.delivery_tag, wait=False)


def default_queue_type(nodes: int = 1) -> str:
    """``MESETA_QUEUE_TYPE`` (quorum or classic); unset, quorum for a service given several brokers'
    URLs (a RabbitMQ cluster: replication is what quorum queues buy) and classic for one (on one node
    they replicate nothing, and cost an offer cycle 1.9 times the round trip: docs/BENCHMARKS.md)."""
    return os.environ.get("MESETA_QUEUE_TYPE") or ("quorum" if nodes > 1 else "classic")


def dead_letter_arguments(quorum: bool = False) -> dict[str, Any]:
    """The dead-letter queue's arguments (meseta.ops.users declares the same): bounded, and replicated
    where the other queues are."""
    arguments: dict[str, Any] = dict(wire.DEAD_LETTER_LIMITS)
    if quorum:
        arguments["x-queue-type"] = "quorum"
    return arguments


def queue_arguments(expires_ms: int | None = None, quorum: bool = False) -> dict[str, Any]:
    """The arguments Meseta declares a queue with (meseta.ops.users declares the same)."""
    arguments: dict[str, Any] = {"x-dead-letter-exchange": wire.Exchange.DEAD_LETTER.value}
    if expires_ms is not None:
        arguments["x-expires"] = expires_ms
    if quorum:
        arguments["x-queue-type"] = "quorum"
        arguments["x-delivery-limit"] = wire.DELIVERY_LIMIT
    return arguments


def user_of(url: str) -> str:
    """The user an AMQP URL logs in as (RabbitMQ's clients default to ``guest``)."""
    name = urlsplit(url).username
    return unquote(name) if name else wire.DEV_USER


def _epoch(incoming: AbstractIncomingMessage) -> int | None:
    value = (incoming.headers or {}).get(wire.HEADER_EPOCH)
    return value if isinstance(value, int) else None
