"""A small typed layer over aetcd: JSON values under one key prefix, and counters by transaction.

Every key a service writes lives under its prefix, so tests (and clusters) share one etcd safely.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import aetcd

from meseta.runtime import defaults

log = logging.getLogger(__name__)

DEFAULT_ENDPOINT = defaults.ETCD_ENDPOINT


def parse_endpoint(endpoint: str) -> tuple[str, int]:
    """``host:port`` (``http://`` allowed) into its parts."""
    host, _, port = endpoint.removeprefix("http://").rstrip("/").rpartition(":")
    return (host or "127.0.0.1"), int(port or 2379)


class EtcdStore:
    """JSON documents in etcd under ``prefix``.

    Args:
        endpoint: ``host:port`` of one etcd member.
        prefix: key prefix, such as ``/meseta`` or ``/meseta-test/abc``.
    """

    def __init__(self, endpoint: str, prefix: str) -> None:
        self.host, self.port = parse_endpoint(endpoint)
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
        """Open the gRPC channel and check the member answers."""
        self._client = aetcd.Client(host=self.host, port=self.port, timeout=5)
        await self._client.connect()
        await self._client.status()

    async def close(self) -> None:
        """Close the channel; safe twice."""
        if self._client is not None:
            await self._client.close()
            self._client = None

    async def put_json(self, value: Any, *parts: str) -> None:
        """Store ``value`` as JSON."""
        await self.client.put(self.key(*parts), json.dumps(value).encode())

    async def get_json(self, *parts: str) -> Any | None:
        """The JSON value at a key, or None."""
        got = await self.client.get(self.key(*parts))
        return None if got is None else json.loads(got.value)

    async def list_json(self, *parts: str) -> dict[str, Any]:
        """Every JSON value under a path, by the last part of its key."""
        base = self.key(*parts) + b"/"
        result: dict[str, Any] = {}
        for kv in await self.client.get_prefix(base):
            result[kv.key[len(base) :].decode()] = json.loads(kv.value)
        return result

    async def delete(self, *parts: str) -> None:
        """Delete one key."""
        await self.client.delete(self.key(*parts))

    async def delete_prefix(self) -> None:
        """Delete everything under the prefix (tests clean up with it)."""
        await self.client.delete_prefix(self.key() + b"/")

    async def increment(self, *parts: str) -> int:
        """Atomically add one to an integer key and return the new value (compare-and-swap loop)."""
        key = self.key(*parts)
        tx = self.client.transactions
        while True:
            got = await self.client.get(key)
            if got is None:
                ok, _ = await self.client.transaction(
                    compare=[tx.version(key) == 0], success=[tx.put(key, b"1")], failure=[]
                )
                if ok:
                    return 1
                continue
            new = int(got.value) + 1
            ok, _ = await self.client.transaction(
                compare=[tx.mod(key) == got.mod_revision],
                success=[tx.put(key, str(new).encode())],
                failure=[],
            )
            if ok:
                return new
