"""The oldest client releases, said once: what each instrumentor accepts (``instrumentation_dependencies()``)
is what ``make test-oldest`` installs (tests/oldest-clients.txt) and what the test extra asks for at least."""

from __future__ import annotations

import importlib
import logging
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

from agentsight.instrumentation import INSTRUMENTORS
from agentsight.instrumentation.instrumentor import AgentSightInstrumentor

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


class _Recording(AgentSightInstrumentor):
    """An instrumentor of ours that records what happened to it."""

    requirement = "openai >= 1"
    fail = False

    def __init__(self) -> None:
        self.calls: list[str] = []

    def instrumentation_dependencies(self) -> tuple[str, ...]:
        return (self.requirement,)

    def _instrument(self, **kwargs: object) -> None:
        self.calls.append("instrument")
        if self.fail:
            raise AttributeError("type object 'V2Client' has no attribute 'embed'")

    def _uninstrument(self, **kwargs: object) -> None:
        self.calls.append("uninstrument")


class _TooNew(_Recording):
    requirement = "openai >= 99"


class _Broken(_Recording):
    fail = True


def test_a_client_release_out_of_range_is_left_alone_even_when_the_loader_skips_the_check(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """``opentelemetry-instrument`` checks only the distribution's requirements and passes skip_dep_check=True."""
    instrumentor = _TooNew()
    assert instrumentor.instrument(skip_dep_check=True) is None
    assert instrumentor.calls == [] and not instrumentor.is_instrumented_by_opentelemetry
    assert "openai >= 99" in caplog.text


def test_a_failing_instrumentation_is_logged_and_undone_never_raised(caplog: pytest.LogCaptureFixture) -> None:
    """The loader would stop at the first instrumentor that raises; ours log and let the others load."""
    instrumentor = _Broken()
    with caplog.at_level(logging.WARNING, logger="agentsight.instrumentation"):
        assert instrumentor.instrument(skip_dep_check=True) is None
    assert instrumentor.calls == ["instrument", "uninstrument"]
    assert not instrumentor.is_instrumented_by_opentelemetry
    assert "could not instrument with _Broken" in caplog.text and "V2Client" in caplog.text
    working = _Recording()
    working.instrument(skip_dep_check=True)
    assert working.calls == ["instrument"] and working.is_instrumented_by_opentelemetry
    working.uninstrument()


def test_every_instrumentor_of_ours_has_the_safe_base() -> None:
    for target in INSTRUMENTORS.values():
        module, name = target.split(":")
        assert issubclass(getattr(importlib.import_module(module), name), AgentSightInstrumentor), target
