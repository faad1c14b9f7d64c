"""Cached scratch venvs for tests that need packages kept out of the project venv.

Other tests run ``opentelemetry-instrument`` from the project venv, which loads every installed
instrumentor: peer instrumentations (and upstream SDKs) therefore live in venvs of their own under
``.cache/`` (outside the package, never committed), made on first use and reused while what they were
made from is unchanged. A test needing one is skipped, saying why, when the registry cannot be reached.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CACHE = ROOT / ".cache"
_MARKER = "agentsight-scratch.txt"
"""Written into a venv once installed: what it was made from (a venv without it is remade)."""


def project_pins() -> list[str]:
    """``name==version`` of every distribution in this interpreter's environment but this project."""
    pins = {dist.metadata["Name"]: dist.version for dist in metadata.distributions() if dist.metadata["Name"]}
    return sorted(f"{name}=={version}" for name, version in pins.items() if name.lower() != "agentsight-otel")


def scratch_python(name: str, requirements: Sequence[str], pin_to_project: bool = False) -> Path:
    """The interpreter of the venv ``.cache/<name>`` holding ``requirements``, made and installed when needed.

    ``pin_to_project`` constrains every package also installed here to this environment's version, so
    the scratch venv differs only by what it adds.
    """
    venv = CACHE / name
    python = venv / "bin" / "python"
    constraints = project_pins() if pin_to_project else []
    recipe = "\n".join([*requirements, *constraints]) + "\n"
    marker = venv / _MARKER
    if python.exists() and marker.exists() and marker.read_text() == recipe:
        return python
    subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True)
    command = [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    with tempfile.TemporaryDirectory() as scratch:
        if constraints:
            pinned = Path(scratch) / "constraints.txt"
            pinned.write_text("\n".join(constraints) + "\n")
            command += ["-c", str(pinned)]
        installed = subprocess.run([*command, *requirements], capture_output=True, text=True)
    if installed.returncode != 0:
        pytest.skip(f"{name}: {' '.join(requirements)} could not be installed: {installed.stderr[-500:]}")
    marker.write_text(recipe)
    return python
