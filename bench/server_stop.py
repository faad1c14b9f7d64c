"""Messages lost when app servers are stopped with SIGTERM right after serving chats (README "Reliability").

For each server of tests/test_server_stop.py (uvicorn, gunicorn with uvicorn or sync workers, with and without
``--preload``, hypercorn), serve ``--chats`` chats of the widget backend while ``agentsight dev`` adds
``--latency`` seconds to every API request, send SIGTERM the moment the last one is answered, and count the
questions and answers the API stored once the server exited.

    .venv/bin/python bench/server_stop.py --chats 100 --latency 0.5 --protocol rest
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from agentsight.dev import DevServer  # noqa: E402
from tests.conftest import stored_messages  # noqa: E402
from tests.test_server_stop import ANSWER, SERVERS, serve_then_stop  # noqa: E402


def main() -> None:
    """Print one line per server: messages lost and duplicated, and seconds from SIGTERM to exit."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chats", type=int, default=100)
    parser.add_argument("--latency", type=float, default=0.5)
    parser.add_argument("--protocol", choices=["ingest", "rest"], default="ingest")
    parser.add_argument("servers", nargs="*", help=f"some of: {', '.join(SERVERS)} (default: all)")
    args = parser.parse_args()
    for name in args.servers or SERVERS:
        with DevServer(latency=args.latency) as api, tempfile.TemporaryDirectory() as scratch:
            elapsed, _ = serve_then_stop(SERVERS[name], api, Path(scratch), chats=args.chats,
                                         AGENTSIGHT_PROTOCOL=args.protocol)
            stored = Counter(stored_messages(api))
        expected = Counter([(f"c{n}", f"q{n}") for n in range(args.chats)] + [(f"c{n}", ANSWER)
                                                                               for n in range(args.chats)])
        lost, duplicated = sum((expected - stored).values()), sum((stored - expected).values())
        print(f"{name:26s} {args.protocol:6s} lost {lost:4d} of {2 * args.chats}, duplicated {duplicated}, "
              f"exit {elapsed:.1f} s after SIGTERM", flush=True)


if __name__ == "__main__":
    main()
