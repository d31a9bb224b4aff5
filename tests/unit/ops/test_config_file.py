"""``meseta --config FILE``: the file sets a flag, the flag and its variable override the file, the default
is the settings class's; JSON log lines carry the trace and span ids."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pytest
from opentelemetry import trace
from typer.testing import CliRunner

import meseta.cli.services
import meseta.master.service
from meseta.cli import app
from meseta.master.settings import MasterSettings
from meseta.runtime.logs import JsonFormatter


class Captured:
    settings: list[MasterSettings] = []

    def __init__(self, settings: MasterSettings) -> None:
        Captured.settings.append(settings)


@pytest.fixture
def started(monkeypatch: pytest.MonkeyPatch) -> list[MasterSettings]:
    """``meseta master`` builds its settings and stops there (no service is run)."""
    Captured.settings = []
    monkeypatch.setattr(meseta.master.service, "MasterService", Captured)
    monkeypatch.setattr(meseta.cli.services, "serve", lambda service: None)
    monkeypatch.setattr(meseta.cli.services, "setup", lambda *args: None)
    monkeypatch.delenv("MESETA_OFFER_TIMEOUT", raising=False)
    monkeypatch.delenv("MESETA_CONFIG", raising=False)
    return Captured.settings


def run(*args: str, env: dict[str, str] | None = None) -> Any:
    # Wide enough for the error box to hold a long temporary path (at 80 columns it was cut with "...").
    return CliRunner().invoke(app, list(args), env={"COLUMNS": "400", "TERMINAL_WIDTH": "400", **(env or {})})


def test_a_config_file_sets_a_master_flag_and_flags_override_it(
    started: list[MasterSettings], tmp_path: Path
) -> None:
    config = tmp_path / "meseta.toml"
    config.write_text('etcd-prefix = "/from-file"\n\n[master]\noffer-timeout = 12\nagent_timeout = 9.5\n')
    result = run("--config", str(config), "master", "--dev")
    assert result.exit_code == 0, result.output
    assert (started[-1].offer_timeout, started[-1].agent_timeout) == (12, 9.5)
    assert started[-1].etcd_prefix == "/from-file"  # the top level applies to every command that has it
    result = run("--config", str(config), "master", "--dev", "--offer-timeout", "7")
    assert result.exit_code == 0, result.output
    assert started[-1].offer_timeout == 7
    result = run("--config", str(config), "master", "--dev", env={"MESETA_OFFER_TIMEOUT": "8"})
    assert result.exit_code == 0, result.output
    assert started[-1].offer_timeout == 8
    # Without the file: the settings class's default, the one place it is defined.
    result = run("master", "--dev")
    assert result.exit_code == 0, result.output
    assert started[-1].offer_timeout == MasterSettings.__dataclass_fields__["offer_timeout"].default


def test_a_misspelt_setting_is_refused_with_its_name(started: list[MasterSettings], tmp_path: Path) -> None:
    for text, named in (
        ("[master]\noffer-timout = 12\n", "offer_timout"),
        ("[mastr]\noffer-timeout = 12\n", "mastr"),
        ("colour = 1\n", "colour"),
        ("[master\n", "meseta.toml"),
    ):
        config = tmp_path / "meseta.toml"
        config.write_text(text)
        result = run("--config", str(config), "master", "--dev")
        assert result.exit_code == 2 and named in result.output, (text, result.output)
    assert not started


def test_json_log_lines_carry_the_trace_and_span_ids() -> None:
    formatter = JsonFormatter("master")
    with trace.get_tracer("test").start_as_current_span("handling") as span:
        record = logging.LogRecord(
            "meseta.master", logging.WARNING, __file__, 1, "agent %s lost", ("a1",), None
        )
        line = json.loads(formatter.format(record))
    context = span.get_span_context()
    assert line["message"] == "agent a1 lost" and line["level"] == "WARNING" and line["service"] == "master"
    assert (line["trace_id"], line["span_id"]) == (f"{context.trace_id:032x}", f"{context.span_id:016x}")
    outside = json.loads(formatter.format(record))
    assert "trace_id" not in outside


def test_the_configuration_in_the_docs_runs_as_printed(started: list[MasterSettings], tmp_path: Path) -> None:
    # docs/OPERATIONS.md's meseta.toml and the two commands after it.
    text = (Path(__file__).parents[3] / "docs" / "OPERATIONS.md").read_text()
    toml = text.split("```toml\n# meseta.toml\n", 1)[1].split("```", 1)[0]
    (tmp_path / "meseta.toml").write_text(toml)
    commands = text.split("```sh\nmeseta --config meseta.toml", 1)[1].split("```", 1)[0]
    lines = ["meseta --config meseta.toml" + commands.splitlines()[0], *commands.splitlines()[1:]]
    expected = [(10.0, 8.0), (20.0, 8.0)]
    for line, (offer_timeout, agent_timeout) in zip(
        [ln for ln in lines if ln.strip()], expected, strict=True
    ):
        args = line.split("#", 1)[0].split()[1:]
        args[1] = str(tmp_path / args[1])
        result = run(*args)
        assert result.exit_code == 0, (line, result.output)
        assert (started[-1].offer_timeout, started[-1].agent_timeout) == (offer_timeout, agent_timeout), line
        assert started[-1].etcd_prefix == "/meseta"
