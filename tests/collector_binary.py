"""The OpenTelemetry Collector binary the collector tests run: ``otelcol-agentsight``.

It is built by ``make collector`` from ``collector-config/builder-config.yaml`` (the Collector Builder,
Go and its module proxy) into ``${XDG_CACHE_HOME:-$HOME/.cache}/agentsight-otelcol/<key>/``, where
``<key>`` is the first 12 hex digits of the manifest's sha256: once per machine, reused while the
manifest is unchanged. :func:`collector_binary` returns it, building it first when it is missing.

Without the Go toolchain or the module proxy the calling test skips with one loud line; a build that
fails for any other reason (a bad manifest, a compile error) fails the test.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
MANIFEST = REPO / "collector-config" / "builder-config.yaml"
BINARY_NAME = "otelcol-agentsight"
GO_FALLBACK = Path("/usr/local/go/bin/go")
BUILDER_MODULE = "go.opentelemetry.io/collector/cmd/builder"
BUILD_TIMEOUT = 3600.0  # a first build downloads and compiles a few hundred modules
PROBE_TIMEOUT = 120.0
SKIP_PREFIX = "COLLECTOR TESTS SKIPPED:"

# What `go` prints when it cannot reach the module proxy (or any network at all).
NETWORK_FAILURE = re.compile(
    r"dial tcp|no such host|connection refused|i/o timeout|TLS handshake timeout|network is unreachable"
    r"|GOPROXY=off|module lookup disabled|proxyconnect|server misbehaving|temporary failure in name resolution",
    re.IGNORECASE,
)

_skip_reason: str | None = None


def cache_root() -> Path:
    """``${XDG_CACHE_HOME:-$HOME/.cache}/agentsight-otelcol``, as the Makefile computes it."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "agentsight-otelcol"


def manifest_key() -> str:
    """The first 12 hex digits of the manifest's sha256: the build's directory name."""
    return hashlib.sha256(MANIFEST.read_bytes()).hexdigest()[:12]


def binary_path() -> Path:
    """Where ``make collector`` puts the binary for the current manifest (it may not exist yet)."""
    return cache_root() / manifest_key() / BINARY_NAME


def builder_version() -> str:
    """The Collector release the manifest pins (``v0.161.0``): the builder is installed at it."""
    match = re.search(r"^\s*version:\s*([0-9.]+)\s*$", MANIFEST.read_text(encoding="utf-8"), re.MULTILINE)
    assert match, f"{MANIFEST}: no dist.version"
    return f"v{match.group(1)}"


def _go() -> Path | None:
    found = shutil.which("go")
    if found:
        return Path(found)
    return GO_FALLBACK if os.access(GO_FALLBACK, os.X_OK) else None


def _skip(reason: str) -> None:
    global _skip_reason
    _skip_reason = f"{SKIP_PREFIX} {reason}"
    pytest.skip(_skip_reason)


def _tail(text: str, lines: int = 40) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])


def _build(go: Path) -> None:
    """``make collector`` under a lock (tests of several processes may ask at once)."""
    root = cache_root()
    root.mkdir(parents=True, exist_ok=True)
    with (root / ".build.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if os.access(binary_path(), os.X_OK):
            return
        command = ["make", "--no-print-directory", "-C", str(REPO), "collector",
                   f"GO={go}", f"OTELCOL_CACHE={root}", f"OTELCOL_MANIFEST={MANIFEST}"]
        print(f"building the Collector: {' '.join(command)} (a first build takes minutes)", flush=True)
        result = subprocess.run(command, capture_output=True, text=True, timeout=BUILD_TIMEOUT, check=False)
        output = result.stdout + result.stderr
        if result.returncode != 0:
            if NETWORK_FAILURE.search(output):
                _skip(f"the Go module proxy is unreachable during `make collector`: {_tail(output, 1)}")
            pytest.fail(f"`make collector` failed (exit {result.returncode}):\n{_tail(output)}", pytrace=False)


def collector_binary() -> Path:
    """The ``otelcol-agentsight`` binary for the current manifest, built when missing.

    Skips the calling test (one line, starting ``COLLECTOR TESTS SKIPPED:``) when ``go``, ``make`` or the
    Go module proxy is missing; fails it when the build fails for another reason.
    """
    path = binary_path()
    if os.access(path, os.X_OK):
        return path
    if _skip_reason is not None:
        pytest.skip(_skip_reason)
    go = _go()
    if go is None:
        _skip(f"no Go toolchain (`go` not on PATH nor at {GO_FALLBACK}); install Go and run `make collector`")
    assert go is not None
    if shutil.which("make") is None:
        _skip("no `make` on PATH; it builds the Collector (`make collector`)")
    probe = subprocess.run(
        [str(go), "list", "-m", f"{BUILDER_MODULE}@{builder_version()}"],
        capture_output=True, text=True, timeout=PROBE_TIMEOUT, check=False, cwd=tempfile.gettempdir(),
    )
    if probe.returncode != 0:
        wanted = f"{BUILDER_MODULE}@{builder_version()}"
        _skip(f"the Go module proxy is unreachable or lacks {wanted}: {_tail(probe.stderr, 1)}")
    _build(go)
    if not os.access(path, os.X_OK):
        pytest.fail(f"`make collector` succeeded but {path} is missing", pytrace=False)
    return path
