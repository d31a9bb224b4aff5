"""The floor under every offer cycle: one message's trip through RabbitMQ, process to process.

Two processes bounce a small message back and forth through the broker; a hop is half a round trip. It
runs with bare aio-pika (the least any client of this broker pays) and with Meseta's own ``Bus`` (trace
context, pydantic decoding, dead-lettering, confirms), each paced two ways: back to back (every process
stays awake) and one round trip every 10 ms (processes sleep in between, as in a lightly loaded cluster,
and pay the wake-ups). An offer cycle is four such hops (allocator -> master -> framework -> master ->
agent), so four times this floor is the least an offer cycle can take on this machine.
Writes bench/results/broker_floor.json.

    .venv/bin/python bench/broker_floor.py --round-trips 500
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import time
import uuid
from typing import Any

import aio_pika
from harness import summary, write_result

from meseta.runtime.rabbitmq import Management
from meseta.sdk import eventloop, wire
from meseta.sdk.bus import Bus
from meseta.sdk.wire import Resources
from meseta.testing.vhosts import create_scratch_vhost

DEFAULT_AMQP_HOST = "127.0.0.1:5672"
PACES = {"back_to_back": 0.0, "every_10ms": 0.01}


def _heartbeat(i: int) -> wire.Heartbeat:
    """A message of the size the control plane sends most (about 300 bytes encoded)."""
    return wire.Heartbeat(agent_id=f"agent-{i}", free=Resources(cpus=4, mem=8192))


# --- the echoing side, in its own process ----------------------------------------------------------------


def _echo(url: str, client: str, inbox: str, outbox: str, ready: Any) -> None:
    eventloop.run(
        _echo_bare(url, inbox, outbox, ready)
        if client == "aio-pika"
        else _echo_bus(url, inbox, outbox, ready)
    )


async def _echo_bare(url: str, inbox: str, outbox: str, ready: Any) -> None:
    connection = await aio_pika.connect_robust(url)
    channel = await connection.channel()
    queue = await channel.declare_queue(inbox, auto_delete=True)
    ready.set()
    async with queue.iterator() as messages:
        async for message in messages:
            await channel.default_exchange.publish(aio_pika.Message(message.body), routing_key=outbox)
            await message.ack()


async def _echo_bus(url: str, inbox: str, outbox: str, ready: Any) -> None:
    bus = Bus(url, "echo")
    await bus.connect()
    queue = await bus.declare_queue(inbox, wire.Exchange.HEARTBEATS, inbox, durable=False)

    async def answer(message: wire.Message, _: object) -> None:
        await bus.publish(wire.Exchange.HEARTBEATS, outbox, message)

    bus.consume(queue, wire.HEARTBEATS, answer)
    ready.set()
    await asyncio.Event().wait()


# --- the timing side -------------------------------------------------------------------------------------


async def _ping_bare(url: str, inbox: str, outbox: str, trips: int, pause: float) -> list[float]:
    connection = await aio_pika.connect_robust(url)
    channel = await connection.channel()
    queue = await channel.declare_queue(inbox, auto_delete=True)
    arrived: asyncio.Queue[float] = asyncio.Queue()

    async def on_message(message: aio_pika.abc.AbstractIncomingMessage) -> None:
        arrived.put_nowait(time.perf_counter())
        await message.ack()

    await queue.consume(on_message)
    body = wire.encode(_heartbeat(0))
    try:
        return await _time(
            trips,
            pause,
            arrived,
            lambda: channel.default_exchange.publish(aio_pika.Message(body), routing_key=outbox),
        )
    finally:
        await connection.close()


async def _ping_bus(url: str, inbox: str, outbox: str, trips: int, pause: float) -> list[float]:
    bus = Bus(url, "ping")
    await bus.connect()
    queue = await bus.declare_queue(inbox, wire.Exchange.HEARTBEATS, inbox, durable=False)
    arrived: asyncio.Queue[float] = asyncio.Queue()

    async def on_message(message: wire.Message, _: object) -> None:
        arrived.put_nowait(time.perf_counter())

    bus.consume(queue, wire.HEARTBEATS, on_message)
    ids = iter(range(1 << 30))
    try:
        # A new message each time (the bus drops a message id it has handled); wait=False: the trip is
        # timed, not the publisher confirm (the services defer confirms too).
        return await _time(
            trips,
            pause,
            arrived,
            lambda: bus.publish(wire.Exchange.HEARTBEATS, outbox, _heartbeat(next(ids)), wait=False),
        )
    finally:
        await bus.close()


async def _time(trips: int, pause: float, arrived: asyncio.Queue[float], send: Any) -> list[float]:
    hops: list[float] = []
    for i in range(trips + 20):
        began = time.perf_counter()
        await send()
        back = await asyncio.wait_for(arrived.get(), 10)
        if i >= 20:  # the first trips warm connections and caches up
            hops.append((back - began) * 1e3 / 2)
        if pause:
            await asyncio.sleep(pause)
    return hops


def measure(url: str, client: str, trips: int, pause: float) -> dict[str, float]:
    tag = uuid.uuid4().hex[:8]
    inbox, outbox = f"floor-{tag}-ping", f"floor-{tag}-echo"
    context = multiprocessing.get_context("spawn")
    ready = context.Event()
    echo = context.Process(target=_echo, args=(url, client, outbox, inbox, ready), daemon=True)
    echo.start()
    try:
        if not ready.wait(60):
            raise TimeoutError("the echo process did not start")
        ping = _ping_bare if client == "aio-pika" else _ping_bus
        return summary(eventloop.run(ping(url, inbox, outbox, trips, pause)))
    finally:
        echo.terminate()
        echo.join(10)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--round-trips", type=int, default=500)
    parser.add_argument("--amqp-host", default=DEFAULT_AMQP_HOST)
    parser.add_argument("--out", default="broker_floor.json")
    args = parser.parse_args()
    vhost = f"meseta-floor-{uuid.uuid4().hex[:8]}"
    management = Management()
    create_scratch_vhost(management, vhost)
    url = f"amqp://guest:guest@{args.amqp_host}/{vhost}"
    try:
        hops = {
            f"{client}_{pace}": measure(url, client, args.round_trips, pause)
            for client in ("aio-pika", "meseta-bus")
            for pace, pause in PACES.items()
        }
    finally:
        management.delete_vhost(vhost)
    result: dict[str, Any] = {
        "round_trips": args.round_trips,
        "one_hop": hops,
        "offer_cycle_floor_ms": {name: round(4 * h["p50_ms"], 2) for name, h in hops.items()},
    }
    path = write_result(args.out, result)
    for name, hop in hops.items():
        print(
            f"{name:28s} one hop p50 {hop['p50_ms']:6.2f} ms  p99 {hop['p99_ms']:6.2f} ms"
            f"   x4 = {4 * hop['p50_ms']:6.2f} ms"
        )
    print(f"-> {path}")


if __name__ == "__main__":
    main()
