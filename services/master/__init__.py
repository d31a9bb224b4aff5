"""The master: tracks agents and frameworks, turns allocations into offers, launches accepted tasks.

``MasterSettings`` and ``MasterService`` load on first use: the CLI reads the settings' defaults without
importing the service (the broker client, etcd's, OpenTelemetry's SDK).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from meseta.master.service import MasterService
    from meseta.master.settings import MasterSettings

__all__ = ["MasterService", "MasterSettings"]
_WHERE = {"MasterService": "meseta.master.service", "MasterSettings": "meseta.master.settings"}


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        return getattr(importlib.import_module(_WHERE[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
