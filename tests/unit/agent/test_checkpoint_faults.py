"""A checkpoint that cannot be read does not stop the agent: it is quarantined with the reason logged, and
the rest is recovered. Writes are fsynced (file and directory)."""

from __future__ import annotations

import asyncio
import logging
import os
from pathlib import Path

import pytest

from meseta.agent.checkpoint import Checkpoint
from meseta.sdk import wire
from tests.unit.agent.test_parts import task


async def test_an_unreadable_record_is_quarantined_and_the_rest_recovered(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    checkpoint = Checkpoint(tmp_path / "a1")
    await checkpoint.save_tasks("fw", [(task("good"), ())])
    status = wire.TaskStatus(task_id="good", state=wire.TaskState.RUNNING, agent_id="a1")
    await checkpoint.save_update(wire.StatusUpdate(agent_id="a1", framework_id="fw", status=status))
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


async def test_writes_are_fsynced(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    synced: list[int] = []
    real = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (synced.append(fd), real(fd))[1])
    await Checkpoint(tmp_path / "a1").save_tasks("fw", [(task("t"), ())])
    assert len(synced) == 2  # the file, then its directory (the rename)
    await Checkpoint(tmp_path / "a2", fsync=False).save_tasks("fw", [(task("t"), ())])
    assert len(synced) == 2


async def test_saves_asked_for_together_share_a_directory_fsync_and_each_waits_for_its_own(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    synced: list[str] = []
    real = os.fsync
    monkeypatch.setattr(
        os, "fsync", lambda fd: (synced.append(os.readlink(f"/proc/self/fd/{fd}")), real(fd))[1]
    )
    checkpoint = Checkpoint(tmp_path / "a1")
    updates = [
        wire.StatusUpdate(
            agent_id="a1",
            framework_id="fw",
            status=wire.TaskStatus(task_id=f"t{i}", state=wire.TaskState.RUNNING, agent_id="a1"),
        )
        for i in range(50)
    ]
    done: list[str] = []

    async def save(update: wire.StatusUpdate) -> None:
        await checkpoint.save_update(update)
        # Resumed only once its record is on the disk, renamed into place.
        assert (checkpoint.updates_dir / f"{update.status.uuid}.json").exists()
        done.append(update.status.uuid)

    await asyncio.gather(*(save(u) for u in updates))
    assert len(done) == 50 and len(checkpoint.updates()) == 50
    files = [p for p in synced if p.endswith(".json.tmp") or p.endswith(".json")]
    directories = [p for p in synced if p == str(checkpoint.updates_dir)]
    assert len(files) == 50  # every record's data
    # Asked for in one turn of the loop: one commit, one directory fsync (not 50).
    assert len(directories) == checkpoint.commits == 1


async def test_a_record_dropped_before_its_commit_is_done_does_not_come_back(tmp_path: Path) -> None:
    checkpoint = Checkpoint(tmp_path / "a1")
    status = wire.TaskStatus(task_id="t", state=wire.TaskState.RUNNING, agent_id="a1")
    saving = asyncio.ensure_future(
        checkpoint.save_update(wire.StatusUpdate(agent_id="a1", framework_id="fw", status=status))
    )
    await asyncio.sleep(0)  # queued (or on the disk), not yet done
    assert not saving.done()
    checkpoint.drop_update(status.uuid)
    await saving
    assert checkpoint.updates() == []
