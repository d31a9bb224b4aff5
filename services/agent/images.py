"""Pulling a task's image from its registry before the container is created.

The task runner asks for a pull as the task's ``pull`` policy says (``always``: before every launch;
``if-missing``: once the engine lacks the image; ``never``: not at all). A pull uses the task's
registry credentials or else the agent's (``--registry-auth-file``: ``{"registry host": {"username": ...,
"password": ...}}``), under a time limit of its own (``--pull-timeout``), apart from the task's start.
Concurrent launches of one image share one pull. A pull that fails names the registry's answer.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import docker
import docker.auth
import docker.errors
import docker.utils

from meseta.sdk.wire import ContainerSpec, RegistryAuth

log = logging.getLogger(__name__)

Call = Callable[..., Awaitable[Any]]
Progress = Callable[[str], Awaitable[None]]


class PullFailed(Exception):
    """The image could not be pulled: the registry's answer, or the time limit."""


Pulls = dict[tuple[str, str], "asyncio.Future[None]"]
"""Pulls in flight by (image, registry user)."""


def _forget(inflight: Pulls, key: tuple[str, str]) -> Callable[[asyncio.Future[None]], None]:
    def done(pull: asyncio.Future[None]) -> None:
        inflight.pop(key, None)
        if not pull.cancelled():
            pull.exception()  # retrieved: a pull nobody waits for any more logs nothing at exit

    return done


def read_auth_file(path: Path | None) -> dict[str, RegistryAuth]:
    """The agent's registry credentials, by registry host (``127.0.0.1:5000``, ``registry.example``)."""
    if path is None:
        return {}
    raw = json.loads(path.read_text())
    if not isinstance(raw, dict):
        raise ValueError(f"{path}: a JSON object of registry host -> {{username, password}}")
    return {str(host): RegistryAuth.model_validate(entry) for host, entry in raw.items()}


def registry_of(image: str) -> str:
    """The registry host an image reference names (Docker Hub's index for a bare name)."""
    repository, _ = docker.utils.parse_repository_tag(image)
    registry, _ = docker.auth.resolve_repository_name(repository)
    return str(registry)


class ImagePuller:
    """One agent's pulls: at most one in flight per image and credentials."""

    def __init__(
        self, client: docker.DockerClient, call: Call, timeout: float, auth: dict[str, RegistryAuth]
    ) -> None:
        self._client = client
        self._call = call
        self.timeout = timeout
        self.auth = auth
        self.pulls = 0
        """Pulls started (not shared ones): what the tests and metrics read."""
        self._inflight: Pulls = {}

    async def pull(self, spec: ContainerSpec, progress: Progress) -> None:
        """Pull ``spec.image`` (joining a pull of it already in flight); PullFailed when it cannot be."""
        auth = spec.registry_auth or self.auth.get(registry_of(spec.image))
        key = (spec.image, auth.username if auth is not None else "")
        pull = self._inflight.get(key)
        if pull is None:
            # In flight before the progress update's await: a launch that looks meanwhile shares it.
            self.pulls += 1
            pull = asyncio.ensure_future(self._pull(spec.image, auth))
            self._inflight[key] = pull
            pull.add_done_callback(_forget(self._inflight, key))
            await progress(f"pulling image {spec.image}")
        else:
            await progress(f"pulling image {spec.image} (one pull for this agent's tasks of it)")
        await asyncio.shield(pull)

    async def _pull(self, image: str, auth: RegistryAuth | None) -> None:
        repository, tag = docker.utils.parse_repository_tag(image)
        auth_config = None if auth is None else {"username": auth.username, "password": auth.password}
        registry = registry_of(image)
        try:
            await asyncio.wait_for(
                self._call(
                    self._client.images.pull, repository, tag=tag or "latest", auth_config=auth_config
                ),
                self.timeout,
            )
        except TimeoutError:
            # The engine's pull goes on in its thread; a later launch starts another (or finds the image).
            raise PullFailed(
                f"pull of {image} from {registry} did not finish within {self.timeout:g} s (--pull-timeout)"
            ) from None
        except docker.errors.APIError as exc:
            raise PullFailed(f"pull of {image} from {registry} failed: {exc.explanation or exc}") from None
        log.info("pulled %s from %s", image, registry)
