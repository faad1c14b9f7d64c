"""The ``agentsight`` command line: ``agentsight bridge`` and ``agentsight dev`` (more plug into :data:`COMMANDS`).

Each subcommand is a :class:`Command`: a name, a one-line help, a function adding its options to its
``argparse`` sub-parser and a function running it that returns the exit status. ``python -m agentsight`` runs
the same :func:`main`; ``--version`` works on the command and on every subcommand.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from agentsight.bridge.server import DEFAULT_GRPC_PORT, DEFAULT_HTTP_PORT, Bridge, bridge_settings
from agentsight.config import PROTOCOLS, SDK_NAME, SDK_VERSION
from agentsight.exceptions import ConfigurationError, InvalidApiKeyException, NoApiKeyException

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2

logger = logging.getLogger("agentsight.cli")


@dataclass(frozen=True)
class Command:
    """One subcommand of ``agentsight``."""

    name: str
    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]


# agentsight bridge -------------------------------------------------------------------------------


def _add_bridge_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default: %(default)s)")
    parser.add_argument("--grpc-port", type=_port, default=DEFAULT_GRPC_PORT,
                        help="OTLP/gRPC port, 0 for any free port (default: %(default)s)")
    parser.add_argument("--http-port", type=_port, default=DEFAULT_HTTP_PORT,
                        help="OTLP/HTTP port, 0 for any free port (default: %(default)s)")
    parser.add_argument("--token", default=os.environ.get("AGENTSIGHT_BRIDGE_TOKEN") or None,
                        help="bearer token senders must present (default: $AGENTSIGHT_BRIDGE_TOKEN; none: no check)")
    parser.add_argument("--tls-cert", default=os.environ.get("AGENTSIGHT_BRIDGE_TLS_CERT") or None, metavar="PEM",
                        help="serve TLS with this certificate (default: $AGENTSIGHT_BRIDGE_TLS_CERT; none: plaintext)")
    parser.add_argument("--tls-key", default=os.environ.get("AGENTSIGHT_BRIDGE_TLS_KEY") or None, metavar="PEM",
                        help="the certificate's private key (default: $AGENTSIGHT_BRIDGE_TLS_KEY)")
    parser.add_argument("--grace", type=float, default=None, metavar="SECONDS",
                        help="how long a turn waits for model-call spans of its trace sent separately "
                             "(default: $AGENTSIGHT_BRIDGE_GRACE or 2)")
    parser.add_argument("--ack-timeout", type=float, default=None, metavar="SECONDS",
                        help="how long a request waits for its conversations' delivery before it is answered "
                             "'retry' (503 / UNAVAILABLE); keep it below the senders' time-out "
                             "(default: $AGENTSIGHT_BRIDGE_ACK_TIMEOUT or 8)")
    parser.add_argument("--shutdown-timeout", type=float, default=30.0, metavar="SECONDS",
                        help="on SIGTERM/SIGINT, how long to answer requests in flight and deliver what is left "
                             "(what is not delivered was not acknowledged) (default: %(default)s)")
    parser.add_argument("--log-level", default=os.environ.get("AGENTSIGHT_LOG_LEVEL") or "INFO",
                        help="DEBUG, INFO, WARNING or ERROR (default: $AGENTSIGHT_LOG_LEVEL or INFO)")
    parser.add_argument("--protocol", default=None, choices=PROTOCOLS,
                        help="the AgentSight wire: ingest (POST /api/ingest/) or rest (the 0.0.x endpoints) "
                             "(default: $AGENTSIGHT_PROTOCOL or ingest)")


def _run_bridge(args: argparse.Namespace) -> int:
    _configure_logging(args.log_level)
    try:
        settings = bridge_settings(args.protocol)
    except ConfigurationError as error:
        print(f"agentsight bridge: {error}", file=sys.stderr)
        return EXIT_USAGE
    try:
        settings.check_api_key()
    except NoApiKeyException:
        print("agentsight bridge: AGENTSIGHT_API_KEY is not set (the bridge delivers with it)", file=sys.stderr)
        return EXIT_USAGE
    except InvalidApiKeyException as error:
        print(f"agentsight bridge: AGENTSIGHT_API_KEY: {error}", file=sys.stderr)
        return EXIT_USAGE
    if (args.tls_cert is None) != (args.tls_key is None):
        print("agentsight bridge: --tls-cert and --tls-key go together", file=sys.stderr)
        return EXIT_USAGE
    bridge = Bridge(args.host, args.grpc_port, args.http_port, token=args.token, settings=settings, grace=args.grace,
                    ack_timeout=args.ack_timeout, tls_cert_file=args.tls_cert, tls_key_file=args.tls_key)
    stop = StopSignal.install()
    try:
        bridge.start()
    except OSError as error:
        print(f"agentsight bridge: cannot listen: {error}", file=sys.stderr)
        return EXIT_FAILURE
    except ValueError as error:
        print(f"agentsight bridge: {error}", file=sys.stderr)
        return EXIT_USAGE
    logger.info(
        "agentsight bridge listening: OTLP/gRPC on %s, OTLP/HTTP on %s%s; delivering to %s (%s)",
        bridge.grpc_endpoint, bridge.http_endpoint, " (bearer token required)" if args.token else "",
        settings.endpoint, settings.protocol,
    )
    signum = stop.wait()
    logger.info("agentsight bridge stopping on %s: answering requests in flight, delivering what is left",
                signal.Signals(signum).name)
    bridge.stop(args.shutdown_timeout)
    logger.info("agentsight bridge stopped")
    return EXIT_OK


BRIDGE = Command(
    "bridge",
    "receive OTLP traces (gRPC and HTTP) and deliver their conversation turns to AgentSight",
    _add_bridge_arguments,
    _run_bridge,
)


# agentsight dev ----------------------------------------------------------------------------------


def _add_dev_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default: %(default)s)")
    parser.add_argument("--port", type=_port, default=8321, help="port, 0 for any free port (default: %(default)s)")
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--db", default="./agentsight-dev.db", metavar="PATH",
                       help="SQLite database file, created on first start (default: %(default)s)")
    where.add_argument("--memory", action="store_true", help="keep everything in memory, nothing on disk")


def _run_dev(args: argparse.Namespace) -> int:
    try:  # only this command needs the dev extra
        from agentsight.dev.server import DevServer
    except ImportError as error:
        print(f"agentsight dev: needs FastAPI and uvicorn ({error}); install the dev extra with the package, "
              "pip install '/path/to/agentsight-otel[dev]' (a checkout, or the wheel), or pip install fastapi uvicorn",
              file=sys.stderr)
        return EXIT_USAGE
    db = None if args.memory else args.db
    server = DevServer(args.host, args.port, db)
    stop = StopSignal.install()
    try:
        server.start()
    except OSError as error:
        print(f"agentsight dev: cannot listen: {error}", file=sys.stderr)
        return EXIT_FAILURE
    print(f"AgentSight dev server on {server.url} ({'in memory' if db is None else f'database {db}'}); "
          f"point AGENTSIGHT_API_ENDPOINT at it, Ctrl-C to stop", flush=True)
    stop.wait()
    server.stop()
    server.store.close()
    return EXIT_OK


DEV = Command(
    "dev",
    "run a local AgentSight-compatible API with a dashboard, storing what arrives in SQLite (or in memory)",
    _add_dev_arguments,
    _run_dev,
)

COMMANDS: tuple[Command, ...] = (BRIDGE, DEV)
"""The subcommands, in ``--help`` order."""


# Shared plumbing ---------------------------------------------------------------------------------


VERSION_TEXT = f"{SDK_NAME} {SDK_VERSION}"
"""What ``--version`` prints: the installed distribution's name and version (``agentsight-otel 0.1.0``)."""


def build_parser(commands: Sequence[Command] = COMMANDS) -> argparse.ArgumentParser:
    """The ``agentsight`` parser with one sub-parser per command, each taking ``--version``."""
    parser = argparse.ArgumentParser(prog="agentsight", description="AgentSight tools")
    _add_version(parser)
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for command in commands:
        sub = subparsers.add_parser(command.name, help=command.help, description=command.help)
        _add_version(sub)
        command.add_arguments(sub)
        sub.set_defaults(run=command.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``agentsight`` with ``argv`` (default: the process arguments); returns the exit status."""
    args = build_parser().parse_args(argv)
    return int(args.run(args))


def _add_version(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--version", action="version", version=VERSION_TEXT,
                        help="print the version of agentsight-otel and exit")


def _port(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        port = -1
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"not a port number: {text!r}")
    return port


def _configure_logging(level: str) -> None:
    name = level.strip().upper()
    known = isinstance(logging.getLevelName(name), int)  # getLevelName maps a known name to its number
    logging.basicConfig(
        level=name if known else logging.INFO, stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


@dataclass
class StopSignal:
    """Set by SIGTERM or SIGINT: a graceful stop instead of ``KeyboardInterrupt`` or a kill.

    The handler only records the signal (no locks in a signal handler); :meth:`wait` polls for it.
    """

    received: list[int] = field(default_factory=list)

    @classmethod
    def install(cls) -> StopSignal:
        """Handle SIGTERM and SIGINT from now on (main thread only)."""
        stop = cls()
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, stop.handle)
        return stop

    def handle(self, signum: int, frame: object) -> None:
        """The signal handler."""
        self.received.append(signum)

    def wait(self, poll: float = 0.1) -> int:
        """Block until a stop signal arrives; returns its number."""
        while not self.received:
            time.sleep(poll)
        return self.received[0]


if __name__ == "__main__":
    sys.exit(main())
