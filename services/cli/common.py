"""What every ``meseta`` command shares: the app, the options that name the cluster, defaults read
from the settings classes, and how a service is run."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import signal
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

from meseta.runtime import defaults
from meseta.runtime.etcd import EtcdStore
from meseta.runtime.gcwatch import GcWatch
from meseta.runtime.service import Service
from meseta.sdk import KillRefused, LogsUnavailable, eventloop, tracing
from meseta.sdk.bus import Bus
from meseta.sdk.wire import PortRange

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="``meseta``: run a master, an allocator, an agent, a local cluster or the demo; operate a cluster. "
    "Every flag also reads ``MESETA_*``.",
)

DEFAULT_AMQP_URL = defaults.AMQP_URL


def default(settings: type[Any], name: str) -> Any:
    """A settings class's default for ``name``: every flag shows the one the service itself uses."""
    found = {f.name: f for f in dataclasses.fields(settings)}[name]
    if found.default is dataclasses.MISSING:
        raise ValueError(f"{settings.__name__}.{name} has no default")
    return found.default


AmqpUrl = Annotated[str, typer.Option(envvar="MESETA_AMQP_URL", help="AMQP URL, vhost included.")]
AmqpUser = Annotated[
    str | None,
    typer.Option(
        envvar="MESETA_AMQP_USER",
        help="Log in as this provisioned user (meseta users), its URL read from --credentials; "
        "instead of --amqp-url.",
    ),
]
CredentialsFile = Annotated[
    Path,
    typer.Option(envvar="MESETA_CREDENTIALS", help="The file meseta users provision wrote."),
]
DEFAULT_CREDENTIALS = Path("meseta-credentials.json")


def login(amqp_url: str, user: str | None, credentials: Path) -> str:
    """The URL a command connects with: ``amqp_url``, or the provisioned ``user``'s from ``credentials``."""
    if user is None:
        return amqp_url
    from meseta.ops.users import Credentials

    try:
        return Credentials.load(credentials).url(user)
    except (OSError, KeyError, ValueError) as exc:
        typer.echo(f"no URL for user {user!r} in {credentials}: {exc!r} (meseta users provision)", err=True)
        raise typer.Exit(2) from None


EtcdEndpoint = Annotated[str, typer.Option(envvar="MESETA_ETCD_ENDPOINT", help="etcd host:port.")]
EtcdPrefix = Annotated[
    str, typer.Option(envvar="MESETA_ETCD_PREFIX", help="Key prefix of this cluster in etcd.")
]
LogLevel = Annotated[str, typer.Option(envvar="MESETA_LOG_LEVEL")]
Dev = Annotated[
    bool,
    typer.Option(
        "--dev",
        envvar="MESETA_DEV",
        help="Development mode: accept the broker's guest account and check no sender (no tenant "
        "boundaries). Without it the service must log in as its own provisioned user (meseta users).",
    ),
]
TraceExporter = Annotated[
    str,
    typer.Option(
        envvar=["MESETA_TRACE_EXPORTER", "OTEL_TRACES_EXPORTER"],
        help="Trace exporter: none, console or otlp.",
    ),
]
OtlpEndpoint = Annotated[
    str | None,
    typer.Option(
        envvar=["MESETA_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT"],
        help="Collector's OTLP/HTTP base URL (traces and metrics).",
    ),
]
Api = Annotated[
    str,
    typer.Option(envvar="MESETA_API", help="Masters' state API URLs, comma-separated: the leader answers."),
]
DEFAULT_API = defaults.API


_LOG_FORMAT = ["text"]
"""The ``--log-format`` given before the command (the app's callback sets it)."""


@app.callback()
def _options(
    ctx: typer.Context,
    config: Annotated[
        Path | None,
        typer.Option(
            "--config",
            envvar="MESETA_CONFIG",
            help="TOML file of settings (top-level keys: every command; a table named after a command: that "
            "command alone); flags and MESETA_* variables override it.",
        ),
    ] = None,
    log_format: Annotated[
        str,
        typer.Option(envvar="MESETA_LOG_FORMAT", help="Log lines: text, or json with trace and span ids."),
    ] = "text",
) -> None:
    # No docstring: the app's own help stays the help.
    from meseta.cli.config import default_map
    from meseta.runtime.logs import FORMATS

    if log_format not in FORMATS:
        raise typer.BadParameter(f"{log_format!r}: text or json", param_hint="--log-format")
    _LOG_FORMAT[0] = log_format
    if config is not None:
        from typer.core import TyperGroup

        assert isinstance(ctx.command, TyperGroup)
        ctx.default_map = default_map(config, ctx.command, ctx)


def setup(service: str, log_level: str, exporter: str, endpoint: str | None) -> None:
    from meseta.runtime import logs

    logs.configure(service, log_level, _LOG_FORMAT[0])
    logging.getLogger("aiormq").setLevel(logging.WARNING)
    logging.getLogger("aio_pika").setLevel(logging.WARNING)
    tracing.configure(service, exporter, endpoint, make_spans=_LOG_FORMAT[0] == "json")


_S = TypeVar("_S", bound=Service)


def build(command: str, make: Callable[[], _S]) -> _S:
    """Construct a service; a principal it must not run as (``guest`` without ``--dev``) is said plainly
    and ends the command with status 2, not a traceback."""
    from meseta.runtime.principal import PrincipalError

    try:
        return make()
    except PrincipalError as exc:
        typer.echo(f"meseta {command}: {exc}", err=True)
        raise typer.Exit(2) from None


def serve(service: Service) -> None:
    """Run a service until SIGINT/SIGTERM."""

    async def main() -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, lambda: asyncio.ensure_future(service.stop()))
        async with GcWatch(amortize=True).running():
            await service.run()

    eventloop.run(main())


def parse_ports(text: str) -> tuple[PortRange, ...]:
    """``31000-31099,32000`` into port ranges."""
    ranges = []
    for part in filter(None, (p.strip() for p in text.split(","))):
        begin, _, end = part.partition("-")
        ranges.append(PortRange(begin=int(begin), end=int(end or begin)))
    return tuple(ranges)


def parse_attributes(pairs: list[str]) -> dict[str, str]:
    """``["rack=r1", "zone=a"]`` into a dict."""
    attributes = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise typer.BadParameter(f"attribute {pair!r} is not KEY=VALUE")
        attributes[key] = value
    return attributes


T = TypeVar("T")


def ask(amqp_url: str, call: Callable[[Bus], Awaitable[T]]) -> T:
    """Run one call to the master over a short-lived bus; a refusal is printed and exits with 1."""

    async def main() -> T:
        bus = Bus(amqp_url, "cli")
        await bus.connect()
        try:
            return await call(bus)
        finally:
            await bus.close()

    try:
        return eventloop.run(main())
    except (LogsUnavailable, KillRefused) as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(1) from None


def with_store(etcd_endpoint: str, etcd_prefix: str, action: Callable[[EtcdStore], Awaitable[None]]) -> None:
    async def main() -> None:
        store = EtcdStore(etcd_endpoint, etcd_prefix)
        await store.connect()
        try:
            await action(store)
        finally:
            await store.close()

    eventloop.run(main())
