"""A container runtime that runs nothing: each "container" exits 0 after a set time.

For emulated agents (``bench/emulator.py``) and ``meseta agent --isolator noop``: everything else in the
agent (launch, status updates, checkpoints, kills) is the real agent's code. A task may set its own
duration with the ``MESETA_NOOP_SECONDS`` variable in its container's environment.
"""

from __future__ import annotations

import asyncio
import itertools
from dataclasses import dataclass

from meseta.agent.containerizer import Exit, Launch
from meseta.agent.images import Progress
from meseta.sdk.wire import ContainerSpec

DURATION_ENV = "MESETA_NOOP_SECONDS"
_KILLED_EXIT = 143  # SIGTERM, as a container stopped in its grace period reports


@dataclass
class _Fake:
    framework_id: str
    task_id: str
    seconds: float
    exited: asyncio.Future[Exit] | None = None
    """Set when the duration is up (exit 0) or the container is stopped (143)."""
    timer: asyncio.TimerHandle | None = None

    @property
    def exit(self) -> Exit | None:
        return self.exited.result() if self.exited is not None and self.exited.done() else None

    def run(self) -> asyncio.Future[Exit]:
        """Start the clock (once). A timer and a future, not a task per container: an emulator keeps
        thousands of them, and ``wait_for`` cost each a task and a cancellation."""
        if self.exited is None:
            loop = asyncio.get_running_loop()
            self.exited = loop.create_future()
            self.timer = loop.call_later(self.seconds, self.end, Exit(0, oom_killed=False))
        return self.exited

    def end(self, exit: Exit) -> None:
        if self.exited is not None and not self.exited.done():
            self.exited.set_result(exit)
        if self.timer is not None:
            self.timer.cancel()


class NoopContainerizer:
    """No-op containers: create and start cost nothing; ``wait`` returns after the task's duration."""

    _ids = itertools.count()

    def __init__(self, seconds: float = 1.0) -> None:
        self.seconds = seconds
        self._containers: dict[str, _Fake] = {}

    async def ping(self) -> None:
        return None

    async def pull(self, spec: ContainerSpec, progress: Progress) -> None:
        """Nothing to pull: this isolator ignores the image."""

    async def create(self, launch: Launch) -> str:
        env = dict(launch.task.container.env)
        seconds = float(env.get(DURATION_ENV, self.seconds))
        container_id = f"noop{next(self._ids):012d}"
        self._containers[container_id] = _Fake(launch.framework_id, launch.task.task_id, seconds)
        return container_id

    async def start(self, container_id: str) -> None:
        self._containers[container_id].run()

    async def wait(self, container_id: str) -> Exit:
        # Shielded: a cancelled waiter (the agent stopping) must not cancel the container's exit.
        return await asyncio.shield(self._containers[container_id].run())

    async def stop(self, container_id: str, grace_seconds: float, stop_signal: str = "SIGTERM") -> None:
        if (fake := self._containers.get(container_id)) is not None:
            fake.run()
            fake.end(Exit(_KILLED_EXIT, oom_killed=False))

    async def exec(self, container_id: str, argv: tuple[str, ...]) -> int:
        return 0

    async def address(self, container_id: str) -> str:
        return "127.0.0.1"

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
        if (fake := self._containers.pop(container_id, None)) is not None:
            fake.end(Exit(_KILLED_EXIT, oom_killed=False))  # a waiter, if any, is not left hanging

    async def collect_garbage(self, retention_seconds: float) -> int:
        done = [cid for cid, f in self._containers.items() if f.exit is not None]
        for cid in done:
            del self._containers[cid]
        return len(done)

    def close(self) -> None:
        for fake in self._containers.values():
            if fake.timer is not None:
                fake.timer.cancel()  # the loop may be gone: no futures resolved here
        self._containers.clear()
