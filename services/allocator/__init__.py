"""The allocator: decides how much each framework is offered.

State snapshot in, plan of grants out (:mod:`.policy`); the service only feeds events in and
publishes the plan. ``AllocatorService`` and ``AllocatorSettings`` load on first use (the CLI reads the
settings' defaults without importing the service).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from meseta.allocator.pipeline import Grant, Plan, Revoke, plan_cycle
from meseta.allocator.policy import DRF, Lottery, Policy, StrictPriority, WeightedFairShare, make_policy
from meseta.allocator.state import AllocatorState, RoleConfig

if TYPE_CHECKING:
    from meseta.allocator.service import AllocatorService
    from meseta.allocator.settings import AllocatorSettings

__all__ = [
    "DRF",
    "AllocatorService",
    "AllocatorSettings",
    "AllocatorState",
    "Grant",
    "Lottery",
    "Plan",
    "Policy",
    "Revoke",
    "RoleConfig",
    "StrictPriority",
    "WeightedFairShare",
    "make_policy",
    "plan_cycle",
]
_WHERE = {"AllocatorService": "meseta.allocator.service", "AllocatorSettings": "meseta.allocator.settings"}


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        return getattr(importlib.import_module(_WHERE[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
