"""A checkpoint that cannot be read does not stop the agent: it is quarantined with the reason logged, and
the rest is recovered. Writes are fsynced (file and directory)."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest

from meseta.agent.checkpoint import Checkpoint
from meseta.sdk import wire
from tests.unit.agent.test_parts import task


def test_an_unreadable_record_is_quarantined_and_the_rest_recovered(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    checkpoint = Checkpoint(tmp_path / "a1")
    checkpoint.save_task("fw", task("good"), ())
    status = wire.TaskStatus(task_id="good", state=wire.TaskState.RUNNING, agent_id="a1")
    checkpoint.save_update(wire.StatusUpdate(agent_id="a1", framework_id="fw", status=status))
    (checkpoint.tasks_dir / "fw__torn.json").write_text('{"framework_id": "fw", "info": {"task_')
    (checkpoint.tasks_dir / "fw__odd.json").write_text('{"framework_id": "fw"}')
    (checkpoint.updates_dir / ("0" * 32 + ".json")).write_bytes(b"\xff\xfe not json")
    with caplog.at_level(logging.ERROR):
        restarted = Checkpoint(tmp_path / "a1")
        assert [t.task_id for _, t, _ in restarted.tasks()] == ["good"]
        assert [u.status.task_id for u in restarted.updates()] == ["good"]
    assert sorted(p.name for p in (tmp_path / "a1" / "quarantine").iterdir()) == [
        "tasks-fw__odd.json",
        "tasks-fw__torn.json",
        "updates-" + "0" * 32 + ".json",
    ]
    assert restarted.quarantined == 3
    assert sum("cannot be read" in r.message for r in caplog.records) == 3
    # Read again, nothing is left to quarantine.
    assert len(restarted.tasks()) == 1 and restarted.quarantined == 3


def test_writes_are_fsynced(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    synced: list[int] = []
    real = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (synced.append(fd), real(fd))[1])
    Checkpoint(tmp_path / "a1").save_task("fw", task("t"), ())
    assert len(synced) == 2  # the file, then its directory (the rename)
    Checkpoint(tmp_path / "a2", fsync=False).save_task("fw", task("t"), ())
    assert len(synced) == 2
