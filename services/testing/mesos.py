"""A raw Mesos v1 scheduler client over HTTP (aiohttp): what the gateway's tests and benchmark speak.

It reads the event stream chunk by chunk and keeps the chunk boundaries it saw, so a test can tell a
record that spanned several HTTP chunks. It does nothing for the caller: no acknowledgements, no retries.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from meseta.gateway.recordio import Decoder
from meseta.gateway.service import GatewayService
from meseta.gateway.settings import GatewaySettings

Json = dict[str, Any]


@dataclass
class Subscription:
    """One SUBSCRIBE's stream, read in the background into ``events``."""

    base_url: str
    session: aiohttp.ClientSession
    response: aiohttp.ClientResponse
    framework_id: str = ""
    auth: tuple[str, str] | None = None
    """(principal, password) it subscribed as."""
    events: list[Json] = field(default_factory=list)
    chunks: int = 0
    """HTTP chunks read so far."""
    records_across_chunks: int = 0
    """Records whose bytes came in more than one chunk."""
    ended: asyncio.Event = field(default_factory=asyncio.Event)
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    arrived: list[float] = field(default_factory=list)
    """When each event was read (time.monotonic())."""
    _reader: asyncio.Task[None] | None = None

    @property
    def stream_id(self) -> str:
        return self.response.headers["Mesos-Stream-Id"]

    def start(self) -> None:
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        decoder = Decoder()
        pending = False  # bytes of an unfinished record are waiting in the decoder
        try:
            async for data, _ in self.response.content.iter_chunks():
                self.chunks += 1
                records = decoder.feed(data)
                if records and pending:
                    self.records_across_chunks += 1
                pending = decoder.pending > 0
                now = time.monotonic()
                for record in records:
                    self.events.append(record)
                    self.arrived.append(now)
                    if record.get("type") == "SUBSCRIBED":
                        self.framework_id = record["subscribed"]["framework_id"]["value"]
                if records:
                    self.changed.set()
        except (aiohttp.ClientError, asyncio.CancelledError):
            pass
        finally:
            self.ended.set()
            self.changed.set()

    async def wait(self, match: Callable[[Json], bool], timeout: float, what: str, start: int = 0) -> Json:
        """The first event from index ``start`` on that ``match``es, waiting up to ``timeout`` s."""
        deadline = time.monotonic() + timeout
        seen = start
        while True:
            for i in range(seen, len(self.events)):
                if match(self.events[i]):
                    return self.events[i]
            seen = len(self.events)
            left = deadline - time.monotonic()
            if left <= 0 or (self.ended.is_set() and seen == len(self.events) and not self._reader_alive()):
                kinds = [e.get("type") for e in self.events[-10:]]
                raise TimeoutError(f"no {what} within {timeout} s (last events: {kinds})")
            self.changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.changed.wait(), left)

    def _reader_alive(self) -> bool:
        return self._reader is not None and not self._reader.done()

    async def call(
        self, kind: str, body: Json | None = None, auth: tuple[str, str] | None = None
    ) -> aiohttp.ClientResponse:
        """POST one call on this subscription's stream (as ``auth``, else as it subscribed); returns the
        (read) response."""
        call: Json = {"type": kind, "framework_id": {"value": self.framework_id}}
        if body is not None:
            call[kind.lower()] = body
        url = f"{self.base_url}/api/v1/scheduler"
        headers = {"Mesos-Stream-Id": self.stream_id}
        if auth is not None:
            headers["Authorization"] = basic(*auth)
        elif self.auth is not None:
            headers["Authorization"] = basic(*self.auth)
        async with self.session.post(url, json=call, headers=headers) as response:
            await response.read()
            return response

    async def close(self) -> None:
        """Drop the stream's connection (the framework disconnects; it stays registered)."""
        self.response.close()
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
        await self.session.close()


async def subscribe(
    base_url: str,
    framework_info: Json,
    framework_id: str | None = None,
    auth: tuple[str, str] | None = None,
) -> Subscription | aiohttp.ClientResponse:
    """SUBSCRIBE (as ``auth``: principal, password); the stream on 200, else the (read, closed) refusal."""
    session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None, sock_connect=10))
    body: Json = {"type": "SUBSCRIBE", "subscribe": {"framework_info": framework_info}}
    if framework_id is not None:
        body["framework_id"] = {"value": framework_id}
    response = await session.post(
        f"{base_url}/api/v1/scheduler",
        json=body,
        headers={"Accept": "application/json", **({"Authorization": basic(*auth)} if auth else {})},
        allow_redirects=False,
    )
    if response.status != 200:
        await response.read()
        response.release()
        await session.close()
        return response
    sub = Subscription(base_url, session, response, auth=auth)
    sub.start()
    await sub.wait(lambda e: e.get("type") == "SUBSCRIBED", 10, "SUBSCRIBED")
    return sub


def basic(principal: str, password: str) -> str:
    """An ``Authorization`` header's value for HTTP Basic."""
    return "Basic " + base64.b64encode(f"{principal}:{password}".encode()).decode()


def scalar(offer: Json, name: str) -> float:
    return float(sum(r["scalar"]["value"] for r in offer["resources"] if r["name"] == name))


def task_info(
    task_id: str, agent_id: str, script: str, image: str, cpus: float = 0.1, mem: float = 32
) -> Json:
    """A Mesos TaskInfo of a Docker task running ``script`` with sh -c."""
    return {
        "name": task_id,
        "task_id": {"value": task_id},
        "agent_id": {"value": agent_id},
        "resources": [
            {"name": "cpus", "type": "SCALAR", "scalar": {"value": cpus}},
            {"name": "mem", "type": "SCALAR", "scalar": {"value": mem}},
        ],
        "command": {"shell": True, "value": script},
        "container": {"type": "DOCKER", "docker": {"image": image}},
    }


@contextlib.asynccontextmanager
async def running_gateway(
    amqp_url: str, etcd_prefix: str, lead: bool = True, **settings: Any
) -> AsyncIterator[GatewayService]:
    """A gateway in this process on a free port (``settings``: GatewaySettings' fields), stopped after;
    with ``lead``, once it leads."""
    values: dict[str, Any] = {"port": 0, "dev": True, "name": f"gateway-{uuid.uuid4().hex[:8]}"}
    values.update(settings)
    service = GatewayService(GatewaySettings(amqp_url=amqp_url, etcd_prefix=etcd_prefix, **values))
    await service.start()
    try:
        if lead:
            await asyncio.wait_for(service.leading.wait(), 20)
        yield service
    finally:
        await service.stop()


def url_of(service: GatewayService) -> str:
    return f"http://127.0.0.1:{service.port}"
