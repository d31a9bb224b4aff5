"""The process isolator: tasks as plain subprocesses, for development hosts with no Docker engine.

Memory is enforced by a cgroup of the task's own (cgroup v1 ``memory`` and ``cpu`` controllers) where the
host lets us create one, otherwise by ``RLIMIT_AS``. The image is ignored: the command runs on the host.
Output goes to files in the task's sandbox directory, which the retention sweep removes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import resource
import shutil
import signal
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from meseta.agent.containerizer import Exit, Launch, task_env
from meseta.agent.images import Progress
from meseta.sdk.wire import ContainerSpec

log = logging.getLogger(__name__)

CGROUP_ROOT = Path("/sys/fs/cgroup")
_CFS_PERIOD_US = 100_000


@dataclass
class _Proc:
    launch: Launch
    sandbox: Path
    cgroups: list[Path] = field(default_factory=list)
    process: asyncio.subprocess.Process | None = None
    finished_at: float | None = None


def _make_cgroups(name: str, mem_bytes: int, cpus: float) -> list[Path]:
    """Create memory (and cpu) cgroups for one task; an empty list where the host forbids it."""
    made: list[Path] = []
    try:
        memory = CGROUP_ROOT / "memory" / "meseta" / name
        memory.mkdir(parents=True, exist_ok=True)
        (memory / "memory.limit_in_bytes").write_text(str(mem_bytes))
        with contextlib.suppress(OSError):  # absent without swap accounting
            (memory / "memory.memsw.limit_in_bytes").write_text(str(mem_bytes))
        made.append(memory)
        cpu = CGROUP_ROOT / "cpu" / "meseta" / name
        cpu.mkdir(parents=True, exist_ok=True)
        (cpu / "cpu.cfs_period_us").write_text(str(_CFS_PERIOD_US))
        (cpu / "cpu.cfs_quota_us").write_text(str(max(1000, int(cpus * _CFS_PERIOD_US))))
        made.append(cpu)
    except OSError as exc:
        log.info("no cgroup for %s (%s): falling back to rlimits", name, exc)
    return made


class ProcessContainerizer:
    """Subprocess tasks with resource limits, behind the same interface as Docker."""

    def __init__(self, agent_id: str, work_dir: Path) -> None:
        self.agent_id = agent_id
        self.work_dir = work_dir / agent_id
        self._procs: dict[str, _Proc] = {}
        self._by_task: dict[tuple[str, str], str] = {}

    async def ping(self) -> None:
        await asyncio.to_thread(self.work_dir.mkdir, parents=True, exist_ok=True)

    async def pull(self, spec: ContainerSpec, progress: Progress) -> None:
        """Nothing to pull: this isolator ignores the image."""

    async def create(self, launch: Launch) -> str:
        proc_id = f"proc-{uuid.uuid4().hex[:12]}"
        sandbox = self.work_dir / launch.framework_id / launch.task.task_id
        await asyncio.to_thread(sandbox.mkdir, parents=True, exist_ok=True)
        self._procs[proc_id] = _Proc(launch, sandbox)
        self._by_task[(launch.framework_id, launch.task.task_id)] = proc_id
        return proc_id

    async def start(self, container_id: str) -> None:
        proc = self._procs[container_id]
        task = proc.launch.task
        mem_bytes = int(task.resources.mem * 1024 * 1024)
        proc.cgroups = await asyncio.to_thread(_make_cgroups, container_id, mem_bytes, task.resources.cpus)
        join = [str(cg / "cgroup.procs") for cg in proc.cgroups]

        def limit() -> None:  # runs in the child between fork and exec
            os.setsid()
            for path in join:
                with open(path, "w") as f:
                    f.write(str(os.getpid()))
            if not join:
                resource.setrlimit(resource.RLIMIT_AS, (mem_bytes, mem_bytes))

        argv = task.container.argv() or ("true",)
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), **task_env(proc.launch)}
        with (proc.sandbox / "stdout").open("wb") as out, (proc.sandbox / "stderr").open("wb") as err:
            proc.process = await asyncio.create_subprocess_exec(
                *argv,
                cwd=task.container.working_dir or proc.sandbox,
                env=env,
                stdout=out,
                stderr=err,
                preexec_fn=limit,
            )

    async def wait(self, container_id: str) -> Exit:
        proc = self._procs[container_id]
        assert proc.process is not None
        code = await proc.process.wait()
        proc.finished_at = time.time()
        return Exit(
            code=code if code >= 0 else 128 - code, oom_killed=await asyncio.to_thread(self._oom, proc)
        )

    @staticmethod
    def _oom(proc: _Proc) -> bool:
        for cg in proc.cgroups:
            control = cg / "memory.oom_control"
            if control.exists():
                fields = dict(line.split() for line in control.read_text().splitlines())
                return int(fields.get("oom_kill", "0")) > 0
        return False

    async def stop(self, container_id: str, grace_seconds: float, stop_signal: str = "SIGTERM") -> None:
        proc = self._procs.get(container_id)
        if proc is None or proc.process is None or proc.process.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.process.pid, signal.Signals[stop_signal])
        try:
            await asyncio.wait_for(proc.process.wait(), grace_seconds)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.process.pid, signal.SIGKILL)

    async def exec(self, container_id: str, argv: tuple[str, ...]) -> int:
        """Run ``argv`` beside the task (same environment and directory): its exit code."""
        proc = self._procs[container_id]
        task = proc.launch.task
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), **task_env(proc.launch)}
        child = await asyncio.create_subprocess_exec(
            *argv,
            cwd=task.container.working_dir or proc.sandbox,
            env=env,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
        )
        try:
            return await child.wait()
        except asyncio.CancelledError:  # the check's timeout: leave nothing behind
            with contextlib.suppress(ProcessLookupError):
                child.kill()
            raise

    async def address(self, container_id: str) -> str:
        return "127.0.0.1"

    async def logs(self, container_id: str, tail_bytes: int) -> tuple[str, str]:
        sandbox = self._procs[container_id].sandbox

        def read(name: str) -> str:
            path = sandbox / name
            if not path.exists():
                return ""
            with path.open("rb") as f:
                f.seek(max(0, path.stat().st_size - tail_bytes))
                return f.read().decode(errors="replace")

        return await asyncio.to_thread(read, "stdout"), await asyncio.to_thread(read, "stderr")

    async def find(self, framework_id: str, task_id: str) -> str | None:
        return self._by_task.get((framework_id, task_id))

    async def remove(self, container_id: str) -> None:
        proc = self._procs.pop(container_id, None)
        if proc is None:
            return
        self._by_task.pop((proc.launch.framework_id, proc.launch.task.task_id), None)
        for cg in proc.cgroups:
            with contextlib.suppress(OSError):
                cg.rmdir()
        await asyncio.to_thread(shutil.rmtree, proc.sandbox, True)

    async def collect_garbage(self, retention_seconds: float) -> int:
        now = time.time()
        old = [
            cid
            for cid, p in self._procs.items()
            if p.finished_at is not None and now - p.finished_at >= retention_seconds
        ]
        for cid in old:
            await self.remove(cid)
        return len(old)

    def close(self) -> None:
        for proc in self._procs.values():
            if proc.process is not None and proc.process.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.process.pid, signal.SIGKILL)
