"""Was a container OOM-killed? The kernel's log says so when Docker cannot.

Docker learns of OOM kills from containerd's OOM events, which arrive only once containerd watches the
container's memory cgroup: a task that exceeds its limit within milliseconds of starting is killed
before that, and Docker reports exit 137 with ``OOMKilled`` false (measured here: 2 to 5 of 12 such
containers started at once). The kernel logs every memory-cgroup OOM kill with the cgroup's path, which
holds the container id (``oom-kill:...,oom_memcg=/docker/<id>,task_memcg=/docker/<id>,...``).

The log is followed as it is written, by one thread per process: its ring buffer is small (128 KiB here)
and each OOM report is several KiB. The kernel writes that report at most 10 times in 5 s (2 of 12 hogs
started at once had none here): a kill beyond that, which Docker also missed, stays a plain exit 137.
"""

from __future__ import annotations

import collections
import logging
import os
import select
import threading

log = logging.getLogger(__name__)

KMSG = "/dev/kmsg"
_MARK = b"oom-kill:"
_RECORD = 8192  # a read returns one record; longer records fail with EINVAL
_KEEP = 10_000
_CATCH_UP = 1.0
"""Seconds a query waits for the follower to have read the log to its end."""
_SETTLE = 0.05
"""Seconds a query that found nothing waits for a record written just before it."""


class KernelOomLog:
    """Follows a kernel log device in a daemon thread and keeps its recent OOM-kill records."""

    def __init__(self, path: str = KMSG) -> None:
        self.path = path
        self._kills: collections.deque[bytes] = collections.deque(maxlen=_KEEP)
        self._passes = 0
        """Times the follower has read to the end of the log."""
        self._idle = False
        """The follower has read everything and waits for the next record."""
        self._changed = threading.Condition()

    def start(self) -> bool:
        """Open the log and start following it from its oldest record; False if it cannot be read."""
        try:
            fd = os.open(self.path, os.O_RDONLY | os.O_NONBLOCK)
        except OSError as exc:
            log.debug("kernel log unreadable (%s): OOM kills rely on Docker's flag", exc)
            return False
        threading.Thread(target=self._follow, args=(fd,), name="kmsg", daemon=True).start()
        return True

    def _follow(self, fd: int) -> None:
        poller = select.poll()
        poller.register(fd, select.POLLIN)
        try:
            while True:
                try:
                    record = os.read(fd, _RECORD)
                except BlockingIOError:  # at the end: say so, then wait for the next record
                    with self._changed:
                        self._passes, self._idle = self._passes + 1, True
                        self._changed.notify_all()
                    poller.poll()
                    with self._changed:
                        self._idle = False
                    continue
                except BrokenPipeError:
                    continue  # records overwritten under us: go on from the oldest left
                if not record:
                    return
                if _MARK in record:
                    self._kills.append(record.split(_MARK, 1)[1])
        except OSError as exc:
            log.warning("stopped following the kernel log: %s", exc)
        finally:
            os.close(fd)

    def killed(self, container_id: str) -> bool:
        """True when the log holds an OOM kill in the container's memory cgroup. Waits (briefly) until
        the follower has read the log to its end: the kernel wrote the record before the exit, and the
        follower wakes as soon as a record is written."""
        with self._changed:
            seen = self._passes
            self._changed.wait_for(lambda: self._idle or self._passes > seen, _CATCH_UP)
        if self._found(container_id):
            return True
        with self._changed:  # idle, but maybe not yet woken for a record written a moment ago
            seen = self._passes
            self._changed.wait_for(lambda: self._passes > seen, _SETTLE)
        return self._found(container_id)

    def _found(self, container_id: str) -> bool:
        needle = container_id.encode()
        return any(needle in kill for kill in list(self._kills))


_FOLLOWERS: dict[str, KernelOomLog | None] = {}
_LOCK = threading.Lock()


def follow_kernel_log(path: str = KMSG) -> KernelOomLog | None:
    """This process's follower of the log (started on first use); None if the log cannot be read (not
    root, no /dev/kmsg in a container): Docker's own flag is then all there is."""
    with _LOCK:
        if path not in _FOLLOWERS:
            follower = KernelOomLog(path)
            _FOLLOWERS[path] = follower if follower.start() else None
        return _FOLLOWERS[path]


def oom_killed_in_kernel_log(container_id: str, path: str = KMSG) -> bool:
    """True when the kernel logged an OOM kill in ``container_id``'s memory cgroup (False when the log
    cannot be read). Blocks for up to a second: call it from a thread."""
    follower = follow_kernel_log(path)
    return follower is not None and follower.killed(container_id)
