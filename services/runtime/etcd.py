"""A small typed layer over aetcd: JSON values under one key prefix, over one or several members (TLS and
a user where the endpoint says so).

Every key a service writes lives under its prefix, so tests (and clusters) share one etcd safely.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import parse_qs, unquote, urlsplit

import aetcd
import grpc
from aetcd import rpc, watcher

from meseta.runtime import defaults

log = logging.getLogger(__name__)

DEFAULT_ENDPOINT = defaults.ETCD_ENDPOINT

_T = TypeVar("_T")
FAILOVER_PATIENCE = 10.0
"""Seconds an operation is tried on other members before its failure is given up to the caller."""
_MEMBER_FAILURES: tuple[type[BaseException], ...] = (
    aetcd.exceptions.ConnectionFailedError,
    aetcd.exceptions.ConnectionTimeoutError,
    grpc.RpcError,
    ConnectionError,
    TimeoutError,
)
"""What a member that is down or unreachable fails an operation with (not a refused compare)."""


@dataclass(frozen=True)
class Endpoint:
    """Where one etcd member is, and how to reach it: ``host:port``, or a URL with TLS and a user,
    ``https://USER:PASSWORD@host:port?cacert=CA.pem[&cert=CLIENT.pem&key=CLIENT.key]``."""

    host: str
    port: int
    tls: bool = False
    cacert: Path | None = None
    cert: Path | None = None
    key: Path | None = None
    user: str | None = None
    password: str | None = None

    @classmethod
    def parse(cls, endpoint: str) -> Endpoint:
        parts = urlsplit(endpoint if "//" in endpoint else f"http://{endpoint}")
        if parts.scheme not in ("http", "https"):
            raise ValueError(f"etcd endpoint {endpoint!r}: http:// or https://")
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        unknown = set(query) - {"cacert", "cert", "key"}
        if unknown:
            raise ValueError(f"etcd endpoint: unknown options {sorted(unknown)} (cacert, cert, key)")

        def path(name: str) -> Path | None:
            return Path(query[name]) if name in query else None

        return cls(
            parts.hostname or "127.0.0.1",
            parts.port or 2379,
            tls=parts.scheme == "https",
            cacert=path("cacert"),
            cert=path("cert"),
            key=path("key"),
            user=unquote(parts.username) if parts.username else None,
            password=unquote(parts.password) if parts.password else None,
        )

    def client(self, timeout: int) -> aetcd.Client:
        if not self.tls:
            return aetcd.Client(self.host, self.port, self.user, self.password, timeout=timeout)
        return _TlsClient(self, timeout)


def _read(path: Path | None) -> bytes | None:
    return None if path is None else path.read_bytes()


class _TlsClient(aetcd.Client):  # type: ignore[misc]
    """aetcd's client over TLS: aetcd itself opens only plain channels. Its ``connect`` with a secure
    channel instead, and nothing else changed (aetcd is pinned in pyproject.toml for this)."""

    def __init__(self, endpoint: Endpoint, timeout: int) -> None:
        super().__init__(endpoint.host, endpoint.port, endpoint.user, endpoint.password, timeout=timeout)
        self._credentials = grpc.ssl_channel_credentials(
            _read(endpoint.cacert), _read(endpoint.key), _read(endpoint.cert)
        )

    async def connect(self) -> None:
        if self._connected.is_set():
            return
        self.channel = rpc.secure_channel(f"{self._host}:{self._port}", self._credentials)
        if self._username is not None and self._password is not None:
            self.auth_stub = rpc.AuthStub(self.channel)
            request = rpc.AuthenticateRequest(name=self._username, password=self._password)
            response = await self.auth_stub.Authenticate(request, timeout=self._timeout)
            self.metadata = (("token", response.token),)
        self.kvstub = rpc.KVStub(self.channel)
        self.clusterstub = rpc.ClusterStub(self.channel)
        self.leasestub = rpc.LeaseStub(self.channel)
        self.maintenancestub = rpc.MaintenanceStub(self.channel)
        watch = rpc.WatchStub(self.channel)
        self._watcher = watcher.Watcher(watch, timeout=self._timeout, metadata=self.metadata)
        self._connected.set()


class EtcdStore:
    """JSON documents in etcd under ``prefix``.

    Args:
        endpoint: ``host:port`` of an etcd member, or a URL with TLS and a user (:class:`Endpoint`);
            several, comma-separated, for a cluster's members: the first that answers is used.
        prefix: key prefix, such as ``/meseta`` or ``/meseta-test/abc``.
    """

    def __init__(self, endpoint: str, prefix: str) -> None:
        self.endpoints = [Endpoint.parse(e.strip()) for e in endpoint.split(",") if e.strip()]
        if not self.endpoints:
            raise ValueError("no etcd endpoint given")
        self.endpoint = self.endpoints[0]
        """The member in use (the first that answered)."""
        self.prefix = prefix.rstrip("/")
        self._client: aetcd.Client | None = None

    def key(self, *parts: str) -> bytes:
        """The full key for a path under the prefix."""
        return "/".join((self.prefix, *parts)).encode()

    @property
    def client(self) -> aetcd.Client:
        """The connected client."""
        if self._client is None:
            raise RuntimeError("EtcdStore is not connected")
        return self._client

    async def connect(self) -> None:
        """Open a gRPC channel to the first member that answers, from the one in use on."""
        start = self.endpoints.index(self.endpoint)
        last: Exception | None = None
        for endpoint in [*self.endpoints[start:], *self.endpoints[:start]]:
            client = endpoint.client(timeout=5)
            try:
                await client.connect()
                await asyncio.wait_for(client.status(), 5)
            except Exception as exc:  # down, refusing, or not etcd: the next member
                last = exc
                log.warning(
                    "etcd %s:%d does not answer (%r); trying the next", endpoint.host, endpoint.port, exc
                )
                with contextlib.suppress(Exception):
                    await client.close()
                continue
            self._client, self.endpoint = client, endpoint
            return
        assert last is not None
        raise last

    async def close(self) -> None:
        """Close the channel; safe twice."""
        if self._client is not None:
            await self._client.close()
            self._client = None

    async def failover(self) -> None:
        """The member in use failed: connect to the next that answers (nothing to do with one member)."""
        if len(self.endpoints) == 1:
            return
        failed = self.endpoint
        with contextlib.suppress(Exception):
            await self.client.close()
        self.endpoint = self.endpoints[(self.endpoints.index(failed) + 1) % len(self.endpoints)]
        log.warning("etcd %s:%d failed; moving to the next member", failed.host, failed.port)
        await self.connect()

    async def _once_more(self, operation: Callable[[aetcd.Client], Awaitable[_T]]) -> _T:
        """Run ``operation``; where there are several members and it fails, again on the next one that
        answers, for up to :data:`FAILOVER_PATIENCE` seconds: a cluster that lost its raft leader with
        the member answers "leader changed" until it has elected another (about a second here)."""
        if len(self.endpoints) == 1:
            return await operation(self.client)
        deadline = time.monotonic() + FAILOVER_PATIENCE
        pause = 0.05
        while True:
            try:
                return await operation(self.client)
            except _MEMBER_FAILURES:
                if time.monotonic() >= deadline:
                    raise
            await asyncio.sleep(pause)
            pause = min(2 * pause, 1.0)
            with contextlib.suppress(*_MEMBER_FAILURES):
                await self.failover()

    async def put_json(self, value: Any, *parts: str) -> None:
        """Store ``value`` as JSON."""
        key, data = self.key(*parts), json.dumps(value).encode()
        await self._once_more(lambda c: c.put(key, data))

    async def get_json(self, *parts: str) -> Any | None:
        """The JSON value at a key, or None."""
        key = self.key(*parts)
        got = await self._once_more(lambda c: c.get(key))
        return None if got is None else json.loads(got.value)

    async def list_json(self, *parts: str) -> dict[str, Any]:
        """Every JSON value under a path, by the last part of its key."""
        base = self.key(*parts) + b"/"
        result: dict[str, Any] = {}
        for kv in await self._once_more(lambda c: c.get_prefix(base)):
            result[kv.key[len(base) :].decode()] = json.loads(kv.value)
        return result

    async def delete(self, *parts: str) -> None:
        """Delete one key."""
        key = self.key(*parts)
        await self._once_more(lambda c: c.delete(key))

    async def delete_prefix(self) -> None:
        """Delete everything under the prefix (tests clean up with it)."""
        await self.client.delete_prefix(self.key() + b"/")
