"""The allocator: decides how much each framework is offered.

State snapshot in, plan of grants out (:mod:`.policy`); the service only feeds events in and
publishes the plan.
"""

from meseta.allocator.policy import DRF, Grant, Policy
from meseta.allocator.service import AllocatorService, AllocatorSettings
from meseta.allocator.state import AllocatorState

__all__ = ["DRF", "AllocatorService", "AllocatorSettings", "AllocatorState", "Grant", "Policy"]
