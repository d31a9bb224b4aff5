"""Was a container OOM-killed? The kernel's log says so when Docker cannot.

Docker learns of OOM kills from containerd's OOM events, which arrive only once containerd watches the
container's memory cgroup: a task that exceeds its limit within milliseconds of starting is killed
before that, and Docker reports exit 137 with ``OOMKilled`` false (measured here: 2 to 5 of 12 such
containers started at once). The kernel logs every memory-cgroup OOM kill with the cgroup's path, which
holds the container id (``oom-kill:...,oom_memcg=/docker/<id>,task_memcg=/docker/<id>,...``).
"""

from __future__ import annotations

import logging
import os

log = logging.getLogger(__name__)

KMSG = "/dev/kmsg"
_MARK = b"oom-kill:"
_RECORD = 8192  # a read returns one record; longer records fail with EINVAL


def oom_killed_in_kernel_log(container_id: str, path: str = KMSG) -> bool:
    """True when the kernel's ring buffer holds an OOM kill in ``container_id``'s memory cgroup.

    False also when the log cannot be read (not root, no /dev/kmsg in a container): Docker's own
    flag is then all there is. Reads the whole ring buffer: called only for a SIGKILL exit Docker did
    not flag, and a ring buffer is a few thousand records.
    """
    needle = container_id.encode()
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except OSError as exc:
        log.debug("kernel log unreadable (%s): OOM kills rely on Docker's flag", exc)
        return False
    try:
        while True:
            try:
                record = os.read(fd, _RECORD)
            except BlockingIOError:
                return False  # read to the end
            except BrokenPipeError:
                continue  # records overwritten while reading: go on from the oldest left
            except OSError:
                return False
            if not record:
                return False
            if _MARK in record and needle in record.split(_MARK, 1)[1]:
                return True
    finally:
        os.close(fd)
