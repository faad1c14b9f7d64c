"""The package as a newcomer installs it (README "Install it into your app"): a wheel built with the README's
command, installed into a fresh venv, runs ``agentsight --version``, ``python -m agentsight --version`` and
``agentsight dev`` with its dashboard.

The wheel's dependencies are kept in a wheelhouse under ``.cache/`` (filled from the package index once, then
used with ``--no-index``), so later runs need no network; without either, the test skips saying why.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import zipfile
from pathlib import Path

import httpx
import pytest

from agentsight import __version__

ROOT = Path(__file__).resolve().parent.parent
WHEELHOUSE = ROOT / ".cache" / "packaging-wheels"
PIP = ["-m", "pip", "--disable-pip-version-check"]
TIMEOUT = 600


def run(command: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    """Run ``command`` in ``cwd`` without this checkout on the path; returns it finished."""
    env = {key: value for key, value in os.environ.items() if key not in {"PYTHONPATH", "VIRTUAL_ENV"}}
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=TIMEOUT, check=False)


def build_wheel(dist: Path) -> Path:
    """The README's command: ``python -m pip wheel --no-deps -w dist .``; an isolated build needs setuptools from
    the index, so offline the same build runs with the venv's setuptools (``--no-build-isolation``)."""
    built = run([sys.executable, *PIP, "wheel", "--no-deps", "-w", str(dist), "."], ROOT)
    if built.returncode != 0:
        built = run([sys.executable, *PIP, "wheel", "--no-deps", "--no-build-isolation", "-w", str(dist), "."], ROOT)
    assert built.returncode == 0, built.stderr[-2000:]
    (wheel,) = dist.glob("agentsight_otel-*.whl")
    return wheel


def fill_wheelhouse(wheel: Path) -> None:
    """Wheels of everything ``<wheel>[dev]`` needs, in :data:`WHEELHOUSE`: offline when it has them, else from the
    package index; skips when neither can provide them."""
    WHEELHOUSE.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, *PIP, "wheel", "--quiet", "-w", str(WHEELHOUSE), "--find-links", str(WHEELHOUSE)]
    forget_our_wheels()
    offline = run([*command, "--no-index", f"{wheel}[dev]"], ROOT)
    forget_our_wheels()
    if offline.returncode == 0:
        return
    online = run([*command, f"{wheel}[dev]"], ROOT)
    forget_our_wheels()
    if online.returncode != 0:
        pytest.skip(f"the wheel's dependencies are neither in {WHEELHOUSE} nor on the package index: "
                    f"{online.stderr.strip()[-300:]}")


def forget_our_wheels() -> None:
    """Remove this project's wheels from :data:`WHEELHOUSE` (``pip wheel`` saves the requested one there too): a
    copy of the same version built earlier would stand in for the new one, with its old dependencies."""
    for stale in WHEELHOUSE.glob("agentsight_otel-*.whl"):
        stale.unlink()


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv with the built wheel and its ``dev`` extra installed; its ``bin`` directory."""
    work = tmp_path_factory.mktemp("packaging")
    wheel = build_wheel(work / "dist")
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
    assert {"agentsight/__main__.py", "agentsight/cli.py", "agentsight/dev/dashboard.html"} <= names
    fill_wheelhouse(wheel)
    venv = work / "venv"
    created = run([sys.executable, "-m", "venv", str(venv)], work)
    assert created.returncode == 0, created.stderr
    bin_dir = venv / "bin"
    install = run([str(bin_dir / "python"), *PIP, "install", "--quiet", "--no-index", "--find-links", str(WHEELHOUSE),
                   f"{wheel}[dev]"], work)
    assert install.returncode == 0, install.stderr[-2000:]
    return bin_dir


@pytest.mark.parametrize("command", [["agentsight", "--version"], ["python", "-m", "agentsight", "--version"],
                                     ["agentsight", "dev", "--version"]])
def test_the_installed_wheel_answers_version(installed: Path, command: list[str]) -> None:
    done = run([str(installed / command[0]), *command[1:]], installed.parent.parent)

    assert done.returncode == 0, done.stderr
    assert done.stdout == f"agentsight-otel {__version__}\n"


def test_the_installed_wheel_is_not_the_checkout(installed: Path) -> None:
    code = "import agentsight; print(agentsight.__version__); print(agentsight.__file__)"
    done = run([str(installed / "python"), "-c", code], installed.parent.parent)

    version, location = done.stdout.split()
    assert version == __version__
    assert Path(location).is_relative_to(installed.parent) and not Path(location).is_relative_to(ROOT)


def test_the_installed_agentsight_dev_serves_its_dashboard(installed: Path) -> None:
    process = subprocess.Popen([str(installed / "agentsight"), "dev", "--memory", "--port", "0"],
                               cwd=installed.parent.parent, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        first = process.stdout.readline()
        url = re.search(r"on (http://127\.0\.0\.1:\d+)", first)
        assert url is not None, first + (process.stderr.read() if process.stderr else "")
        page = httpx.get(f"{url[1]}/", timeout=10.0)
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.communicate(timeout=30)
        finally:
            if process.poll() is None:
                process.kill()

    assert page.status_code == 200
    assert "dashboard.html is missing" not in page.text
    assert page.text.lstrip().lower().startswith("<!doctype html>")
    assert process.returncode == 0
