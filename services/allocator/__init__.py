"""The allocator: decides how much each framework is offered.

State snapshot in, plan of grants out (:mod:`.policy`); the service only feeds events in and
publishes the plan.
"""

from meseta.allocator.pipeline import Grant, Plan, Revoke, plan_cycle
from meseta.allocator.policy import DRF, Lottery, Policy, StrictPriority, WeightedFairShare, make_policy
from meseta.allocator.service import AllocatorService, AllocatorSettings
from meseta.allocator.state import AllocatorState, RoleConfig

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
