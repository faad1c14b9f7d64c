"""Servers stopped with SIGTERM deliver what they served: uvicorn, gunicorn (uvicorn and sync workers), hypercorn.

Each scenario starts the real server on the widget backend (examples/widget_fastapi.py, or examples/widget_flask.py
for gunicorn's sync workers) in a subprocess, serves chats through httpx while the API (``agentsight dev``) takes
500 ms per request (so that turns are still queued when the server stops: at 100 ms uvicorn lost 0 to 99 of 120
messages before the lifecycle hooks, at 500 ms all but a few every time), sends SIGTERM to the server the moment
the last chat is answered, and counts what the API stored once the server has exited: every question and answer,
once, within the 30 s an orchestrator grants.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import httpx
import pytest

from agentsight.dev import DevServer
from tests.conftest import API_KEY, stored_messages

ROOT = Path(__file__).resolve().parent.parent
CHATS = 60
LATENCY = 0.5
GRACE = 30.0
"""What a container orchestrator grants between SIGTERM and SIGKILL."""
ANSWER = "This is a sample response"

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="SIGTERM and fork")

SERVERS = {
    "uvicorn": ["uvicorn", "examples.widget_fastapi:app", "--fd", "{fd}"],
    "uvicorn-workers": ["uvicorn", "examples.widget_fastapi:app", "--fd", "{fd}", "--workers", "2"],
    "gunicorn-uvicorn": ["gunicorn", "-k", "uvicorn.workers.UvicornWorker", "-w", "3", "-b", "fd://{fd}",
                         "examples.widget_fastapi:app"],
    "gunicorn-uvicorn-preload": ["gunicorn", "-k", "uvicorn.workers.UvicornWorker", "-w", "3", "--preload",
                                 "-b", "fd://{fd}", "examples.widget_fastapi:app"],
    "gunicorn-sync": ["gunicorn", "-w", "3", "-b", "fd://{fd}", "examples.widget_flask:app"],
    "gunicorn-sync-preload": ["gunicorn", "-w", "3", "--preload", "-b", "fd://{fd}", "examples.widget_flask:app"],
    "hypercorn": ["hypercorn", "-b", "fd://{fd}", "examples.widget_fastapi:app"],
}


def server_env(api: DevServer | str, **extra: str) -> dict[str, str]:
    """This environment without ``AGENTSIGHT_*`` variables, pointed at ``api`` (a server or a URL)."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("AGENTSIGHT_")}
    url = api if isinstance(api, str) else api.url
    return {**env, "PYTHONUNBUFFERED": "1", "AGENTSIGHT_API_ENDPOINT": url, "AGENTSIGHT_API_KEY": API_KEY, **extra}


async def chat_all(url: str, chats: int, concurrency: int = 10) -> None:
    """Post ``chats`` chat messages (conversations ``c0`` ...), ``concurrency`` at a time; each must be answered."""
    limit = asyncio.Semaphore(concurrency)
    async with httpx.AsyncClient(base_url=url, timeout=30.0) as client:

        async def one(number: int) -> None:
            async with limit:
                reply = await client.post("/api/chat", json={"conversation_id": f"c{number}", "message": f"q{number}"})
                assert reply.json() == {"response": ANSWER}, reply.text

        await asyncio.gather(*(one(number) for number in range(chats)))


def serve_then_stop(command: list[str], api: DevServer | str, tmp_path: Path, chats: int = CHATS,
                    launcher: tuple[str, ...] = (), **env: str) -> tuple[float, str]:
    """Serve ``chats`` chats with the server ``command`` ({fd}: its listening socket), then SIGTERM it.

    Returns the seconds from SIGTERM to the server's exit, and what it wrote.
    """
    listener = socket.create_server(("127.0.0.1", 0), backlog=128)
    fd = listener.fileno()
    log = tmp_path / "server.log"
    with log.open("w") as output:
        process = subprocess.Popen(
            [*launcher, sys.executable, "-m", *(part.format(fd=fd) for part in command)], cwd=ROOT,
            env=server_env(api, **env), pass_fds=[fd], stdout=output, stderr=subprocess.STDOUT,
        )
        try:
            asyncio.run(chat_all(f"http://127.0.0.1:{listener.getsockname()[1]}", chats))
            stopped = time.monotonic()
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=GRACE + 10)
            elapsed = time.monotonic() - stopped
        finally:
            listener.close()
            if process.poll() is None:
                process.kill()
                process.wait()
    return elapsed, log.read_text()


def assert_every_chat_stored_once(api: DevServer, chats: int, output: str) -> None:
    """Each conversation ``c<n>`` stored its question and the answer, once each."""
    expected = Counter({(f"c{n}", f"q{n}"): 1 for n in range(chats)} | {(f"c{n}", ANSWER): 1 for n in range(chats)})
    stored = Counter(stored_messages(api))
    lost = expected - stored
    duplicated = stored - expected
    assert (sum(lost.values()), sum(duplicated.values())) == (0, 0), (
        f"{sum(lost.values())} of {2 * chats} messages lost, {sum(duplicated.values())} duplicated\n{output[-3000:]}")


@pytest.mark.parametrize("server", SERVERS)
def test_sigterm_delivers_every_served_chat(server: str, tmp_path: Path) -> None:
    with DevServer(latency=LATENCY) as api:
        elapsed, output = serve_then_stop(SERVERS[server], api, tmp_path)
        assert_every_chat_stored_once(api, CHATS, output)
    assert elapsed < GRACE, output[-3000:]
    assert "Traceback" not in output, output[-3000:]


@pytest.mark.parametrize("server", ["uvicorn", "gunicorn-uvicorn", "gunicorn-sync"])
def test_sigterm_delivers_every_served_chat_on_the_rest_wire(server: str, tmp_path: Path) -> None:
    with DevServer(latency=LATENCY) as api:
        elapsed, output = serve_then_stop(SERVERS[server], api, tmp_path, AGENTSIGHT_PROTOCOL="rest")
        assert_every_chat_stored_once(api, CHATS, output)
    assert elapsed < GRACE, output[-3000:]


@pytest.mark.parametrize("server", ["uvicorn", "gunicorn-sync"])
def test_an_unreachable_api_delays_the_stop_by_the_bound_only(server: str, tmp_path: Path) -> None:
    closed = socket.create_server(("127.0.0.1", 0))
    url = f"http://127.0.0.1:{closed.getsockname()[1]}"
    closed.close()  # nothing listens there: every delivery attempt is refused and retried
    elapsed, output = serve_then_stop(SERVERS[server], url, tmp_path, chats=10, AGENTSIGHT_SHUTDOWN_TIMEOUT="2")
    assert elapsed < 8, output[-3000:]
    assert re.search(r"gave up|undelivered|still queued", output), "what is lost is said: " + output[-3000:]


def test_sigterm_under_opentelemetry_instrument_delivers_what_the_batch_processor_held(tmp_path: Path) -> None:
    """``OTEL_TRACES_EXPORTER=agentsight``: turns wait up to 5 s in the app's ``BatchSpanProcessor``."""
    instrument = str(Path(sys.executable).parent / "opentelemetry-instrument")
    with DevServer(latency=LATENCY) as api:
        elapsed, output = serve_then_stop(
            SERVERS["uvicorn"], api, tmp_path, launcher=(instrument,), OTEL_TRACES_EXPORTER="agentsight",
            OTEL_METRICS_EXPORTER="none", OTEL_LOGS_EXPORTER="none")
        assert_every_chat_stored_once(api, CHATS, output)
    assert elapsed < GRACE, output[-3000:]
