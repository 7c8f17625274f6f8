"""`--log-level`, `--log-format json` and `--version` (flows/logs.py, flows/cli.py)."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from flows import logs
from flows.cli import _global_options, main

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def restore_logging(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.delenv(logs.ENV_LEVEL, raising=False)
    monkeypatch.delenv(logs.ENV_FORMAT, raising=False)
    yield
    logs.configure("WARNING", "text")


def test_json_logs_are_one_object_per_line_with_the_match(
    capsys: pytest.CaptureFixture[str],
) -> None:
    logs.configure("info", "json")  # its handler writes to stderr as captured now
    log = logging.getLogger("oddsflow.test")
    log.debug("not shown")
    log.info("suspended %d markets", 3, extra={"match_id": "m7"})
    try:
        raise ValueError("boom")
    except ValueError:
        log.exception("failed")

    lines = capsys.readouterr().err.splitlines()
    first, second = (json.loads(line) for line in lines)  # two records, one line each
    assert first["level"] == "INFO" and first["logger"] == "oddsflow.test"
    assert first["message"] == "suspended 3 markets" and first["match_id"] == "m7"
    assert first["time"].endswith("+00:00")
    assert "match_id" not in second and "ValueError: boom" in second["error"]


def test_the_choice_comes_from_the_environment_and_passes_on_to_child_processes(
    capsys: pytest.CaptureFixture[str],
) -> None:
    logs.configure(environ={logs.ENV_LEVEL: "error", logs.ENV_FORMAT: "json"})
    assert logging.getLogger().level == logging.ERROR
    code = "import logging; logging.getLogger('x').error('from a child')"
    child = subprocess.run(
        [sys.executable, "-c", f"from flows import logs; logs.configure(); {code}"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    )
    assert json.loads(child.stderr)["message"] == "from a child"


def test_a_bad_level_or_format_is_one_line_naming_it() -> None:
    with pytest.raises(logs.LogOptionError, match="log format 'xml'"):
        logs.configure(environ={logs.ENV_FORMAT: "xml"})
    with pytest.raises(logs.LogOptionError, match="log level 'LOUD'"):
        logs.configure("loud")


def test_global_options_go_before_the_command(capsys: pytest.CaptureFixture[str]) -> None:
    options, rest = _global_options(["--log-level", "info", "--log-format=json", "replay", "f"])
    assert (options.log_level, options.log_format, rest) == ("INFO", "json", ["replay", "f"])
    assert main(["--version"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("oddsflow ") and "bytewax 0.21.1" in out
