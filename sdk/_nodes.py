"""A robust AMQP connection over several brokers' URLs: the nodes of a RabbitMQ cluster.

aio-pika's robust connection reconnects to the one URL it was given. Here a connection lost, or an attempt
that fails, sends the next attempt to the next node, round the list; the channels, queues and consumers
are restored there as aio-pika restores them on the same node (quorum queues are the cluster's, not a
node's). What this relies on of aio-pika (the robust connection's per-attempt ``__connect_transport``,
name-mangled, and its ``url`` attribute) is pinned with it in pyproject.toml.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Any

import aio_pika
from aio_pika.abc import AbstractRobustConnection
from yarl import URL

log = logging.getLogger(__name__)


def split_urls(urls: str) -> list[str]:
    """``amqp://a/v,amqp://b/v``: the nodes to try, in order (commas in a password are written %2C)."""
    found = [u.strip() for u in urls.split(",") if u.strip()]
    if not found:
        raise ValueError("no AMQP URL given")
    return found


class NodesConnection(aio_pika.RobustConnection):
    """A :class:`aio_pika.RobustConnection` that moves to the next URL when a node fails it."""

    def __init__(self, urls: Sequence[str], **kwargs: Any) -> None:
        self._urls = [URL(u) for u in urls]
        self._index = 0
        super().__init__(url=self._urls[0], **kwargs)

    async def _RobustConnection__connect_transport(self) -> None:
        self.url = self._urls[self._index]
        try:
            await super()._RobustConnection__connect_transport()  # type: ignore[misc]
        except BaseException:
            self._advance("could not connect")
            raise

    async def _on_connection_close(self, closing: asyncio.Future[Any]) -> None:
        if not (self._close_called or self.is_closed):
            self._advance("lost")
        await super()._on_connection_close(closing)

    def _advance(self, why: str) -> None:
        node = self._urls[self._index]
        self._index = (self._index + 1) % len(self._urls)
        log.warning("broker %s:%s %s; next try: %s:%s", node.host, node.port, why,
                    self._urls[self._index].host, self._urls[self._index].port)  # fmt: skip


async def connect_nodes(urls: Sequence[str], **kwargs: Any) -> AbstractRobustConnection:
    """A robust connection to the first of ``urls`` that answers (each tried once, in order); it then
    moves between them as they fail."""
    last: BaseException | None = None
    for start in range(len(urls)):
        connection = NodesConnection([*urls[start:], *urls[:start]], **kwargs)
        try:
            await connection.connect()
            return connection
        except Exception as exc:  # the node is down or refuses us: the next one
            last = exc
            log.warning("broker %s: %r; trying the next", URL(urls[start]).with_password(None), exc)
            await connection.close()
    assert last is not None
    raise last
