"""The agent's checkpoint on disk: tasks it runs and status updates not yet acknowledged.

A restarted agent reads both back: it re-attaches to its tasks' containers and resends every update the
framework has not acknowledged, so a restart loses neither. Files are written whole, fsynced, and renamed
into place (the directory fsynced too), so neither a crash nor a power loss leaves half a record or loses
one the agent went on from. A record that cannot be read anyway (a disk fault, a hand edit) is moved to
``quarantine/`` with the reason logged, and the agent starts with the rest.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import pydantic

from meseta.sdk import wire

log = logging.getLogger(__name__)

_Record = TypeVar("_Record")
_UNREADABLE = (ValueError, KeyError, TypeError, UnicodeDecodeError, pydantic.ValidationError)


class Checkpoint:
    """Records under ``root`` (one agent's work directory)."""

    def __init__(self, root: Path, fsync: bool = True) -> None:
        self.tasks_dir = root / "tasks"
        self.updates_dir = root / "updates"
        self.quarantine_dir = root / "quarantine"
        self.fsync = fsync
        """Whether writes reach the disk before they count (off only for emulated agents)."""
        self.quarantined = 0
        self.tasks_dir.mkdir(parents=True, exist_ok=True)
        self.updates_dir.mkdir(parents=True, exist_ok=True)

    def _write(self, path: Path, data: str) -> None:
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
        if self.fsync:  # the rename itself, durable
            directory = os.open(os.path.dirname(path), os.O_RDONLY)
            try:
                os.fsync(directory)
            finally:
                os.close(directory)

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

    def save_task(self, framework_id: str, info: wire.TaskInfo, gpu_ids: tuple[str, ...]) -> None:
        """Remember a task this agent runs (until it ends)."""
        record = {
            "framework_id": framework_id,
            "info": info.model_dump(mode="json"),
            "gpu_ids": list(gpu_ids),
        }
        self._write(self.tasks_dir / f"{framework_id}__{info.task_id}.json", json.dumps(record))

    def drop_task(self, framework_id: str, task_id: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(f"{self.tasks_dir}/{framework_id}__{task_id}.json")

    def tasks(self) -> list[tuple[str, wire.TaskInfo, tuple[str, ...]]]:
        """Every remembered task: (framework id, task, GPU ids)."""
        return self._read_all(self.tasks_dir, _task_record)

    def save_update(self, update: wire.StatusUpdate) -> None:
        """Keep an update until the framework acknowledges it."""
        self._write(self.updates_dir / f"{update.status.uuid}.json", update.model_dump_json())

    def drop_update(self, uuid: str) -> None:
        """Forget an acknowledged update. The wire refuses any uuid but 32 hex digits; checked here too,
        because it names a file (``../`` in it would reach outside the work directory)."""
        if not _UUID.fullmatch(uuid):
            raise ValueError(f"not an update uuid: {uuid[:80]!r}")
        with contextlib.suppress(FileNotFoundError):
            os.unlink(f"{self.updates_dir}/{uuid}.json")

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
