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
import shutil
import signal
import subprocess
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from meseta.agent.containerizer import Exit, Launch, task_env
from meseta.agent.images import Progress
from meseta.sdk.wire import ContainerSpec

log = logging.getLogger(__name__)

CGROUP_ROOT = Path("/sys/fs/cgroup")
_CFS_PERIOD_US = 100_000
_CONFINE = (
    'limit=$1; shift; if [ "$limit" != - ]; then ulimit -v "$limit" || exit 125; fi; '
    'while [ "$1" != -- ]; do echo $$ > "$1" || exit 125; shift; done; shift; exec "$@"'
)
"""Run by ``/bin/sh`` between the spawn and the task's command: set the memory rlimit (its first argument,
``-`` for none), join the cgroups (the ``cgroup.procs`` paths up to ``--``), then exec the command in the
same process. A shell rather than a ``preexec_fn``: Python code in the child forces a full fork of the
agent (6.4 ms a task, on the event loop, against 1.2 ms for vfork and the shell's exec)."""


def _runnable(command: str, path: str, cwd: str) -> bool:
    """Whether the command exists, looked up as the shell's exec will (a missing one fails the launch,
    as the engine's does, rather than running a shell that exits 127)."""
    if "/" in command:
        return os.access(os.path.join(cwd, command), os.X_OK)
    return shutil.which(command, path=path) is not None


class _Child:
    """A task's process; its exit is watched through a pidfd on the event loop (no thread, no fork)."""

    def __init__(self, popen: subprocess.Popen[bytes]) -> None:
        self.popen = popen
        self.pid = popen.pid
        self._exit: asyncio.Future[int] | None = None

    @property
    def returncode(self) -> int | None:
        return self.popen.returncode

    async def wait(self) -> int:
        """The exit status (negative: the signal that ended it); any number of callers may wait."""
        if self._exit is None:
            self._exit = asyncio.ensure_future(self._watch())
        return await asyncio.shield(self._exit)

    async def _watch(self) -> int:
        try:
            pidfd = os.pidfd_open(self.pid)
        except OSError:  # a kernel before 5.3: a thread waits instead
            return await asyncio.to_thread(self.popen.wait)
        loop = asyncio.get_running_loop()
        readable: asyncio.Future[None] = loop.create_future()

        def exited() -> None:
            if not readable.done():
                readable.set_result(None)

        loop.add_reader(pidfd, exited)
        try:
            await readable
        finally:
            loop.remove_reader(pidfd)
            os.close(pidfd)
        return self.popen.wait()  # it has exited: this reaps it at once


@dataclass
class _Proc:
    launch: Launch
    sandbox: Path
    cgroups: list[Path] = field(default_factory=list)
    process: _Child | None = None
    finished_at: float | None = None


def agent_cgroups(group: str) -> tuple[Path, Path]:
    """The memory and cpu cgroups under which one agent's tasks get theirs (``meseta/<agent id>``)."""
    return CGROUP_ROOT / "memory" / "meseta" / group, CGROUP_ROOT / "cpu" / "meseta" / group


def cgroups_writable() -> bool:
    """Whether this host lets the agent make cgroups of its own (else tasks get ``RLIMIT_AS``)."""
    probe = CGROUP_ROOT / "memory" / "meseta" / f"probe-{uuid.uuid4().hex[:8]}"
    try:
        probe.mkdir(parents=True, exist_ok=True)
        probe.rmdir()
        return True
    except OSError:
        return False


def _make_cgroups(group: str, name: str, mem_bytes: int, cpus: float) -> list[Path]:
    """Create memory (and cpu) cgroups for one task under ``meseta/<group>``; an empty list where the host
    forbids it."""
    made: list[Path] = []
    memory_group, cpu_group = agent_cgroups(group)
    try:
        memory = memory_group / name
        memory.mkdir(parents=True, exist_ok=True)
        (memory / "memory.limit_in_bytes").write_text(str(mem_bytes))
        with contextlib.suppress(OSError):  # absent without swap accounting
            (memory / "memory.memsw.limit_in_bytes").write_text(str(mem_bytes))
        made.append(memory)
        cpu = cpu_group / name
        cpu.mkdir(parents=True, exist_ok=True)
        # The period is the kernel's default (_CFS_PERIOD_US) in a new cgroup: only the quota is written.
        (cpu / "cpu.cfs_quota_us").write_text(str(max(1000, int(cpus * _CFS_PERIOD_US))))
        made.append(cpu)
    except OSError as exc:
        log.info("no cgroup for %s (%s): falling back to rlimits", name, exc)
    return made


def _release_cgroups(cgroups: list[Path]) -> list[Path]:
    """Remove a task's cgroups; those still holding a process (one its task left behind) are returned.

    Removed as soon as the task has ended, not with its sandbox: every cgroup the kernel keeps makes each
    cpu quota write walk more of them. A host left with 19,462 of ours (agents stopped before their
    retention ran out) took 0.45 ms a quota write at the median and 3 ms at p90, against 0.04 ms without.
    """
    kept = []
    for cg in cgroups:
        try:
            cg.rmdir()
        except FileNotFoundError:
            pass
        except OSError:
            kept.append(cg)
    return kept


def _sweep_cgroups(group: str) -> int:
    """Remove the empty cgroups a previous run of this agent left (a busy one stays); how many."""
    removed = 0
    for parent in agent_cgroups(group):
        with contextlib.suppress(OSError):
            for cg in parent.iterdir():
                if cg.is_dir() and not _release_cgroups([cg]):
                    removed += 1
    return removed


def _mem_bytes(proc: _Proc) -> int:
    return int(proc.launch.task.resources.mem * 1024 * 1024)


def _environment(proc: _Proc) -> dict[str, str]:
    """What a task's processes (and its checks) see: the agent's PATH and the task's own variables."""
    return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), **task_env(proc.launch)}


async def _spawn(
    proc: _Proc,
    name: str,
    argv: Sequence[str],
    env: dict[str, str],
    cwd: str,
    stdout: int | IO[bytes],
    stderr: int | IO[bytes],
) -> _Child:
    """``argv`` inside the task's limits: in its cgroups, or, without them, under RLIMIT_AS of its
    memory (``ulimit -v`` counts KiB); in its own process group.

    Spawned in a worker thread by CPython (vfork and exec), not by the event loop: uvloop's spawn forks
    the whole agent and blocks the loop until the child has exec'd, which under a launch burst was most of
    the agent's loop time (py-spy: 5.6 ms a task)."""
    join = [str(cg / "cgroup.procs") for cg in proc.cgroups]
    limit = "-" if join else str(max(1, _mem_bytes(proc) // 1024))
    popen = await asyncio.to_thread(
        subprocess.Popen,
        ["/bin/sh", "-c", _CONFINE, name, limit, *join, "--", *argv],
        cwd=cwd,
        env=env,
        stdout=stdout,
        stderr=stderr,
        start_new_session=True,
    )
    return _Child(popen)


def _exit_code(status: int) -> int:
    """An exit status as Docker reports it: 128 + the signal for a signalled process."""
    return status if status >= 0 else 128 - status


class ProcessContainerizer:
    """Subprocess tasks with resource limits, behind the same interface as Docker."""

    def __init__(self, agent_id: str, work_dir: Path) -> None:
        self.agent_id = agent_id
        self.work_dir = work_dir / agent_id
        self._procs: dict[str, _Proc] = {}
        self._by_task: dict[tuple[str, str], str] = {}

    async def ping(self) -> None:
        await asyncio.to_thread(self.work_dir.mkdir, parents=True, exist_ok=True)
        # Its processes did not outlive the agent's last run (close() killed them), their cgroups did.
        if swept := await asyncio.to_thread(_sweep_cgroups, self.agent_id):
            log.info("removed %d cgroups an earlier run of this agent left", swept)

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
        proc.cgroups = await asyncio.to_thread(
            _make_cgroups, self.agent_id, container_id, _mem_bytes(proc), task.resources.cpus
        )
        argv = task.container.argv() or ("true",)
        env, cwd = _environment(proc), task.container.working_dir or str(proc.sandbox)
        if not _runnable(argv[0], env["PATH"], cwd):
            raise FileNotFoundError(f"no such command: {argv[0]!r} (PATH {env['PATH']})")
        with (proc.sandbox / "stdout").open("wb") as out, (proc.sandbox / "stderr").open("wb") as err:
            proc.process = await _spawn(proc, "meseta-task", argv, env, cwd, out, err)

    async def wait(self, container_id: str) -> Exit:
        proc = self._procs[container_id]
        assert proc.process is not None
        code = await proc.process.wait()
        proc.finished_at = time.time()
        return Exit(code=_exit_code(code), oom_killed=await asyncio.to_thread(self._ended, proc))

    @staticmethod
    def _ended(proc: _Proc) -> bool:
        """Whether the memory limit killed anything of the task's; then its cgroups go."""
        oom_killed = False
        for cg in proc.cgroups:
            control = cg / "memory.oom_control"
            if control.exists():
                fields = dict(line.split() for line in control.read_text().splitlines())
                oom_killed = int(fields.get("oom_kill", "0")) > 0
                break
        proc.cgroups = _release_cgroups(proc.cgroups)
        return oom_killed

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
        """Run ``argv`` beside the task (same environment and directory) and inside its limits: in the
        task's cgroups, or under its memory rlimit, as Mesos runs a command check inside the task's
        container. A check outside them could use memory and cpu nobody was offered. Spawned as the
        task is (vfork in a worker thread, not a fork of the agent); its exit code, 128 + the signal
        for a signalled one (as Docker reports), 127 for a command that is not there (as a shell's)."""
        proc = self._procs[container_id]
        cwd = proc.launch.task.container.working_dir or str(proc.sandbox)
        child = await _spawn(
            proc, "meseta-check", argv, _environment(proc), cwd, subprocess.DEVNULL, subprocess.DEVNULL
        )
        try:
            code = await child.wait()
        except asyncio.CancelledError:  # the check's timeout: leave nothing behind (the watch reaps it)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(child.pid, signal.SIGKILL)
            raise
        return _exit_code(code)

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
        proc.cgroups = _release_cgroups(proc.cgroups)
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
        """Kill what still runs, and remove every cgroup of this agent's (the killed ones' once empty)."""
        for proc in self._procs.values():
            if proc.process is not None and proc.process.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.process.pid, signal.SIGKILL)
        left = [cg for proc in self._procs.values() for cg in proc.cgroups]
        deadline = time.monotonic() + _CLOSE_PATIENCE
        while (left := _release_cgroups(left)) and time.monotonic() < deadline:
            time.sleep(0.01)  # SIGKILLed processes leave their cgroups as the kernel ends them
        _release_cgroups(list(agent_cgroups(self.agent_id)))


_CLOSE_PATIENCE = 1.0
"""How long close() waits for killed tasks to leave their cgroups (what is left, a next start sweeps)."""
