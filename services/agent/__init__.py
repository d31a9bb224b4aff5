"""The agent: reports resources, runs tasks in Docker containers, reports task states.

``AgentSettings`` and ``AgentService`` load on first use: the CLI reads the settings' defaults without
importing the service (Docker's client, the broker's).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from meseta.agent.service import AgentService
    from meseta.agent.settings import AgentSettings

__all__ = ["AgentService", "AgentSettings"]
_WHERE = {"AgentService": "meseta.agent.service", "AgentSettings": "meseta.agent.settings"}


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        return getattr(importlib.import_module(_WHERE[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
