"""Who may send what: the broker users of one cluster's principals, by name.

RabbitMQ checks a message's ``user_id`` property against the user its connection logged in as, so a
receiver that reads ``user_id`` knows for certain which principal published it. Every Meseta publish
carries it (:mod:`meseta.sdk.bus`); receivers compare it with the names here. A cluster's users are
``<prefix>.master``, ``<prefix>.allocator``, ``<prefix>.operator``, ``<prefix>.agent.<agent id>``,
``<prefix>.executors.<agent id>`` (every executor on that agent) and ``<prefix>.framework.<principal>``;
``meseta users provision`` creates them with their broker permissions.

In development mode (``--dev``, the broker's ``guest`` account for everything) there are no principals:
receivers check nothing, and docs/SECURITY.md says so.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

__all__ = [
    "DEV_USER",
    "KINDS",
    "PRINCIPAL_PATTERN",
    "Identity",
    "Principals",
    "identify",
    "is_valid_principal",
    "refusal",
]

DEV_USER: Final = "guest"
"""RabbitMQ's default account: allowed only in development mode."""

PRINCIPAL_PATTERN: Final = r"^[A-Za-z0-9_]{1,64}$"
"""A framework principal's name: no dot or dash, so a user name, a framework id and a queue name built
from it can each be read back one way only."""

_PRINCIPAL_RE = re.compile(PRINCIPAL_PATTERN)

KINDS: Final = ("master", "allocator", "operator", "agent", "executors", "framework")
"""The kinds of principal; agents, executors and frameworks are named too (``<prefix>.<kind>.<name>``)."""
_NAMED: Final = frozenset({"agent", "executors", "framework"})


def is_valid_principal(name: str) -> bool:
    return bool(_PRINCIPAL_RE.match(name))


@dataclass(frozen=True)
class Principals:
    """The user names of one cluster (``prefix`` keeps clusters sharing a broker apart)."""

    prefix: str = "meseta"

    def __post_init__(self) -> None:
        if not is_valid_principal(self.prefix):
            raise ValueError(f"invalid principal prefix {self.prefix!r}: must match {PRINCIPAL_PATTERN}")

    @property
    def master(self) -> str:
        return f"{self.prefix}.master"

    @property
    def allocator(self) -> str:
        return f"{self.prefix}.allocator"

    @property
    def operator(self) -> str:
        return f"{self.prefix}.operator"

    def agent(self, agent_id: str) -> str:
        return f"{self.prefix}.agent.{agent_id}"

    def executors(self, agent_id: str) -> str:
        return f"{self.prefix}.executors.{agent_id}"

    def framework(self, principal: str) -> str:
        return f"{self.prefix}.framework.{principal}"

    def framework_principal(self, user: str | None) -> str | None:
        """The framework principal a user name stands for, or None when it is not a framework's."""
        head = f"{self.prefix}.framework."
        if user is None or not user.startswith(head):
            return None
        name = user[len(head) :]
        return name if is_valid_principal(name) else None


@dataclass(frozen=True)
class Identity:
    """What a user name says about its holder: the cluster's principals, its kind and its name (an
    agent's id, a framework principal; empty for the master, allocator and operator)."""

    principals: Principals
    kind: str
    name: str = ""


def identify(user: str | None) -> Identity | None:
    """Read a Meseta user name back, or None when it is not one (``guest`` included)."""
    if user is None:
        return None
    prefix, _, rest = user.partition(".")
    kind, _, name = rest.partition(".")
    if not is_valid_principal(prefix) or kind not in KINDS or bool(name) != (kind in _NAMED):
        return None
    if kind == "framework" and not is_valid_principal(name):
        return None
    return Identity(Principals(prefix), kind, name)


def refusal(kind: str, user: str | None, expected: str) -> str | None:
    """Why a message of ``kind`` from ``user`` is refused where only ``expected`` may send it, or None."""
    return None if user == expected else f"{kind} from {user!r}: only {expected} sends it"
