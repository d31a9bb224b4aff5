"""A service's own principal: guest refused outside development mode, user names read back one way only,
and the broker permissions each principal is provisioned with."""

from __future__ import annotations

import re

import pytest

from meseta.ops.users import permission
from meseta.runtime.principal import PrincipalError, own_identity
from meseta.sdk import wire

P = wire.Principals("prod")


@pytest.mark.parametrize("kind", ["master", "allocator", "agent"])
def test_guest_is_refused_outside_development_mode(kind: str) -> None:
    url = "amqp://guest:guest@127.0.0.1:5672/"
    with pytest.raises(PrincipalError, match=r"default account 'guest'.*--dev"):
        own_identity(kind, kind, url, dev=False)
    assert own_identity(kind, kind, url, dev=True) is None


def test_a_service_must_log_in_as_its_own_kind() -> None:
    with pytest.raises(PrincipalError, match="must log in as a master user"):
        own_identity("master", "master", "amqp://prod.agent.a1:pw@h/", dev=False)
    identity = own_identity("agent", "agent", "amqp://prod.agent.a1:pw@h/", dev=False)
    assert identity == wire.Identity(P, "agent", "a1")


def test_the_services_refuse_guest_at_construction() -> None:
    from meseta.master import MasterService, MasterSettings

    with pytest.raises(PrincipalError, match="guest"):
        MasterService(MasterSettings("amqp://guest:guest@127.0.0.1/"))


@pytest.mark.parametrize(
    ("user", "expected"),
    [
        ("prod.master", wire.Identity(P, "master")),
        ("prod.framework.alice", wire.Identity(P, "framework", "alice")),
        ("prod.agent.host-1.rack", wire.Identity(P, "agent", "host-1.rack")),
        ("prod.framework.al.ice", None),
        ("prod.master.extra", None),
        ("prod.agent", None),
        ("guest", None),
        ("prod.root", None),
    ],
)
def test_user_names_are_read_back_one_way_only(user: str, expected: wire.Identity | None) -> None:
    assert wire.identify(user) == expected


def _may(pattern: str, name: str) -> bool:
    return re.fullmatch(pattern, name) is not None


def test_each_principal_reads_only_its_own_queues() -> None:
    agent = permission(P, P.agent("a1"))
    assert _may(agent.read, "meseta.agent.a1")
    assert not any(
        _may(agent.read, q) for q in ("meseta.agent.a10", "meseta.agent.a2", "meseta.master.calls")
    )
    assert agent.configure == "^$" and not _may(agent.write, "meseta.calls")
    alice = permission(P, P.framework("alice"))
    assert _may(alice.read, "meseta.framework.alice-0123abcd") and _may(alice.read, wire.reply_queue("x1"))
    for other in (
        "meseta.framework.alice2-0123",
        "meseta.framework.bob-0123",
        "meseta.calls",
        "meseta.offers",
    ):
        assert not _may(alice.read, other), other
    assert not _may(alice.write, "meseta.launches") and _may(alice.write, "meseta.calls")
    executors = permission(P, P.executors("a1"))
    assert _may(executors.read, wire.executor_queue(wire.executor_key("a1", "fw", "e")))
    assert not _may(executors.read, wire.executor_queue(wire.executor_key("a2", "fw", "e")))
    assert not _may(executors.read, "meseta.agent.a1")
    with pytest.raises(ValueError, match="not a principal"):
        permission(P, wire.Principals("other").master)


@pytest.mark.parametrize("command", ["master", "allocator", "agent"])
def test_the_commands_refuse_guest_plainly_without_dev(command: str) -> None:
    from typer.testing import CliRunner

    from meseta.cli import app

    # Port 1: nothing is reached; the refusal comes before any connection.
    result = CliRunner().invoke(app, [command, "--amqp-url", "amqp://guest:guest@127.0.0.1:1/"])
    assert result.exit_code == 2, result.output
    assert f"meseta {command}: the {command} refuses to run as the broker's default account" in result.output
