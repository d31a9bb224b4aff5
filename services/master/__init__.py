"""The master: tracks agents and frameworks, turns allocations into offers, launches accepted tasks."""

from meseta.master.service import MasterService, MasterSettings

__all__ = ["MasterService", "MasterSettings"]
