"""The upstream SDKs the benchmarks measure against: scratch venvs made on demand, and a clean environment.

Imported by ``bench/run.py``, ``bench/wan.py`` and ``bench/current_api.py`` (run from the project's venv).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def installed_version(python: Path) -> str | None:
    """The ``agentsight`` version installed for ``python``, or ``None`` when there is none."""
    if not python.exists():
        return None
    probe = "from importlib.metadata import version; print(version('agentsight'))"
    completed = subprocess.run([str(python), "-I", "-c", probe], capture_output=True, text=True)
    return completed.stdout.strip() if completed.returncode == 0 else None


def upstream_python(venv: Path, version: str) -> Path:
    """The interpreter of a scratch venv holding ``agentsight==version``, created and installed when needed."""
    python = venv / "bin" / "python"
    if installed_version(python) != version:
        print(f"Installing agentsight=={version} into {venv} ...", file=sys.stderr, flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        pip = [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
        subprocess.run([*pip, f"agentsight=={version}"], check=True)
        (venv / ".gitignore").write_text("*\n", encoding="utf-8")  # a scratch venv: never committed
    return python


def clean_environment(extra: dict[str, str] | None = None) -> dict[str, str]:
    """This environment without any ``AGENTSIGHT_*`` or ``OTEL_*`` setting, plus ``extra``."""
    environment = {key: value for key, value in os.environ.items() if not key.startswith(("AGENTSIGHT_", "OTEL_"))}
    return {**environment, **(extra or {})}
