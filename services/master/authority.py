"""Who may send what to the master, and under which role, weight and priority a framework principal may
subscribe (the ACL).

The sender of every message is its ``user_id``, which RabbitMQ checks against the user the publishing
connection logged in as (meseta.sdk.wire.principals). Agents' and the allocator's messages are checked as
they arrive (:meth:`Authority.agents`, :meth:`Authority.allocator`: a refused one is dead-lettered before
it can move an epoch); calls by the dispatcher (:meth:`Authority.call`), which answers the caller.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from meseta.sdk import wire

DEFAULT_ROLE = "*"
"""The role a framework subscribes under unless it names one (as in Mesos)."""

OPERATOR_CALLS: tuple[type[wire.Message], ...] = (wire.GetLogs, wire.OperatorKill)


@dataclass(frozen=True)
class Grant:
    """What one framework principal may subscribe as."""

    roles: frozenset[str] = frozenset({DEFAULT_ROLE})
    max_weight: float = 1.0
    max_priority: int = 0

    @classmethod
    def parse(cls, principal: str, data: object) -> Grant:
        if not isinstance(data, dict) or not set(data) <= {"roles", "max_weight", "max_priority"}:
            raise ValueError(f"ACL entry of {principal!r}: an object of roles, max_weight, max_priority")
        roles = data.get("roles", [DEFAULT_ROLE])
        weight = data.get("max_weight", 1.0)
        priority = data.get("max_priority", 0)
        if not isinstance(roles, list) or not all(isinstance(r, str) for r in roles):
            raise ValueError(f"ACL entry of {principal!r}: roles must be a list of role names")
        if not isinstance(weight, int | float) or not math.isfinite(weight) or weight <= 0:
            raise ValueError(f"ACL entry of {principal!r}: max_weight must be a positive number")
        if not isinstance(priority, int) or isinstance(priority, bool):
            raise ValueError(f"ACL entry of {principal!r}: max_priority must be an integer")
        return cls(frozenset(roles), float(weight), priority)


@dataclass(frozen=True)
class Acl:
    """Grants by framework principal; a principal not listed gets :class:`Grant`'s defaults (the
    default role, weight up to 1, priority up to 0)."""

    grants: Mapping[str, Grant] = field(default_factory=dict)

    @classmethod
    def load(cls, path: Path) -> Acl:
        """Read ``{"<principal>": {"roles": [...], "max_weight": W, "max_priority": P}, ...}``."""
        data = json.loads(path.read_text())
        if not isinstance(data, dict):
            raise ValueError(f"{path}: the ACL is a JSON object keyed by framework principal")
        return cls({name: Grant.parse(name, entry) for name, entry in data.items()})

    def refusal(self, principal: str, role: str, weight: float, priority: int) -> str | None:
        """Why ``principal`` may not subscribe so, or None if it may."""
        grant = self.grants.get(principal, Grant())
        if role not in grant.roles:
            allowed = sorted(grant.roles)
            return f"principal {principal} may not subscribe under role {role!r} (allowed: {allowed})"
        if weight > grant.max_weight:
            return f"principal {principal} may not ask for weight {weight} (at most {grant.max_weight})"
        if priority > grant.max_priority:
            return f"principal {principal} may not ask for priority {priority} (at most {grant.max_priority})"
        return None


class Authority:
    """The master's checks on senders. Without principals (development mode) everything passes."""

    def __init__(self, principals: wire.Principals | None, acl: Acl | None = None) -> None:
        self.principals = principals
        self.acl = acl or Acl()

    @property
    def enforcing(self) -> bool:
        return self.principals is not None

    def agents(self, message: wire.Message, user: str | None) -> str | None:
        """Heartbeats and status updates: only the agent they name sends them."""
        if self.principals is None:
            return None
        agent_id = getattr(message, "agent_id", None)
        if not isinstance(agent_id, str):
            return f"{message.type} names no agent"
        expected = self.principals.agent(agent_id)
        return (
            None if user == expected else f"{message.type} of agent {agent_id} from {user!r}, not {expected}"
        )

    def allocator(self, message: wire.Message, user: str | None) -> str | None:
        if self.principals is None or user == self.principals.allocator:
            return None
        return f"{message.type} from {user!r}: only {self.principals.allocator} sends it"

    def caller(self, user: str | None) -> str | None:
        """The framework principal a call comes from (None in development mode or when it is none)."""
        return None if self.principals is None else self.principals.framework_principal(user)

    def call(self, message: wire.Message, user: str | None, owner: str | None) -> str | None:
        """Why a call may not be made by ``user`` (``owner``: the principal of the framework it names,
        when the master knows that framework), or None if it may."""
        if self.principals is None:
            return None
        principal = self.principals.framework_principal(user)
        if isinstance(message, OPERATOR_CALLS):
            if user == self.principals.operator:
                return None
            if isinstance(message, wire.GetLogs) and principal is not None and owner == principal:
                return None  # a framework reads its own tasks' logs
            also = ", or the principal of the framework it names" if isinstance(message, wire.GetLogs) else ""
            operator = self.principals.operator
            return f"{message.type} needs the operator principal ({operator}){also}, not {user!r}"
        if principal is None:
            return f"{message.type} from {user!r}: not a framework principal"
        if owner is not None and owner != principal:
            return f"framework belongs to principal {owner}, not {principal}"
        return None
