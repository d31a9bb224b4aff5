"""The master process: lifecycle only. Behaviour lives in :mod:`.handlers`."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

from meseta.master.cluster import Cluster
from meseta.master.handlers import MasterHandlers
from meseta.master.registry import Registry
from meseta.runtime.etcd import DEFAULT_ENDPOINT, EtcdStore
from meseta.runtime.service import Service
from meseta.sdk import wire
from meseta.sdk.bus import Bus

log = logging.getLogger(__name__)

DEFAULT_OFFER_TIMEOUT = 30.0


@dataclass(frozen=True)
class MasterSettings:
    """How the master runs."""

    amqp_url: str
    etcd_endpoint: str = DEFAULT_ENDPOINT
    etcd_prefix: str = "/meseta"
    offer_timeout: float = DEFAULT_OFFER_TIMEOUT
    """Seconds an offer stays valid before it is rescinded."""
    sweep_interval: float = 0.5


class MasterService(Service):
    """The master as a service."""

    name = "master"

    def __init__(self, settings: MasterSettings) -> None:
        super().__init__()
        self.settings = settings
        self.cluster = Cluster()
        self.bus = Bus(settings.amqp_url, self.name)
        self.store = EtcdStore(settings.etcd_endpoint, settings.etcd_prefix)
        self.registry = Registry(self.store)
        self.handlers = MasterHandlers(self.cluster, self.bus, self.registry, settings.offer_timeout)

    @property
    def epoch(self) -> int:
        """This master's fencing token."""
        return self.handlers.epoch

    async def _start(self) -> None:
        await self.store.connect()
        self.handlers.epoch = await self.registry.next_epoch()
        await self.bus.connect()
        inbound = [
            (
                wire.Queue.MASTER_HEARTBEATS,
                wire.Exchange.HEARTBEATS,
                wire.RoutingKey.HEARTBEAT,
                wire.HEARTBEATS,
            ),
            (wire.Queue.MASTER_STATUS, wire.Exchange.STATUS, wire.RoutingKey.STATUS, wire.STATUS),
            (wire.Queue.MASTER_CALLS, wire.Exchange.CALLS, wire.RoutingKey.CALL, wire.CALLS),
            (
                wire.Queue.MASTER_ALLOCATIONS,
                wire.Exchange.ALLOCATION,
                wire.RoutingKey.TO_MASTER,
                wire.TO_MASTER,
            ),
        ]
        for queue_name, exchange, key, channel in inbound:
            queue = await self.bus.declare_queue(queue_name, exchange, key)
            self.bus.consume(queue, channel, self.handlers.handle)
        self.spawn(self._sweep_loop(), "offer-expiry")
        log.info("master started, epoch %d", self.epoch)

    async def _stop(self) -> None:
        await self.bus.close()
        await self.store.close()

    async def _sweep_loop(self) -> None:
        while True:
            await asyncio.sleep(self.settings.sweep_interval)
            await self.handlers.expire_offers()
