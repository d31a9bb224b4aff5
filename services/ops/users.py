"""Provisioning a cluster's principals: broker users, their permissions, and the topology they may use.

Each principal (meseta.sdk.wire.principals) gets a RabbitMQ user with a random password and three
permission patterns (configure, write, read) on the cluster's vhost, made so that:

- only the master may configure anything (declare, bind, delete) besides private reply queues;
- an agent reads only its own queue, an executor only its agent's executors' queues, a framework only its
  own frameworks' queues (their ids begin with its principal), the allocator only its events queue;
- nobody but the master reads the calls, heartbeats, status or dead-letter queues.

What a principal may *write* is the exchange it sends to; *which* messages it may send there is checked by
the receiver from the broker-checked ``user_id`` (an agent may publish to the launches exchange, to talk to
its executors, and every agent refuses a LAUNCH that is not the master's).

Since only the master may configure, the exchanges, the dead-letter queue, each agent's queue and the
allocator's queue are declared here, the way the services would declare them. Users are the broker's,
not the vhost's: ``prefix`` keeps clusters (and tests) that share a broker apart.
"""

from __future__ import annotations

import json
import re
import secrets
import urllib.error
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from meseta.runtime.rabbitmq import Management
from meseta.sdk import wire
from meseta.sdk.bus import dead_letter_arguments, default_queue_type, queue_arguments


def _name(value: str) -> str:
    return re.escape(value)


NOTHING = "^$"
_REPLY_QUEUES = _name(wire.reply_queue("")) + ".*"


def _any(*names: str) -> str:
    return "^(" + "|".join(names) + ")$"


@dataclass(frozen=True)
class Permission:
    """RabbitMQ's three permission patterns of one user on one vhost."""

    configure: str
    write: str
    read: str


def permission(principals: wire.Principals, user: str) -> Permission:
    """The permissions of one of the cluster's users."""
    identity = wire.identify(user)
    if identity is None or identity.principals != principals:
        raise ValueError(f"{user!r} is not a principal of cluster {principals.prefix!r}")
    dead_letters = _name(wire.Exchange.DEAD_LETTER)
    match identity.kind:
        case "master":
            return Permission(".*", ".*", ".*")
        case "allocator":
            return Permission(
                NOTHING,
                _any(_name(wire.Exchange.ALLOCATION), dead_letters),
                _any(_name(wire.Queue.ALLOCATOR_EVENTS)),
            )
        case "operator":
            return Permission(
                _any(_REPLY_QUEUES), _any(_name(wire.Exchange.CALLS), dead_letters), _any(_REPLY_QUEUES)
            )
        case "agent":
            return Permission(
                NOTHING,
                _any(
                    "amq\\.default",  # answers to GET_LOGS go to the caller's reply queue
                    _name(wire.Exchange.HEARTBEATS),
                    _name(wire.Exchange.STATUS),
                    _name(wire.Exchange.LAUNCHES),  # to its executors
                    dead_letters,
                ),
                _any(_name(wire.agent_queue(identity.name))),
            )
        case "executors":
            own = _name(wire.executor_queue(wire.executor_key(identity.name, "", "")).rstrip(".")) + r"\..*"
            return Permission(NOTHING, _any(_name(wire.Exchange.LAUNCHES), dead_letters), _any(own))
        case _:  # framework
            own = _name(wire.framework_queue(identity.name)) + "-[0-9a-f]+"
            return Permission(
                _any(_REPLY_QUEUES),
                _any(_name(wire.Exchange.CALLS), dead_letters),
                _any(_REPLY_QUEUES, own),
            )


@dataclass(frozen=True)
class Credentials:
    """The users provisioned for one cluster and how to reach the broker as each."""

    prefix: str
    host: str
    """``host:port`` of the broker, or of each node of a RabbitMQ cluster, comma-separated."""
    vhost: str
    passwords: Mapping[str, str]

    @property
    def principals(self) -> wire.Principals:
        return wire.Principals(self.prefix)

    def url(self, user: str) -> str:
        """The AMQP URL that logs in as ``user``: one per node, comma-separated, on a cluster (every
        service and the SDK take that list and move to the next node when theirs is lost)."""
        login = f"{quote(user, safe='')}:{quote(self.passwords[user], safe='')}"
        vhost = quote(self.vhost, safe="")
        return ",".join(f"amqp://{login}@{host}/{vhost}" for host in self.host.split(","))

    def save(self, path: Path) -> None:
        """Written readable by its owner only: it holds every password."""
        path.touch(mode=0o600, exist_ok=True)
        path.chmod(0o600)
        data = {
            "prefix": self.prefix,
            "host": self.host,
            "vhost": self.vhost,
            "passwords": dict(self.passwords),
        }
        path.write_text(json.dumps(data, indent=2) + "\n")

    @classmethod
    def load(cls, path: Path) -> Credentials:
        data = json.loads(path.read_text())
        return cls(data["prefix"], data["host"], data["vhost"], dict(data["passwords"]))


def cluster_users(
    principals: wire.Principals, agents: Iterable[str], frameworks: Iterable[str], executors: bool = True
) -> list[str]:
    """Every user of a cluster with these agents and framework principals."""
    users = [principals.master, principals.allocator, principals.operator]
    for agent_id in agents:
        if not wire.is_valid_id(agent_id) or "." in agent_id:
            raise ValueError(f"agent id {agent_id!r}: ids of provisioned agents have no dots")
        users.append(principals.agent(agent_id))
        if executors:
            users.append(principals.executors(agent_id))
    for name in frameworks:
        if not wire.is_valid_principal(name):
            raise ValueError(f"framework principal {name!r} must match {wire.PRINCIPAL_PATTERN}")
        users.append(principals.framework(name))
    return users


def provision(
    management: Management,
    vhost: str,
    principals: wire.Principals,
    *,
    agents: Iterable[str] = (),
    frameworks: Iterable[str] = (),
    host: str = "127.0.0.1:5672",
    known: Mapping[str, str] | None = None,
    queue_type: str | None = None,
) -> Credentials:
    """Create (or update) the cluster's users, permissions and topology on ``vhost``, which must exist.

    A user already in ``known`` keeps its password; every other one gets a new random one. The credentials
    returned hold ``known``'s users too (an agent provisioned before is still in them).
    """
    agents = list(agents)
    users = cluster_users(principals, agents, frameworks)
    # Quorum queues on a cluster, as the services themselves would declare them given these URLs.
    _declare_topology(management, vhost, agents, queue_type or default_queue_type(len(host.split(","))))
    passwords: dict[str, str] = {}
    v = quote(vhost, safe="")
    for user in users:
        password = (known or {}).get(user) or secrets.token_urlsafe(24)
        u = quote(user, safe="")
        management.call("PUT", f"/users/{u}", {"password": password, "tags": ""})
        grant = permission(principals, user)
        management.call(
            "PUT",
            f"/permissions/{v}/{u}",
            {"configure": grant.configure, "write": grant.write, "read": grant.read},
        )
        passwords[user] = password
    return Credentials(principals.prefix, host, vhost, {**(known or {}), **passwords})


def remove_users(management: Management, users: Iterable[str]) -> None:
    """Delete users (gone already is fine)."""
    for user in users:
        try:
            management.call("DELETE", f"/users/{quote(user, safe='')}")
        except urllib.error.HTTPError as exc:
            if exc.code != 404:
                raise


def _declare_topology(management: Management, vhost: str, agents: list[str], queue_type: str) -> None:
    v = quote(vhost, safe="")
    for exchange in wire.Exchange:
        kind = "fanout" if exchange is wire.Exchange.DEAD_LETTER else "direct"
        management.call("PUT", f"/exchanges/{v}/{quote(exchange, safe='')}", {"type": kind, "durable": True})
    dead = quote(wire.Queue.DEAD_LETTER, safe="")
    management.call(
        "PUT",
        f"/queues/{v}/{dead}",
        {"durable": True, "arguments": dead_letter_arguments(quorum=queue_type == "quorum")},
    )
    _bind(management, v, wire.Exchange.DEAD_LETTER, wire.Queue.DEAD_LETTER, "")
    # As the services would declare them (meseta.sdk.bus.queue_arguments): the allocator's replicated.
    events = queue_arguments(quorum=queue_type == "quorum")
    queues = [
        (
            wire.Queue.ALLOCATOR_EVENTS.value,
            wire.Exchange.ALLOCATION,
            [wire.RoutingKey.TO_ALLOCATOR.value],
            events,
        )
    ]
    queues += [
        (
            wire.agent_queue(a),
            wire.Exchange.LAUNCHES,
            [a, wire.RoutingKey.ALL_AGENTS.value],
            queue_arguments(),
        )
        for a in agents
    ]
    for name, exchange, keys, arguments in queues:
        management.call(
            "PUT", f"/queues/{v}/{quote(name, safe='')}", {"durable": True, "arguments": arguments}
        )
        for key in keys:
            _bind(management, v, exchange, name, key)


def _bind(management: Management, vhost: str, exchange: str, queue: str, key: str) -> None:
    management.call(
        "POST",
        f"/bindings/{vhost}/e/{quote(exchange, safe='')}/q/{quote(queue, safe='')}",
        {"routing_key": key},
    )
