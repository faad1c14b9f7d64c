"""One pipeline per process, forks and signals: each scenario in a fresh interpreter, counted in the API's store.

- A turn open across ``os.fork()`` is sent once, by the process that opened it.
- ``multiprocessing`` workers (which end with ``os._exit``) deliver what their tasks tracked.
- Trackers with the same configuration share one pipeline; dropped trackers leave no threads or exit hooks;
  several pipelines drain in parallel within one bound.
- A tracker leaves the app's signal handlers alone; a script that exits on SIGTERM (as README says) delivers.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest

from agentsight import ConversationTracker
from agentsight.dev import DevServer
from tests.conftest import API_KEY, run_script, stored_messages

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="fork and SIGTERM")
WIRES = ["ingest", "rest"]


def _env(api: DevServer | str, protocol: str = "ingest", **extra: str) -> dict[str, str]:
    url = api if isinstance(api, str) else api.url
    return {"AGENTSIGHT_API_KEY": API_KEY, "AGENTSIGHT_API_ENDPOINT": url, "AGENTSIGHT_PROTOCOL": protocol, **extra}


@pytest.mark.parametrize("protocol", WIRES)
def test_a_turn_open_across_fork_is_sent_once_by_the_process_that_opened_it(
    api: DevServer, tmp_path: Path, protocol: str
) -> None:
    result = run_script(tmp_path, """
    import os, sys
    from agentsight import ConversationTracker
    tracker = ConversationTracker()
    tracker.get_or_create_conversation("forked")
    tracker.track_question("asked before the fork")
    child = os.fork()
    if child == 0:
        sys.exit(0)  # the child's exit drain must leave the parent's open turn alone
    os.waitpid(child, 0)
    tracker.track_answer("answered after the fork")
    tracker.send_tracked_data()
    """, _env(api, protocol))
    assert result.returncode == 0, result.stderr
    assert stored_messages(api) == [("forked", "asked before the fork"), ("forked", "answered after the fork")]


POOL_APP = """
    import multiprocessing, sys
    from agentsight import ConversationTracker

    tracker = ConversationTracker()

    def task(number):
        tracker.get_or_create_conversation(f"task-{number}")
        tracker.track_question(f"q{number}")
        tracker.track_answer(f"a{number}")
        tracker.send_tracked_data()
        if sys.argv[2] == "flush":
            tracker.flush()  # README: a pool ended by terminate() (its with-block) kills its workers
        return number

    if __name__ == "__main__":
        context = multiprocessing.get_context(sys.argv[1])
        if sys.argv[2] == "flush":
            with context.Pool(2) as pool:
                assert sum(pool.map(task, range(12))) == 66
        else:
            pool = context.Pool(2)
            assert sum(pool.map(task, range(12))) == 66
            pool.close()
            pool.join()
            worker = context.Process(target=task, args=(12,))
            worker.start()
            worker.join()
"""


@pytest.mark.parametrize(("method", "ending", "protocol"), [
    ("fork", "join", "ingest"), ("fork", "join", "rest"), ("forkserver", "join", "ingest"),
    ("spawn", "join", "ingest"), ("fork", "flush", "ingest"),
])
def test_multiprocessing_workers_deliver_what_their_tasks_tracked(
    api: DevServer, tmp_path: Path, method: str, ending: str, protocol: str
) -> None:
    script = tmp_path / "pool_app.py"
    script.write_text(textwrap.dedent(POOL_APP))
    result = subprocess.run([sys.executable, str(script), method, ending], env={**os.environ, **_env(api, protocol)},
                            capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    tasks = range(12) if ending == "flush" else range(13)
    expected = Counter({(f"task-{n}", f"q{n}"): 1 for n in tasks} | {(f"task-{n}", f"a{n}"): 1 for n in tasks})
    assert Counter(stored_messages(api)) == expected


def test_trackers_with_the_same_configuration_share_one_pipeline(
    make_tracker: Callable[..., ConversationTracker],
) -> None:
    first, second = make_tracker(), make_tracker()
    first.get_or_create_conversation("conv-shared")
    first.track_question("through the first tracker")
    first.send_tracked_data()
    assert second.flush(10)["complete"]
    assert second.delivery_stats()["turns_submitted"] == 1, "one queue for both"
    assert first.exporter is not None and second.exporter is not None
    assert first.exporter.key_check is second.exporter.key_check, "one key preflight"
    first.shutdown()
    second.get_or_create_conversation("conv-after")
    second.track_question("the pipeline lives on for the other tracker")
    second.send_tracked_data()
    assert second.flush(10)["delivered"]


def test_dropped_trackers_leave_no_threads_or_exit_hooks(api: DevServer, tmp_path: Path) -> None:
    result = run_script(tmp_path, """
    import atexit, gc, threading
    from agentsight import ConversationTracker

    def make_and_drop(number):
        tracker = ConversationTracker()
        tracker.get_or_create_conversation(f"conv-{number}")
        tracker.track_question(f"q{number}")
        tracker.send_tracked_data()

    make_and_drop(0)
    threads, hooks = threading.active_count(), atexit._ncallbacks()
    for number in range(1, 300):
        make_and_drop(number)
    gc.collect()
    print(threading.active_count() - threads, atexit._ncallbacks() - hooks)
    """, _env(api))
    assert result.returncode == 0, result.stderr
    more_threads, more_hooks = map(int, result.stdout.split())
    assert more_threads <= 3 and more_hooks == 0, (more_threads, more_hooks)  # up to 4 delivery threads in all
    assert len(stored_messages(api)) == 300


def test_pipelines_drain_in_parallel_at_exit_within_one_bound(tmp_path: Path) -> None:
    result = run_script(tmp_path, """
    import socket, time
    from agentsight import ConversationTracker
    closed = socket.create_server(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()  # nothing listens: every attempt is refused and retried
    for number, protocol in enumerate(["ingest", "rest", "ingest"]):
        tracker = ConversationTracker(endpoint=f"http://127.0.0.1:{port}/v{number}", protocol=protocol)
        tracker.get_or_create_conversation(f"conv-{number}")
        tracker.track_question("never delivered")
        tracker.send_tracked_data()
    print(time.monotonic(), flush=True)
    """, _env("http://unused.invalid", AGENTSIGHT_SHUTDOWN_TIMEOUT="3"))
    ended = time.monotonic()
    assert result.returncode == 0, result.stderr
    assert ended - float(result.stdout) < 6, "three pipelines, one 3 s bound"
    assert result.stderr.count("http://127.0.0.1:") >= 3, "each pipeline says what it gave up"


def test_a_tracker_leaves_the_apps_signal_handlers_alone(make_tracker: Callable[..., ConversationTracker]) -> None:
    before = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)}
    make_tracker()
    assert {sig: signal.getsignal(sig) for sig in before} == before


def test_a_script_that_exits_on_sigterm_delivers_what_it_tracked(tmp_path: Path) -> None:
    script = tmp_path / "worker.py"
    script.write_text(textwrap.dedent("""
        import signal, sys, time
        from agentsight import ConversationTracker

        tracker = ConversationTracker()
        signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(0))  # README: exit, and the exit drain runs

        for number in range(20):
            tracker.get_or_create_conversation(f"job-{number}")
            tracker.track_question(f"q{number}")
            tracker.send_tracked_data()
        print("tracked", flush=True)
        time.sleep(60)
    """))
    with DevServer(latency=0.5) as api:
        process = subprocess.Popen([sys.executable, str(script)], env={**os.environ, **_env(api)},
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            assert process.stdout is not None and process.stdout.readline() == "tracked\n"
            process.send_signal(signal.SIGTERM)
            _, errors = process.communicate(timeout=30)
        finally:
            if process.poll() is None:
                process.kill()
                process.communicate()
        assert process.returncode == 0, errors
        assert sorted(stored_messages(api)) == sorted((f"job-{n}", f"q{n}") for n in range(20))
