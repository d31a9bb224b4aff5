"""The agent: reports resources, runs tasks in Docker containers, reports task states."""

from meseta.agent.service import AgentService, AgentSettings

__all__ = ["AgentService", "AgentSettings"]
