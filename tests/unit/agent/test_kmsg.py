"""OOM kills found in the kernel's own log (written to and read from the real /dev/kmsg)."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest

from meseta.agent.kmsg import KMSG, oom_killed_in_kernel_log

writable = pytest.mark.skipif(not os.access(KMSG, os.W_OK), reason="writing the kernel log needs root")


@writable
def test_an_oom_kill_in_the_containers_cgroup_is_found() -> None:
    mine, other = uuid.uuid4().hex * 2, uuid.uuid4().hex * 2
    # The kernel's record of a memory-cgroup OOM kill, as this kernel prints it.
    record = (
        f"meseta-test oom-kill:constraint=CONSTRAINT_MEMCG,nodemask=(null),cpuset={mine},mems_allowed=0,"
        f"oom_memcg=/docker/{mine},task_memcg=/docker/{mine},task=dd,pid=1,uid=0\n"
    )
    Path(KMSG).write_text(record)
    assert oom_killed_in_kernel_log(mine)
    assert not oom_killed_in_kernel_log(other)


@writable
def test_the_id_outside_an_oom_record_does_not_count() -> None:
    mine = uuid.uuid4().hex * 2
    Path(KMSG).write_text(f"meseta-test container {mine} exited with 137\n")
    assert not oom_killed_in_kernel_log(mine)


def test_an_unreadable_log_means_no_evidence(tmp_path: Path) -> None:
    assert not oom_killed_in_kernel_log("abc", path=str(tmp_path / "missing"))
