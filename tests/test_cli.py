"""The ``agentsight`` command's entry points: the installed script, ``python -m agentsight`` and ``--version``.

Each runs in a fresh interpreter (the venv's script, or this interpreter with ``-m``); the version they print
and ``agentsight.__version__`` are the installed distribution's, which pyproject.toml sets.
"""

from __future__ import annotations

import re
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest

import agentsight
from agentsight import cli

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = Path(sys.executable).parent / "agentsight"
PYPROJECT_VERSION = re.search(r'^version = "([^"]+)"$', (ROOT / "pyproject.toml").read_text(), re.MULTILINE)[1]  # type: ignore[index]


def run(*command: str) -> subprocess.CompletedProcess[str]:
    """Run ``command`` and wait for it (a few seconds at most: nothing here serves)."""
    return subprocess.run(list(command), capture_output=True, text=True, timeout=60, check=False)


def test_version_is_the_distributions_and_pyprojects() -> None:
    assert agentsight.__version__ == metadata.version("agentsight-otel") == PYPROJECT_VERSION
    assert re.fullmatch(r"\d+\.\d+\.\d+\S*", agentsight.__version__)


@pytest.mark.parametrize("arguments", [["--version"], ["dev", "--version"], ["bridge", "--version"]])
@pytest.mark.parametrize("entry", ["script", "module"])
def test_version_everywhere(entry: str, arguments: list[str]) -> None:
    command = [str(SCRIPT)] if entry == "script" else [sys.executable, "-m", "agentsight"]
    if entry == "script" and not SCRIPT.exists():
        pytest.skip(f"the agentsight script is not installed beside {sys.executable}")

    done = run(*command, *arguments)

    assert done.returncode == 0, done.stderr
    assert done.stdout == f"agentsight-otel {PYPROJECT_VERSION}\n"
    assert done.stderr == ""


def test_python_m_agentsight_is_the_same_command() -> None:
    as_module = run(sys.executable, "-m", "agentsight", "--help")
    as_cli_module = run(sys.executable, "-m", "agentsight.cli", "--help")

    assert as_module.returncode == 0, as_module.stderr
    assert as_module.stdout == as_cli_module.stdout
    assert as_module.stdout.startswith("usage: agentsight [-h] [--version] COMMAND ...")
    for command in cli.COMMANDS:
        assert re.search(rf"^\s+{command.name}\s+\S", as_module.stdout, re.MULTILINE), command.name


def test_python_m_agentsight_dev_help_lists_its_options() -> None:
    done = run(sys.executable, "-m", "agentsight", "dev", "--help")

    assert done.returncode == 0, done.stderr
    for option in ("--version", "--port", "--db", "--memory"):
        assert option in done.stdout


def test_no_command_is_a_usage_error_naming_the_commands() -> None:
    done = run(sys.executable, "-m", "agentsight")

    assert done.returncode == 2
    assert "the following arguments are required: COMMAND" in done.stderr


def test_main_version_in_process(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as stopped:
        cli.main(["bridge", "--version"])

    assert stopped.value.code == 0
    assert capsys.readouterr().out == f"agentsight-otel {agentsight.__version__}\n"
