"""A command health check's exit code comes from the engine once it has one, not from the first look."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

from docker.models.containers import Container

from meseta.agent.containerizer import DockerContainerizer


class EngineStillRunningTheExec:
    """The engine's answers when its exec start returns before the exec's exit is recorded: the first
    inspections say running, with no exit code (seen under load as a check 'exited with -1')."""

    def __init__(self, running_looks: int, code: int) -> None:
        self.running_looks = running_looks
        self.code = code
        self.inspections = 0

    def exec_create(self, container_id: str, cmd: list[str], **_: Any) -> dict[str, str]:
        assert container_id == "c1" and cmd == ["test", "-f", "/tmp/ok"]
        return {"Id": "e1"}

    def exec_start(self, exec_id: str, **_: Any) -> bytes:
        return b""

    def exec_inspect(self, exec_id: str) -> dict[str, Any]:
        self.inspections += 1
        if self.inspections <= self.running_looks:
            return {"Running": True, "ExitCode": None}
        return {"Running": False, "ExitCode": self.code}


class Client:
    """docker-py's client, over that engine (its models too: docker-py's exec_run, looking once, gave
    None for the exit code here, which the agent took for -1)."""

    def __init__(self, api: EngineStillRunningTheExec) -> None:
        self.api = api
        self.containers = self

    def get(self, container_id: str) -> Container:
        return Container(attrs={"Id": container_id}, client=self)


def containerizer(api: EngineStillRunningTheExec) -> DockerContainerizer:
    # Without __init__: it would reach for the engine and the kernel log, which this test does not need.
    made = object.__new__(DockerContainerizer)
    made._client = Client(api)  # type: ignore[assignment]
    made._pool = ThreadPoolExecutor(2)
    return made


async def test_an_exec_the_engine_still_reports_running_is_waited_for() -> None:
    engine = EngineStillRunningTheExec(running_looks=3, code=0)
    assert await containerizer(engine).exec("c1", ("test", "-f", "/tmp/ok")) == 0
    assert engine.inspections == 4
    failing = EngineStillRunningTheExec(running_looks=0, code=1)
    assert await containerizer(failing).exec("c1", ("test", "-f", "/tmp/ok")) == 1
