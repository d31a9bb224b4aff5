"""The offline task image: a busybox-static root file system imported into Docker as ``meseta-task``.

No registry is needed (none is reachable on the machines Meseta is built on): the image is made from the
host's own ``/bin/busybox`` (Debian's ``busybox-static``), one link per applet, so a task can run any
shell command busybox knows. ``meseta task-image`` and ``scripts/infra.sh`` both build it with this code.
"""

from __future__ import annotations

import io
import subprocess
import tarfile
from pathlib import Path

import docker
import docker.errors

from meseta.runtime import defaults

DEFAULT_TASK_IMAGE = defaults.TASK_IMAGE
BUSYBOX = Path("/bin/busybox")


class TaskImageError(RuntimeError):
    """The image could not be built (no static busybox, or no Docker engine)."""


def _rootfs(busybox: Path) -> bytes:
    """A tar stream of ``/bin/busybox``, a link for each of its applets, and ``/tmp``."""
    if not busybox.is_file():
        raise TaskImageError(
            f"{busybox} is missing: install Debian's busybox-static (apt-get install busybox-static)"
        )
    listed = subprocess.run([str(busybox), "--list"], capture_output=True, text=True, check=False)
    if listed.returncode != 0:
        raise TaskImageError(f"{busybox} --list failed: {listed.stderr.strip()}")
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for name in ("bin", "tmp"):
            info = tarfile.TarInfo(name)
            info.type, info.mode = tarfile.DIRTYPE, 0o1777 if name == "tmp" else 0o755
            tar.addfile(info)
        tar.add(str(busybox), arcname="bin/busybox")
        for applet in listed.stdout.split():
            if applet != "busybox":
                link = tarfile.TarInfo(f"bin/{applet}")
                link.type, link.linkname = tarfile.SYMTYPE, "busybox"
                tar.addfile(link)
    return buffer.getvalue()


def ensure_task_image(
    image: str = DEFAULT_TASK_IMAGE, busybox: Path = BUSYBOX, rebuild: bool = False
) -> bool:
    """Build ``image`` unless Docker has it already; True when it was built.

    Raises:
        TaskImageError: no static busybox here, or the engine refused (its answer is in the message).
    """
    client = docker.from_env()
    try:
        if not rebuild:
            try:
                client.images.get(image)
                return False
            except docker.errors.ImageNotFound:
                pass
        repository, _, tag = image.rpartition(":") if ":" in image.split("/")[-1] else (image, "", "latest")
        client.api.import_image_from_data(
            _rootfs(busybox), repository=repository, tag=tag, changes=['CMD ["/bin/sh"]']
        )
        client.images.get(image)  # the import answers 200 even for some failures: check it is there
        return True
    except docker.errors.DockerException as exc:
        raise TaskImageError(f"could not build {image}: {exc}") from None
    finally:
        client.close()
