"""The Mesos v1 scheduler API over HTTP: ``GET /version`` and ``POST /api/v1/scheduler``.

SUBSCRIBE is answered 200 with a chunked RecordIO stream of events and a ``Mesos-Stream-Id`` header;
every other call comes on a request of its own carrying that header, and is answered 202 once it is on
its way to the master (what the master makes of it arrives on the stream, as in Mesos). Only JSON
bodies are read (protobuf: 415). A standby gateway answers 307 to the leader (503 while none leads), and
SUBSCRIBE answers 503 while no Meseta master answers, which pymesos retries.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import functools
import json
import logging
import socket
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from pydantic import ValidationError

from meseta.gateway import recordio, translate
from meseta.gateway.principals import Principal, Unauthorized, authenticate, basic
from meseta.gateway.secrets import Secrets
from meseta.gateway.session import Session
from meseta.gateway.settings import GatewaySettings
from meseta.gateway.translate import Invalid, Json
from meseta.sdk import wire
from meseta.sdk.client import FrameworkClient, SubscribeError
from meseta.sdk.wire.codec import first_reason

log = logging.getLogger(__name__)

SCHEDULER_PATH = "/api/v1/scheduler"
DEFAULT_REFUSE_SECONDS = 5.0
"""Mesos's Filters.refuse_seconds when a call gives none (ACCEPT's unused resources too)."""
_POLL = 0.5
"""Seconds between looks at whether a subscriber's connection is still open."""


class Refused(Exception):
    """A call refused before anything was done: its HTTP status and the reason, sent to the caller."""

    def __init__(self, status: int, text: str) -> None:
        super().__init__(text)
        self.status = status
        self.text = text


class SchedulerApi:
    """The gateway's HTTP side: subscriptions by stream id and by framework id."""

    def __init__(
        self,
        settings: GatewaySettings,
        secrets: Secrets,
        principals: dict[str, Principal] | None,
        leading: Callable[[], bool],
        leader_url: Callable[[], Awaitable[str | None]],
    ) -> None:
        self.settings = settings
        self.secrets = secrets
        self.principals = principals
        self.leading = leading
        self.leader_url = leader_url
        self.sessions: dict[str, Session] = {}
        """By Mesos-Stream-Id."""
        self.frameworks: dict[str, Session] = {}
        """By framework id: the framework's current subscription."""
        self.calls: Counter[tuple[str, str]] = Counter()
        """(call type, HTTP status) -> count, for /metrics."""
        self.port: int | None = None

    def add_routes(self, app: web.Application) -> None:
        app.router.add_get("/version", self._version)
        app.router.add_post(SCHEDULER_PATH, self._scheduler)

    async def end_all(self, why: str) -> None:
        """End every subscription (this gateway stopped leading, or stops)."""
        for session in list(self.sessions.values()):
            await session.end(translate.event("ERROR", {"message": why}) if why else None)
        self.sessions.clear()
        self.frameworks.clear()

    def _forget(self, session: Session) -> None:
        """Drop ``session`` from both indexes, where it is still the one there (not its successor)."""
        if self.sessions.get(session.stream_id) is session:
            del self.sessions[session.stream_id]
        if self.frameworks.get(session.framework_id) is session:
            del self.frameworks[session.framework_id]

    # --- routes ------------------------------------------------------------------------------------------

    async def _version(self, _: web.Request) -> web.Response:
        return web.json_response(
            {
                "version": translate.VERSION,
                "build_user": "meseta",
                "build_date": "",
                "build_time": 0,
                "git_tag": translate.VERSION,
                "git_sha": "",
            }
        )

    async def _scheduler(self, request: web.Request) -> web.StreamResponse:
        kind = "?"
        try:
            if not self.leading():
                leader = await self.leader_url()
                if leader is None:
                    raise Refused(503, "no gateway leads yet; retry")
                raise web.HTTPTemporaryRedirect(leader.rstrip("/") + SCHEDULER_PATH)
            body = await self._body(request)
            kind = str(body.get("type", "?"))[:32]
            if kind == "SUBSCRIBE":
                return await self._subscribe(request, body)
            await self._call(request, kind, body)
            self.calls[(kind, "202")] += 1
            return web.Response(status=202)
        except Refused as exc:
            self.calls[(kind, str(exc.status))] += 1
            log.info("refused %s (%d): %s", kind, exc.status, exc.text)
            headers = {"WWW-Authenticate": 'Basic realm="meseta"'} if exc.status == 401 else None
            return web.Response(status=exc.status, text=exc.text + "\n", headers=headers)

    async def _body(self, request: web.Request) -> Json:
        if request.content_type != "application/json":
            raise Refused(
                415, f"only application/json bodies are supported (not {request.content_type or 'none'})"
            )
        try:
            raw = await request.read()  # the whole body; over the app's client_max_size: 413
        except web.HTTPRequestEntityTooLarge:
            raise Refused(413, f"a call may have at most {self.settings.max_body_bytes} bytes") from None
        try:
            body = json.loads(raw)
        except (ValueError, UnicodeDecodeError) as exc:
            raise Refused(400, f"the body is not JSON: {exc}") from None
        if not isinstance(body, dict):
            raise Refused(400, "a call must be a JSON object")
        return body

    def _principal(self, request: web.Request) -> Principal | None:
        """The caller's principal (None in development mode, where nobody is asked)."""
        if self.principals is None:
            return None
        try:
            return authenticate(self.principals, request.headers.get("Authorization"))
        except Unauthorized as exc:
            raise Refused(401, str(exc)) from None

    # --- SUBSCRIBE ---------------------------------------------------------------------------------------

    async def _subscribe(self, request: web.Request, body: Json) -> web.StreamResponse:
        principal = self._principal(request)
        info = (
            body.get("subscribe", {}).get("framework_info")
            if isinstance(body.get("subscribe"), dict)
            else None
        )
        if not isinstance(info, dict) or not isinstance(info.get("name"), str) or not info["name"]:
            raise Refused(400, "SUBSCRIBE needs subscribe.framework_info with a name")
        roles = info.get("roles") or ([info["role"]] if isinstance(info.get("role"), str) else [])
        if not isinstance(roles, list) or len(roles) > 1:
            raise Refused(400, "one role per framework (MULTI_ROLE with several roles is not supported)")
        asked = str(roles[0]) if roles else None
        if principal is not None:
            if info.get("principal") not in (None, principal.name):
                raise Refused(403, f"framework_info.principal is not {principal.name!r}, who authenticated")
            if asked not in (None, "*", principal.role):
                raise Refused(403, f"principal {principal.name!r} may not use role {asked!r}")
            role, amqp_url, who = principal.role, principal.amqp_url, principal.name
        else:
            try:
                given = basic(request.headers.get("Authorization"))
            except Unauthorized as exc:  # not asked for, but malformed: refused, not a 500
                raise Refused(401, str(exc)) from None
            role, amqp_url = asked or "*", self.settings.amqp_url
            who = given[0] if given else str(info.get("principal") or "")
        try:
            framework_id = (
                translate.unwrap(body["framework_id"], "framework_id") if body.get("framework_id") else None
            )
            if framework_id is None and info.get("id"):
                framework_id = translate.unwrap(info["id"], "framework_info.id")
        except Invalid as exc:
            raise Refused(400, str(exc)) from None
        timeout = info.get("failover_timeout", 0.0)
        if not isinstance(timeout, int | float) or not 0 <= timeout <= 7 * 24 * 3600:
            raise Refused(400, "failover_timeout must be seconds between 0 and a week")
        listed = info.get("capabilities")
        capabilities = (
            {c.get("type") for c in listed if isinstance(c, dict)} if isinstance(listed, list) else set()
        )
        secret = None
        if framework_id is not None:
            kept = await self.secrets.get(framework_id)
            if kept is None or kept.principal != who:
                # Unknown here, or another principal's: the same answer, so ids cannot be probed.
                raise Refused(403, f"framework {framework_id} is not one this principal subscribed here")
            secret = kept.secret
            old = self.frameworks.get(framework_id)
            if old is not None:
                self._forget(old)
                await old.end(translate.event("ERROR", {"message": "Framework failed over"}))
        client = FrameworkClient(
            amqp_url,
            info["name"][:128],
            role=role,
            framework_id=framework_id,
            secret=secret,
            failover_timeout=float(timeout),
            auto_acknowledge=False,
            partition_aware="PARTITION_AWARE" in capabilities,
        )
        try:
            await client.subscribe(timeout=self.settings.subscribe_timeout)
        except SubscribeError as exc:
            await client.close()
            text = str(exc)
            if text.startswith("no answer"):
                raise Refused(503, f"no Meseta master answered: {text}") from None
            raise Refused(403 if text.startswith(wire.ErrorCode.UNAUTHORIZED) else 400, text) from None
        except Exception as exc:  # the broker refused this principal's login, or is away
            await client.close()
            raise Refused(503, f"cannot reach Meseta's broker as this framework: {exc}") from None
        assert client.framework_id is not None and client.secret is not None
        await self.secrets.put(client.framework_id, who, client.secret)
        session = Session(client, who, role)
        self.sessions[session.stream_id] = session
        self.frameworks[session.framework_id] = session
        session.start()
        log.info(
            "framework %s (%s, principal %r, role %s) subscribed on stream %s",
            session.framework_id,
            info["name"],
            who,
            role,
            session.stream_id,
        )
        self.calls[("SUBSCRIBE", "200")] += 1
        return await self._stream(request, session)

    async def _stream(self, request: web.Request, session: Session) -> web.StreamResponse:
        response = web.StreamResponse(
            status=200, headers={"Content-Type": "application/json", "Mesos-Stream-Id": session.stream_id}
        )
        response.enable_chunked_encoding()
        await response.prepare(request)
        subscribed = {
            "framework_id": translate.wrap(session.framework_id),
            "heartbeat_interval_seconds": self.settings.heartbeat_interval,
            "master_info": self._master_info,
        }
        try:
            await self._write(response, translate.event("SUBSCRIBED", subscribed))
            next_beat = time.monotonic() + self.settings.heartbeat_interval
            while True:
                transport = request.transport
                if transport is None or transport.is_closing():
                    break  # the framework went away: its failover timeout runs at the master
                try:
                    event = await asyncio.wait_for(session.events.get(), _POLL)
                except TimeoutError:
                    if time.monotonic() >= next_beat:
                        await self._write(response, translate.event("HEARTBEAT"))
                        next_beat = time.monotonic() + self.settings.heartbeat_interval
                    continue
                if event is None:
                    break
                await self._write(response, event)
        except (ConnectionError, RuntimeError) as exc:  # written to a closed connection
            log.info("stream %s of %s closed: %r", session.stream_id, session.framework_id, exc)
        finally:
            self._forget(session)
            await session.end()
            log.info("stream %s of framework %s ended", session.stream_id, session.framework_id)
        return response

    async def _write(self, response: web.StreamResponse, event: Json) -> None:
        """One record, in HTTP chunks of at most ``chunk_bytes`` (a framework reassembles records)."""
        data = recordio.encode(event)
        step = self.settings.chunk_bytes
        for i in range(0, len(data), step):
            await response.write(data[i : i + step])

    @functools.cached_property
    def _master_info(self) -> Json:
        """What SUBSCRIBED says of this gateway: worked out once (a name lookup), at the first
        subscription, when the port is bound."""
        host = self.settings.advertise_host or socket.gethostname()
        port = self.port or 0
        try:
            ip = int.from_bytes(socket.inet_aton(socket.gethostbyname(host)), "little")
        except OSError:
            ip = 0
        return {
            "id": self.settings.name,
            "ip": ip,
            "port": port,
            "hostname": host,
            "version": translate.VERSION,
            "address": {"hostname": host, "port": port},
        }

    # --- the other calls ---------------------------------------------------------------------------------

    async def _call(self, request: web.Request, kind: str, body: Json) -> None:
        stream = request.headers.get("Mesos-Stream-Id")
        if not stream:
            raise Refused(
                400, "calls other than SUBSCRIBE need the Mesos-Stream-Id header of the subscription"
            )
        try:
            framework_id = translate.unwrap(body.get("framework_id"), "framework_id")
        except Invalid as exc:
            raise Refused(400, str(exc)) from None
        session = self.sessions.get(stream)
        if session is None or session.framework_id != framework_id:
            raise Refused(
                400,
                "the Mesos-Stream-Id of this request does not match the stream of framework "
                f"{framework_id} (subscribe again after a failover)",
            )
        principal = self._principal(request)
        if principal is not None and principal.name != session.principal:
            raise Refused(403, f"principal {principal.name!r} did not subscribe framework {framework_id}")
        handler = self._handlers.get(kind)
        if handler is None:
            raise Refused(400, f"call {kind} is not supported by this gateway (see docs/MESOS_API.md)")
        section = body.get(kind.lower(), {})
        if not isinstance(section, dict):
            raise Refused(400, f"{kind.lower()} must be an object")
        try:
            await handler(self, session, section)
        except Invalid as exc:
            raise Refused(400, f"{kind}: {exc}") from None
        except ValidationError as exc:  # an id or value the wire contract refuses (length, characters)
            raise Refused(400, f"{kind}: {first_reason(exc)}") from None

    async def _accept(self, session: Session, accept: Json) -> None:
        offer_ids = _ids(accept.get("offer_ids"), "offer_ids")
        refuse = translate.refuse_seconds(accept.get("filters"), DEFAULT_REFUSE_SECONDS)
        tasks: list[wire.TaskInfo] = []
        for operation in accept.get("operations", []) or []:
            kind = operation.get("type") if isinstance(operation, dict) else None
            if kind != "LAUNCH":
                raise Invalid(f"operation {kind} is not supported (LAUNCH only)")
            listed = translate.get(operation, "launch", "task_infos") or []
            for raw in listed if isinstance(listed, list) else []:
                try:
                    tasks.append(translate.task(raw, self.settings.default_image))
                except Invalid as exc:
                    # As Mesos: the task that cannot run is TASK_ERROR; the others launch.
                    task_id = translate.task_id_of(raw) or "(no task id)"
                    status = translate.gateway_status(task_id, "TASK_ERROR", "REASON_TASK_INVALID", str(exc))
                    session.push(translate.event("UPDATE", {"status": status}))
        if tasks:
            message_id = await session.client.accept(offer_ids, tasks, refuse_seconds=refuse)
            session.accepted(message_id, offer_ids, refuse)
        else:
            await session.client.decline(offer_ids, refuse_seconds=refuse)

    async def _decline(self, session: Session, decline: Json) -> None:
        refuse = translate.refuse_seconds(decline.get("filters"), DEFAULT_REFUSE_SECONDS)
        await session.client.decline(_ids(decline.get("offer_ids"), "offer_ids"), refuse_seconds=refuse)

    async def _revive(self, session: Session, _: Json) -> None:
        await session.client.revive()

    async def _suppress(self, session: Session, _: Json) -> None:
        await session.client.suppress()

    async def _kill(self, session: Session, kill: Json) -> None:
        task_id = translate.unwrap(kill.get("task_id"), "task_id")
        grace = translate.seconds(translate.get(kill, "kill_policy", "grace_period"))
        grace = None if grace is None else min(600.0, max(0.0, grace))
        await session.client.kill(task_id, grace_seconds=grace)

    async def _acknowledge(self, session: Session, ack: Json) -> None:
        agent_id = translate.unwrap(ack.get("agent_id"), "agent_id")
        task_id = translate.unwrap(ack.get("task_id"), "task_id")
        if not isinstance(ack.get("uuid"), str):
            raise Invalid("acknowledge.uuid must be the base64 uuid of the update")
        uuid = translate.uuid_from_mesos(ack["uuid"])
        try:
            acknowledged = wire.Acknowledged(agent_id=agent_id, task_id=task_id, uuid=uuid)
        except ValueError:
            raise Invalid(f"uuid {ack['uuid']!r:.60} is not one this gateway sent") from None
        await session.client.acknowledge_update(acknowledged)

    async def _reconcile(self, session: Session, reconcile: Json) -> None:
        listed = reconcile.get("tasks", []) or []
        if not isinstance(listed, list):
            raise Invalid("reconcile.tasks must be a list")
        task_ids = [
            translate.unwrap(t.get("task_id") if isinstance(t, dict) else None, "task_id") for t in listed
        ]
        await session.client.reconcile(task_ids)

    async def _message(self, session: Session, message: Json) -> None:
        agent_id = translate.unwrap(message.get("agent_id"), "agent_id")
        executor_id = translate.unwrap(message.get("executor_id"), "executor_id")
        try:
            data = base64.b64decode(str(message.get("data", "")), validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            raise Invalid(
                "message.data must be base64 of UTF-8 text (Meseta's executor messages are text)"
            ) from None
        await session.client.send_to_executor(agent_id, executor_id, data)

    async def _teardown(self, session: Session, _: Json) -> None:
        await session.client.teardown()
        await self.secrets.forget(session.framework_id)
        self._forget(session)
        await session.end()

    async def _ignored(self, session: Session, _: Json) -> None:
        """Calls Mesos's default allocator also ignores (REQUEST), and inverse-offer answers: this
        gateway sends no inverse offers, so their ids are unknown, as Mesos ignores unknown ids."""

    _handlers: dict[str, Callable[[SchedulerApi, Session, Json], Awaitable[None]]] = {
        "ACCEPT": _accept,
        "DECLINE": _decline,
        "REVIVE": _revive,
        "SUPPRESS": _suppress,
        "KILL": _kill,
        "ACKNOWLEDGE": _acknowledge,
        "RECONCILE": _reconcile,
        "MESSAGE": _message,
        "TEARDOWN": _teardown,
        "REQUEST": _ignored,
        "ACCEPT_INVERSE_OFFERS": _ignored,
        "DECLINE_INVERSE_OFFERS": _ignored,
    }


def _ids(listed: Any, what: str) -> list[str]:
    if not isinstance(listed, list) or not listed:
        raise Invalid(f"{what} must be a non-empty list of ids")
    return [translate.unwrap(i, what) for i in listed]
