"""An operator's commands: the state API's tables, kills, logs, policies and roles, trace reports."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from meseta.cli.common import (
    DEFAULT_AMQP_URL,
    DEFAULT_API,
    AmqpUrl,
    Api,
    app,
    ask,
)


def _show(table_name: str, api: str, as_json: bool) -> None:
    from rich.console import Console

    from meseta.ops.state_client import NoLeader, fetch_state, split_apis
    from meseta.ops.tables import TABLES

    try:
        state = fetch_state(split_apis(api))
    except NoLeader as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(1) from None
    if as_json:
        if table_name == "status":
            typer.echo(state.model_dump_json(indent=2))
        else:
            typer.echo("[" + ",".join(x.model_dump_json() for x in getattr(state, table_name)) + "]")
        return
    Console(width=200).print(TABLES[table_name](state))


TokenFile = Annotated[
    Path | None,
    typer.Option(
        envvar="MESETA_OPERATOR_TOKEN_FILE",
        help="File holding the operator credential (else $MESETA_OPERATOR_TOKEN, else meseta up's).",
    ),
]

JsonFlag = Annotated[bool, typer.Option("--json", help="Print the API's JSON instead of a table.")]


@app.command()
def status(api: Api = DEFAULT_API, as_json: JsonFlag = False) -> None:
    """The cluster at a glance: leader, epoch, totals, recent offer round trips, each master's readiness."""
    _show("status", api, as_json)
    if not as_json:
        from meseta.ops.state_client import readiness, split_apis

        for base in split_apis(api):
            typer.echo(f"{base}: {readiness(base)}")


@app.command()
def agents(api: Api = DEFAULT_API, as_json: JsonFlag = False) -> None:
    """Agents with total, used and offered resources."""
    _show("agents", api, as_json)


@app.command()
def frameworks(api: Api = DEFAULT_API, as_json: JsonFlag = False) -> None:
    """Frameworks with role, weight, dominant and fair share, declined-offer ratio."""
    _show("frameworks", api, as_json)


@app.command()
def tasks(api: Api = DEFAULT_API, as_json: JsonFlag = False) -> None:
    """Live tasks with their state and agent."""
    _show("tasks", api, as_json)


@app.command()
def offers(api: Api = DEFAULT_API, as_json: JsonFlag = False) -> None:
    """Outstanding offers."""
    _show("offers", api, as_json)


@app.command()
def kill(
    task_id: Annotated[str, typer.Argument(help="The task.")],
    framework_id: Annotated[
        str | None, typer.Option(help="Needed when several frameworks use the id.")
    ] = None,
    api: Api = DEFAULT_API,
    token_file: TokenFile = None,
) -> None:
    """Kill a task as the operator: its framework hears KILLED with reason KILLED_BY_OPERATOR."""
    from urllib.parse import quote, urlencode

    query = f"?{urlencode({'framework_id': framework_id})}" if framework_id else ""
    answer = _operator(api, "POST", f"/api/v1/tasks/{quote(task_id, safe='')}/kill{query}", token_file)
    assert isinstance(answer, dict)
    typer.echo(f"killing {answer['task_id']} of {answer['framework_id']} on {answer['agent_id']}")


@app.command()
def logs(
    task_id: Annotated[str, typer.Argument(help="The task.")],
    framework_id: Annotated[
        str | None, typer.Option(help="Needed when several frameworks use the id.")
    ] = None,
    tail_bytes: Annotated[int, typer.Option(help="Bytes from the end of each stream.")] = 65536,
    amqp_url: AmqpUrl = DEFAULT_AMQP_URL,
) -> None:
    """Print a task's stdout (then its stderr, on stderr)."""
    from meseta.sdk import fetch_logs

    found = ask(amqp_url, lambda bus: fetch_logs(bus, task_id, framework_id, tail_bytes))
    typer.echo(found.stdout, nl=False)
    typer.echo(found.stderr, nl=False, err=True)


@app.command()
def policy(
    name: Annotated[str, typer.Argument(help="drf, wfs, priority or lottery.")],
    api: Api = DEFAULT_API,
    token_file: TokenFile = None,
) -> None:
    """Switch the running allocator's policy (takes effect within one tick, no restart)."""
    _operator(api, "PUT", "/api/v1/policy", token_file, {"policy": name})
    typer.echo(f"policy set to {name}")


@app.command()
def role(
    name: Annotated[str, typer.Argument(help="The role.")],
    weight: Annotated[float, typer.Option(help="Weight among roles.")] = 1.0,
    quota_cpus: Annotated[float, typer.Option(help="Guaranteed cpus.")] = 0.0,
    quota_mem: Annotated[float, typer.Option(help="Guaranteed memory, MiB.")] = 0.0,
    quota_gpus: Annotated[int, typer.Option(help="Guaranteed GPUs.")] = 0,
    api: Api = DEFAULT_API,
    token_file: TokenFile = None,
) -> None:
    """Set a role's weight and quota (guaranteed allocation, enforced by revocation)."""
    from urllib.parse import quote

    quota = {"cpus": quota_cpus, "mem": quota_mem, "gpus": quota_gpus}
    body = {"weight": weight, "quota": quota}
    _operator(api, "PUT", f"/api/v1/roles/{quote(name, safe='')}", token_file, body)
    typer.echo(
        f"role {name}: weight {weight:g}, quota cpus={quota_cpus:g} mem={quota_mem:g} gpus={quota_gpus}"
    )


trace_app = typer.Typer(no_args_is_help=True, help="Offer-cycle traces.")
app.add_typer(trace_app, name="trace")


@trace_app.command("report")
def trace_report(
    spans: Annotated[Path, typer.Argument(help="OTLP/JSON lines: the collector's traces.jsonl.")],
    plot: Annotated[Path | None, typer.Option(help="Write a latency plot (PNG) here.")] = None,
    json_out: Annotated[Path | None, typer.Option("--json", help="Write the report as JSON here.")] = None,
) -> None:
    """p50/p95/p99 of each offer-cycle stage and of the whole cycle, per framework."""
    import json

    from rich.console import Console

    from meseta.ops import trace_report as tr

    found, incomplete = tr.cycles(tr.read_spans(spans))
    if not found:
        typer.echo(f"no complete offer cycle in {spans} ({incomplete} incomplete)", err=True)
        raise typer.Exit(1)
    rep = tr.report(found, incomplete)
    Console(width=200).print(tr.table(rep))
    if json_out is not None:
        json_out.write_text(json.dumps(rep.as_dict(), indent=2))
    if plot is not None:
        tr.plot(found, rep, plot)
        typer.echo(f"plot written to {plot}")


def _operator(api: str, method: str, path: str, token_file: Path | None, body: object = None) -> object:
    from meseta.ops.operator_client import OperatorError, call, read_token
    from meseta.ops.state_client import split_apis

    try:
        return call(split_apis(api), method, path, read_token(token_file), body)
    except OperatorError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(1) from None


def _seconds(text: str) -> float:
    """``90``, ``90s``, ``5m``, ``2h``, ``1d`` -> seconds."""
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    number, unit = (text[:-1], text[-1]) if text[-1:] in units else (text, "s")
    try:
        value = float(number) * units[unit]
    except ValueError:
        raise typer.BadParameter(f"{text!r}: a duration such as 90, 90s, 5m, 2h or 1d") from None
    if value < 0:
        raise typer.BadParameter(f"{text!r}: a duration cannot be negative")
    return value


@app.command()
def drain(
    agent_id: Annotated[str, typer.Argument(help="The agent.")],
    deadline: Annotated[
        str, typer.Option(help="Time its tasks have before they are killed: 90s, 5m, 2h.")
    ] = "5m",
    api: Api = DEFAULT_API,
    token_file: TokenFile = None,
) -> None:
    """Take an agent out of service: no new offers, its frameworks told, tasks killed at the deadline."""
    body = {"deadline_seconds": _seconds(deadline)}
    answer = _operator(api, "POST", f"/api/v1/agents/{agent_id}/drain", token_file, body)
    assert isinstance(answer, dict)
    if answer["state"] == "DRAINED":
        typer.echo(f"agent {agent_id} DRAINED: it runs no task")
    else:
        typer.echo(f"agent {agent_id} {answer['state']}; its tasks are killed in {_seconds(deadline):.0f} s")


@app.command()
def undrain(
    agent_id: Annotated[str, typer.Argument(help="The agent.")],
    api: Api = DEFAULT_API,
    token_file: TokenFile = None,
) -> None:
    """Put a drained agent back in service (offered again)."""
    _operator(api, "POST", f"/api/v1/agents/{agent_id}/undrain", token_file)
    typer.echo(f"agent {agent_id} ACTIVE")


@app.command()
def maintenance(
    agent_ids: Annotated[list[str] | None, typer.Argument(help="Agents the window takes.")] = None,
    start: Annotated[str, typer.Option(help="How long from now the window starts: 0, 30m, 2h.")] = "0",
    duration: Annotated[str, typer.Option(help="How long it lasts: 30m, 2h.")] = "1h",
    drain_deadline: Annotated[str, typer.Option(help="Time tasks have once it starts.")] = "0",
    cancel: Annotated[str | None, typer.Option(help="Cancel this window (its agents are undrained).")] = None,
    api: Api = DEFAULT_API,
    token_file: TokenFile = None,
) -> None:
    """Schedule a maintenance window (its agents drain when it starts, return when it ends), list the
    windows (no agents given), or cancel one."""
    import json
    import time

    if cancel is not None:
        _operator(api, "DELETE", f"/api/v1/maintenance/{cancel}", token_file)
        typer.echo(f"maintenance window {cancel} cancelled")
        return
    if not agent_ids:
        typer.echo(json.dumps(_operator(api, "GET", "/api/v1/maintenance", token_file), indent=2))
        return
    body = {
        "agent_ids": agent_ids,
        "start": time.time() + _seconds(start),
        "duration_seconds": _seconds(duration),
        "drain_seconds": _seconds(drain_deadline),
    }
    window = _operator(api, "POST", "/api/v1/maintenance", token_file, body)
    assert isinstance(window, dict)
    typer.echo(f"maintenance window {window['window_id']} for {', '.join(window['agent_ids'])}")


@app.command()
def teardown(
    framework_id: Annotated[str, typer.Argument(help="The framework.")],
    api: Api = DEFAULT_API,
    token_file: TokenFile = None,
) -> None:
    """Remove a framework as the operator: its tasks are killed, its offers rescinded."""
    _operator(api, "POST", f"/api/v1/frameworks/{framework_id}/teardown", token_file)
    typer.echo(f"framework {framework_id} torn down")


@app.command("mark-gone")
def mark_gone(
    agent_id: Annotated[str, typer.Argument(help="The agent.")],
    api: Api = DEFAULT_API,
    token_file: TokenFile = None,
) -> None:
    """Declare an agent gone for good: its tasks are LOST now, and it is never registered again."""
    _operator(api, "POST", f"/api/v1/agents/{agent_id}/gone", token_file)
    typer.echo(f"agent {agent_id} GONE")
