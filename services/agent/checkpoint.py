"""The agent's checkpoint on disk: tasks it runs and status updates not yet acknowledged.

A restarted agent reads both back: it re-attaches to its tasks' containers and resends every update the
framework has not acknowledged, so a restart loses neither. Files are written whole, fsynced, and renamed
into place (the directory fsynced too), so neither a crash nor a power loss leaves half a record or loses
one the agent went on from. A record that cannot be read anyway (a disk fault, a hand edit) is moved to
``quarantine/`` with the reason logged, and the agent starts with the rest.

Saves are committed in groups, off the event loop: every save asked for while a commit is on the disk
goes in the next one, whose renames share one directory fsync, and each caller resumes only once its
record is durable, so "checkpointed before sent" holds. On the loop, the fsyncs of a launch burst cost a
millisecond each and stalled everything else the agent does, heartbeats included.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import pydantic

from meseta.sdk import wire

log = logging.getLogger(__name__)

_Record = TypeVar("_Record")
_UNREADABLE = (ValueError, KeyError, TypeError, UnicodeDecodeError, pydantic.ValidationError)


@dataclass
class _Save:
    """One record to write, and its caller, resumed once the record is durable."""

    path: str
    data: str
    done: asyncio.Future[None]
    dropped: bool = False
    """Dropped before its commit was done: removed again once it is."""
    error: Exception | None = field(default=None, repr=False)


class Checkpoint:
    """Records under ``root`` (one agent's work directory)."""

    def __init__(self, root: Path, fsync: bool = True) -> None:
        self.tasks_dir = root / "tasks"
        self.updates_dir = root / "updates"
        self.quarantine_dir = root / "quarantine"
        self.fsync = fsync
        """Whether writes reach the disk before they count (off only for emulated agents)."""
        self.quarantined = 0
        self.commits = 0
        """Group commits made (each one directory fsync per directory it wrote to)."""
        self._queued: list[_Save] = []
        self._uncommitted: dict[str, _Save] = {}
        """Saves queued or on the disk, by path: a drop of one of them is done again after its commit."""
        self._committer: asyncio.Task[None] | None = None
        self.tasks_dir.mkdir(parents=True, exist_ok=True)
        self.updates_dir.mkdir(parents=True, exist_ok=True)

    def _write(self, path: str, data: str) -> None:
        """The record in a file of its own, fsynced, renamed into place (the directory is the caller's)."""
        # os calls rather than Path.write_text: an emulator of a hundred agents writes thousands of these
        # a second, and pathlib's layers cost as much again as the system calls (98 vs 174 µs).
        tmp = f"{path}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            view = memoryview(data.encode())
            while view:
                view = view[os.write(fd, view) :]
            if self.fsync:
                os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)

    @staticmethod
    def _sync_directory(directory: str) -> None:
        """The renames into ``directory``, durable."""
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    async def _save(self, path: str, data: str) -> None:
        """Write a record; return once it is durable. Unsynced (emulated agents) it is written at once."""
        if not self.fsync:
            self._write(path, data)
            return
        save = _Save(path, data, asyncio.get_running_loop().create_future())
        self._queued.append(save)
        self._uncommitted[path] = save
        if self._committer is None or self._committer.done():
            self._committer = asyncio.create_task(self._commit_queued(), name="checkpoint commits")
        await asyncio.shield(save.done)  # a cancelled caller leaves the commit to finish for the others

    async def _commit_queued(self) -> None:
        while self._queued:
            group, self._queued = self._queued, []
            try:
                await asyncio.to_thread(self._commit, group)
            except BaseException:  # cancelled at stop: its callers are too
                for save in group:
                    if not save.done.done():
                        save.done.cancel()
                raise
            finally:
                for save in group:
                    if self._uncommitted.get(save.path) is save:
                        del self._uncommitted[save.path]
            self.commits += 1
            for save in group:
                if save.dropped:
                    self._unlink(save.path)
                if save.done.done():
                    continue
                if save.error is not None:
                    save.done.set_exception(save.error)
                else:
                    save.done.set_result(None)

    def _commit(self, group: list[_Save]) -> None:
        """In a worker thread: every record of the group, then one fsync of each directory renamed into. A
        failed write fails its own caller; a failed directory fsync, everyone whose rename it held."""
        renamed: dict[str, list[_Save]] = {}
        for save in group:
            try:
                self._write(save.path, save.data)
            except Exception as exc:  # handed to its caller, which reports it
                save.error = exc
            else:
                renamed.setdefault(os.path.dirname(save.path), []).append(save)
        for directory, saves in renamed.items():
            try:
                self._sync_directory(directory)
            except OSError as exc:
                for save in saves:
                    save.error = exc

    def _drop(self, path: str) -> None:
        """Remove a record; one still being committed is removed again once its commit is done."""
        uncommitted = self._uncommitted.get(path)
        if uncommitted is not None:
            uncommitted.dropped = True
        self._unlink(path)

    @staticmethod
    def _unlink(path: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)

    async def flush(self) -> None:
        """Wait for every commit asked for so far (at stop)."""
        while self._committer is not None and not self._committer.done():
            await asyncio.shield(self._committer)

    def _read_all(self, directory: Path, parse: Callable[[str], _Record]) -> list[_Record]:
        """Every record in ``directory``; one that cannot be read is quarantined, with the reason logged."""
        found = []
        for path in sorted(directory.glob("*.json")):
            try:
                found.append(parse(path.read_text()))
            except _UNREADABLE as exc:
                self.quarantine_dir.mkdir(parents=True, exist_ok=True)
                target = self.quarantine_dir / f"{directory.name}-{path.name}"
                os.replace(path, target)
                self.quarantined += 1
                log.error("checkpoint %s cannot be read (%s); moved to %s", path, str(exc)[:300], target)
        return found

    async def save_tasks(self, framework_id: str, tasks: list[tuple[wire.TaskInfo, tuple[str, ...]]]) -> None:
        """Remember a launch's tasks (until each ends), in one group commit."""
        await asyncio.gather(
            *(
                self._save(
                    f"{self.tasks_dir}/{framework_id}__{info.task_id}.json",
                    json.dumps(
                        {
                            "framework_id": framework_id,
                            "info": info.model_dump(mode="json"),
                            "gpu_ids": list(gpu_ids),
                        }
                    ),
                )
                for info, gpu_ids in tasks
            )
        )

    def drop_task(self, framework_id: str, task_id: str) -> None:
        self._drop(f"{self.tasks_dir}/{framework_id}__{task_id}.json")

    def tasks(self) -> list[tuple[str, wire.TaskInfo, tuple[str, ...]]]:
        """Every remembered task: (framework id, task, GPU ids)."""
        return self._read_all(self.tasks_dir, _task_record)

    async def save_update(self, update: wire.StatusUpdate) -> None:
        """Keep an update until the framework acknowledges it."""
        await self._save(f"{self.updates_dir}/{update.status.uuid}.json", update.model_dump_json())

    def drop_update(self, uuid: str) -> None:
        """Forget an acknowledged update. The wire refuses any uuid but 32 hex digits; checked here too,
        because it names a file (``../`` in it would reach outside the work directory)."""
        if not _UUID.fullmatch(uuid):
            raise ValueError(f"not an update uuid: {uuid[:80]!r}")
        self._drop(f"{self.updates_dir}/{uuid}.json")

    def updates(self) -> list[wire.StatusUpdate]:
        """Every unacknowledged update, oldest first."""
        found = self._read_all(self.updates_dir, _update_record)
        return sorted(found, key=lambda u: u.status.timestamp)


_UUID = re.compile(wire.UUID_PATTERN.strip("^$"))
_V1_ENVELOPE = ("type", "version", "message_id", "correlation_id")


def _task_record(text: str) -> tuple[str, wire.TaskInfo, tuple[str, ...]]:
    record: dict[str, Any] = json.loads(text)
    return (
        str(record["framework_id"]),
        wire.TaskInfo.model_validate(record["info"]),
        tuple(str(g) for g in record["gpu_ids"]),
    )


def _update_record(text: str) -> wire.StatusUpdate:
    """A checkpointed update; one an agent of protocol 1 wrote (a whole STATUS_UPDATE message) loses its
    envelope, so an upgraded agent still resends what its predecessor had not had acknowledged."""
    data = json.loads(text)
    for key in _V1_ENVELOPE:
        data.pop(key, None)
    return wire.StatusUpdate.model_validate(data)
