"""The master's read-only state API over HTTP, its OpenAPI description and the live web page.

Every master serves it; only the leader has the cluster's state, so a standby answers 503 with
who it is (a load balancer or the CLI moves on to the next master).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from importlib import resources
from typing import Any

from aiohttp import web
from pydantic import BaseModel, TypeAdapter

from meseta.master import views
from meseta.master.activity import Activity
from meseta.master.cluster import Cluster

log = logging.getLogger(__name__)

CACHE_SECONDS = 0.5


class StateApi:
    """An aiohttp application over the master's state."""

    def __init__(
        self,
        cluster: Cluster,
        activity: Activity,
        leader: Callable[[], views.LeaderView],
        starvation_after: float,
    ) -> None:
        self.cluster = cluster
        self.activity = activity
        self.leader = leader
        self.starvation_after = starvation_after
        self._runner: web.AppRunner | None = None
        self.port: int | None = None
        """The bound port, once started."""
        self._page = resources.files("meseta.master").joinpath("page.html").read_text()
        self._cache: tuple[float, views.StateView] | None = None

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/", self._index)
        app.router.add_get("/openapi.json", self._openapi)
        app.router.add_get("/api/v1/leader", self._leader)
        for path in views.ROUTES:
            if path != "/api/v1/leader":
                app.router.add_get(path, self._document)
        return app

    async def start(self, host: str, port: int) -> None:
        self._runner = web.AppRunner(self.app(), access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port)
        await site.start()
        self.port = int(self._runner.addresses[0][1])
        log.info("state API on http://%s:%d/", host, self.port)

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    def _rendered(self) -> views.StateView:
        """The state, rendered at most once per ``CACHE_SECONDS``: rendering a large cluster takes the
        event loop for a while, and pollers (pages, CLIs) must not multiply that."""
        now = time.monotonic()
        if self._cache is None or now - self._cache[0] > CACHE_SECONDS:
            state = views.state(self.cluster, self.activity, self.leader(), self.starvation_after)
            self._cache = (now, state)
        return self._cache[1]

    async def _index(self, _: web.Request) -> web.Response:
        return web.Response(text=self._page, content_type="text/html")

    async def _openapi(self, _: web.Request) -> web.Response:
        return web.json_response(views.openapi())

    async def _leader(self, _: web.Request) -> web.Response:
        return _json(self.leader())

    async def _document(self, request: web.Request) -> web.Response:
        leader = self.leader()
        if not leader.leading:
            return _json(leader, status=503)
        state = self._rendered()
        name = request.path.rsplit("/", 1)[1]
        if name == "state":
            return _json(state)
        items: list[Any] = getattr(state, name)
        return web.Response(body=TypeAdapter(list[Any]).dump_json(items), content_type="application/json")


def _json(model: BaseModel, status: int = 200) -> web.Response:
    return web.Response(body=model.model_dump_json(), status=status, content_type="application/json")
