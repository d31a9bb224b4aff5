"""One definition of each default: the CLI's flags show the settings classes' own, and so do the docs."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from typer.main import get_command

from meseta.agent.settings import AgentSettings
from meseta.allocator.settings import AllocatorSettings
from meseta.cli import app
from meseta.master.settings import MasterSettings

ROOT = Path(__file__).resolve().parents[3]


def _flags(command: str) -> dict[str, object]:
    group = get_command(app)
    return {p.name: p.default for p in group.commands[command].params}  # type: ignore[attr-defined]


def _settings(settings: type) -> dict[str, object]:
    return {f.name: f.default for f in dataclasses.fields(settings) if f.default is not dataclasses.MISSING}


def test_each_service_s_flags_default_to_its_settings() -> None:
    for command, settings, renamed in (
        ("master", MasterSettings, {}),
        ("allocator", AllocatorSettings, {}),
        ("agent", AgentSettings, {"kill_grace": "kill_grace_seconds"}),
    ):
        flags, own = _flags(command), _settings(settings)
        shared = {flag: own[renamed.get(flag, flag)] for flag in flags if renamed.get(flag, flag) in own}
        assert len(shared) >= 3, (command, shared)
        for flag, value in shared.items():
            # None in a settings class means "none unless told" (no state API, no etcd for the
            # allocator's run-time configuration), which a command always tells.
            if value is not None:
                assert flags[flag] == value, f"meseta {command} --{flag}: {flags[flag]} != {value}"


def test_the_docs_say_the_framework_timeout_the_master_uses() -> None:
    seconds = f"{MasterSettings.__dataclass_fields__['framework_timeout'].default:g} s"
    assert f"after {seconds} of silence" in (ROOT / "docs" / "FAULT_TOLERANCE.md").read_text()
    assert f"disconnected* after {seconds}" in (ROOT / "docs" / "SDK.md").read_text()
