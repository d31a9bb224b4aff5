"""``meseta gateway``: the Mesos v1 scheduler API, served by the leading gateway of several.

Gateways elect a leader through etcd as masters do. Every gateway serves HTTP; a standby answers 307 to
the leader's advertised URL (503 while none leads), so pymesos, which follows a 307, finds the leader.
A leader that loses its lease stops (its streams end, frameworks re-subscribe to the next leader with
their ids: the secrets are in etcd).
"""

from __future__ import annotations

import asyncio
import logging

from aiohttp import web
from prometheus_client.core import Metric

from meseta.gateway import principals
from meseta.gateway.api import SchedulerApi
from meseta.gateway.secrets import Secrets
from meseta.gateway.settings import GatewaySettings
from meseta.ops.users import Credentials
from meseta.runtime import prometheus
from meseta.runtime.etcd import EtcdStore
from meseta.runtime.leader import Leadership, service_url
from meseta.runtime.prometheus import Probes
from meseta.runtime.service import Service

log = logging.getLogger(__name__)


class GatewayService(Service):
    name = "gateway"

    def __init__(self, settings: GatewaySettings) -> None:
        super().__init__()
        if settings.principals_file is None and not settings.dev:
            raise ValueError(
                "give --principals (who may subscribe, and as whom) or --dev (anyone, as one user)"
            )
        self.settings = settings
        self.store = EtcdStore(settings.etcd_endpoint, settings.etcd_prefix)
        self.leadership = Leadership(self.store, "gateway", settings.name, ttl=settings.lease_ttl)
        self.leading = asyncio.Event()
        known = None
        if settings.principals_file is not None:
            found = settings.credentials_file
            credentials = Credentials.load(found) if found is not None and found.exists() else None
            known = principals.load(settings.principals_file, credentials)
        self.api = SchedulerApi(
            settings, Secrets(self.store), known, self.leading.is_set, self.leadership.leader_url
        )
        self.probes = Probes("gateway", self._readiness, self._families)
        self._runner: web.AppRunner | None = None

    @property
    def port(self) -> int | None:
        return self.api.port

    @property
    def url(self) -> str:
        assert self.port is not None
        return service_url(self.settings.host, self.port, self.settings.advertise)

    async def _start(self) -> None:
        await self.store.connect()
        app = web.Application(client_max_size=self.settings.max_body_bytes)  # larger bodies: 413
        self.api.add_routes(app)
        self.probes.add_routes(app)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, self.settings.host, self.settings.port).start()
        self.api.port = int(self._runner.addresses[0][1])
        await self.leadership.advertise(self.url)
        log.info(
            "Mesos scheduler API on http://%s:%d%s", self.settings.host, self.api.port, "/api/v1/scheduler"
        )
        self.spawn(self._lead(), "leadership")

    async def _lead(self) -> None:
        epoch = await self.leadership.campaign()
        self.leading.set()
        log.info("gateway %s leads, epoch %d", self.settings.name, epoch)
        await self.leadership.keep()

    def _readiness(self) -> tuple[bool, dict[str, object]]:
        role = "leader" if self.leading.is_set() else "standby"
        return True, {"role": role, "frameworks": len(self.api.frameworks)}

    def _families(self) -> list[Metric]:
        return [
            prometheus.gauge(
                "meseta_gateway_subscriptions",
                "Mesos frameworks subscribed through this gateway now",
                {(): float(len(self.api.frameworks))},
            ),
            prometheus.counter(
                "meseta_gateway_calls",
                "Mesos scheduler calls by type and HTTP answer",
                {key: float(n) for key, n in self.api.calls.items()},
                ("call", "code"),
            ),
            prometheus.histogram(
                "meseta_event_loop_lag_seconds", "How late the event loop ran a short sleep", self.lag.lag
            ),
        ]

    async def _stop(self) -> None:
        self.leading.clear()
        await self.api.end_all("")
        if self._runner is not None:
            await self._runner.cleanup()
        await self.leadership.resign()
        await self.leadership.withdraw()
        await self.store.close()
