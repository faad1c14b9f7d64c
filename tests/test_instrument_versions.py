"""The oldest client releases, said once: what each instrumentor accepts (``instrumentation_dependencies()``)
is what ``make test-oldest`` installs (tests/oldest-clients.txt) and what the test extra asks for at least."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

from agentsight.instrumentation import INSTRUMENTORS

tomllib = pytest.importorskip("tomllib")  # Python 3.11

ROOT = Path(__file__).parent.parent


def _oldest() -> dict[str, Version]:
    """Distribution -> the release ``make test-oldest`` pins."""
    lines = (ROOT / "tests" / "oldest-clients.txt").read_text().splitlines()
    pins = [line.split("==") for line in lines if line.strip() and not line.startswith("#")]
    return {canonicalize_name(name): Version(release) for name, release in pins}


def _lower_bound(requirement: Requirement) -> Version | None:
    """The release a requirement starts at (its ``>=``), ``None`` where it names none."""
    bounds = [Version(spec.version) for spec in requirement.specifier if spec.operator == ">="]
    return bounds[0] if len(bounds) == 1 else None


def _declared() -> list[Requirement]:
    """Every instrumentor's ``instrumentation_dependencies()``."""
    requirements = []
    for target in INSTRUMENTORS.values():
        module, name = target.split(":")
        instrumentor = getattr(importlib.import_module(module), name)()
        requirements += [Requirement(text) for text in instrumentor.instrumentation_dependencies()]
    return requirements


def test_each_instrumentor_starts_at_the_release_make_test_oldest_runs() -> None:
    oldest = _oldest()
    for requirement in _declared():
        assert _lower_bound(requirement) == oldest.get(canonicalize_name(requirement.name)), str(requirement)


def test_the_test_extra_accepts_the_oldest_releases() -> None:
    oldest = _oldest()
    extra = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]["test"]
    tested = [Requirement(text) for text in extra if canonicalize_name(Requirement(text).name) in oldest]
    assert {canonicalize_name(requirement.name) for requirement in tested + _declared()} == set(oldest), (
        "every pinned release is a client an instrumentor or the tests use")
    for requirement in tested:
        assert _lower_bound(requirement) == oldest[canonicalize_name(requirement.name)], str(requirement)
