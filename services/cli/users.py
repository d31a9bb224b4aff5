"""``meseta users``: provision a cluster's principals (broker users, permissions, topology) and read their
URLs back."""

from __future__ import annotations

import time
from typing import Annotated

import typer

from meseta.cli.common import DEFAULT_CREDENTIALS, CredentialsFile, app

users_app = typer.Typer(
    no_args_is_help=True,
    help="A cluster's principals: one broker user per master, allocator, operator, agent, agent's "
    "executors and framework principal, each confined by the broker (docs/SECURITY.md).",
)
app.add_typer(users_app, name="users")

Credentials = CredentialsFile


@users_app.command()
def provision(
    agent: Annotated[list[str] | None, typer.Option(help="An agent id (no dots); repeatable.")] = None,
    framework: Annotated[
        list[str] | None, typer.Option(help="A framework principal ([A-Za-z0-9_]); repeatable.")
    ] = None,
    prefix: Annotated[
        str, typer.Option(envvar="MESETA_PRINCIPALS", help="The cluster's user prefix.")
    ] = "meseta",
    vhost: Annotated[str, typer.Option(envvar="MESETA_VHOST", help="Created if missing.")] = "/",
    broker: Annotated[
        str,
        typer.Option(
            envvar="MESETA_BROKER",
            help="host:port the services reach the broker at (each node's, comma-separated, on a cluster).",
        ),
    ] = "127.0.0.1:5672",
    management_url: Annotated[
        str, typer.Option(envvar="MESETA_MANAGEMENT_URL")
    ] = "http://127.0.0.1:15672/api",
    admin_user: Annotated[str, typer.Option(envvar="MESETA_ADMIN_USER")] = "guest",
    admin_password: Annotated[str, typer.Option(envvar="MESETA_ADMIN_PASSWORD")] = "guest",
    out: Credentials = DEFAULT_CREDENTIALS,
    wait: Annotated[
        float, typer.Option(help="Seconds to wait for the management API to answer (a broker starting).")
    ] = 0.0,
) -> None:
    """Create or update the users, their permissions and the topology they use; users already in OUT
    keep their passwords. Run it again to add agents or framework principals."""
    from meseta.ops.users import Credentials as Saved
    from meseta.ops.users import provision as run
    from meseta.runtime.rabbitmq import Management
    from meseta.sdk import wire

    management = Management(management_url, admin_user, admin_password)
    deadline = time.monotonic() + wait
    while True:
        try:
            management.call("GET", "/overview")
            break
        except OSError as exc:  # refused, reset, or an HTTP error (urllib's are OSErrors too)
            if time.monotonic() >= deadline:
                typer.echo(f"meseta users provision: no management API at {management_url}: {exc}", err=True)
                raise typer.Exit(1) from None
            time.sleep(1)
    known = Saved.load(out).passwords if out.exists() else {}
    try:
        management.create_vhost(vhost)
        credentials = run(
            management,
            vhost,
            wire.Principals(prefix),
            agents=agent or (),
            frameworks=framework or (),
            host=broker,
            known=known,
        )
    except ValueError as exc:
        typer.echo(f"meseta users provision: {exc}", err=True)
        raise typer.Exit(2) from None
    credentials.save(out)
    typer.echo(f"{len(credentials.passwords)} users of {prefix!r} on vhost {vhost!r}; credentials in {out}")


@users_app.command()
def url(
    user: Annotated[str, typer.Argument(help="A user name, e.g. meseta.master or meseta.agent.a1.")],
    credentials: Credentials = DEFAULT_CREDENTIALS,
) -> None:
    """Print the AMQP URL that logs in as USER (give it to the service as --amqp-url)."""
    from meseta.ops.users import Credentials as Saved

    saved = Saved.load(credentials)
    if user not in saved.passwords:
        typer.echo(f"no user {user!r} in {credentials}: provision it first", err=True)
        raise typer.Exit(1)
    typer.echo(saved.url(user))
