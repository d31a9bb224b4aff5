"""A container runtime that runs nothing: each "container" exits 0 after a set time.

For emulated agents (``bench/emulator.py``) and ``meseta agent --isolator noop``: everything else in the
agent (launch, status updates, checkpoints, kills) is the real agent's code. A task may set its own
duration with the ``MESETA_NOOP_SECONDS`` variable in its container's environment.
"""

from __future__ import annotations

import asyncio
import itertools
from dataclasses import dataclass, field

from meseta.agent.containerizer import Exit, Launch

DURATION_ENV = "MESETA_NOOP_SECONDS"
_KILLED_EXIT = 143  # SIGTERM, as a container stopped in its grace period reports


@dataclass
class _Fake:
    framework_id: str
    task_id: str
    seconds: float
    stopped: asyncio.Event = field(default_factory=asyncio.Event)
    exit: Exit | None = None


class NoopContainerizer:
    """No-op containers: create and start cost nothing; ``wait`` returns after the task's duration."""

    _ids = itertools.count()

    def __init__(self, seconds: float = 1.0) -> None:
        self.seconds = seconds
        self._containers: dict[str, _Fake] = {}

    async def ping(self) -> None:
        return None

    async def create(self, launch: Launch) -> str:
        env = dict(launch.task.container.env)
        seconds = float(env.get(DURATION_ENV, self.seconds))
        container_id = f"noop{next(self._ids):012d}"
        self._containers[container_id] = _Fake(launch.framework_id, launch.task.task_id, seconds)
        return container_id

    async def start(self, container_id: str) -> None:
        return None

    async def wait(self, container_id: str) -> Exit:
        fake = self._containers[container_id]
        if fake.exit is None:
            try:
                await asyncio.wait_for(fake.stopped.wait(), fake.seconds)
                fake.exit = Exit(_KILLED_EXIT, oom_killed=False)
            except TimeoutError:
                fake.exit = Exit(0, oom_killed=False)
        return fake.exit

    async def stop(self, container_id: str, grace_seconds: float) -> None:
        if (fake := self._containers.get(container_id)) is not None:
            fake.stopped.set()

    async def logs(self, container_id: str, tail_bytes: int) -> tuple[str, str]:
        return "", ""

    async def find(self, framework_id: str, task_id: str) -> str | None:
        return next(
            (
                cid
                for cid, f in self._containers.items()
                if (f.framework_id, f.task_id) == (framework_id, task_id)
            ),
            None,
        )

    async def remove(self, container_id: str) -> None:
        self._containers.pop(container_id, None)

    async def collect_garbage(self, retention_seconds: float) -> int:
        done = [cid for cid, f in self._containers.items() if f.exit is not None]
        for cid in done:
            del self._containers[cid]
        return len(done)

    def close(self) -> None:
        self._containers.clear()
