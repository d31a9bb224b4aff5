"""Several brokers' URLs: a service tries them in order and moves to the next when its node fails. Real
RabbitMQ behind two TCP relays (two "nodes" of one broker): closing a relay is a node lost."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from urllib.parse import urlsplit

import pytest

from meseta.sdk import wire
from meseta.sdk.bus import Bus
from meseta.testing.waiting import wait_for

pytestmark = pytest.mark.e2e


class Relay:
    """A TCP relay to the broker: one "node"; ``kill`` drops it and every connection through it."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.server: asyncio.Server | None = None
        self.links: set[asyncio.StreamWriter] = set()
        self.accepted = 0

    async def start(self) -> int:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return int(self.server.sockets[0].getsockname()[1])

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        up_reader, up_writer = await asyncio.open_connection(*self.target)
        self.links |= {writer, up_writer}

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(ConnectionError, asyncio.CancelledError):
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            dst.close()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))

    async def kill(self) -> None:
        assert self.server is not None
        self.server.close()
        for link in list(self.links):
            link.transport.abort()
        self.links.clear()


@asynccontextmanager
async def relays(amqp_url: str, count: int) -> AsyncIterator[tuple[list[Relay], list[str]]]:
    parts = urlsplit(amqp_url)
    target = (parts.hostname or "127.0.0.1", parts.port or 5672)
    found = [Relay(target) for _ in range(count)]
    urls = [parts._replace(netloc=f"guest:guest@127.0.0.1:{await r.start()}").geturl() for r in found]
    try:
        yield found, urls
    finally:
        for relay in found:
            with contextlib.suppress(Exception):
                await relay.kill()


async def test_a_service_moves_to_the_next_node_when_its_node_is_lost(amqp_url: str) -> None:
    dead = urlsplit(amqp_url)._replace(netloc="guest:guest@127.0.0.1:1").geturl()
    async with relays(amqp_url, 2) as ((first, second), urls):
        # A node that is down at the start is passed over.
        bus = Bus(",".join([dead, *urls]), "nodes")
        receiver = Bus(amqp_url, "receiver")
        await bus.connect()
        await receiver.connect()
        try:
            assert (first.accepted, second.accepted) == (1, 0)
            queue = await receiver.declare_queue("through", wire.Exchange.HEARTBEATS, "through")
            got: list[str] = []

            async def record(message: wire.Message, _: object) -> None:
                got.append(message.agent_id)  # type: ignore[attr-defined]

            receiver.consume(queue, wire.HEARTBEATS, record)

            async def send(name: str) -> None:
                beat = wire.Heartbeat(agent_id=name, free=wire.Resources(cpus=1))
                await bus.publish(wire.Exchange.HEARTBEATS, "through", beat)

            await send("before")
            await first.kill()  # its node is lost: the robust connection goes to the next
            await wait_for(lambda: bus.reconnects >= 1, 30, "the bus to reconnect")
            assert second.accepted >= 1
            await asyncio.wait_for(send("after"), 30)
            await wait_for(lambda: got == ["before", "after"], 15, "both messages")
        finally:
            await bus.close()
            await receiver.close()
