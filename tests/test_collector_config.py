"""The OpenTelemetry Collector configurations in ``collector-config/``, checked by the real Collector and
against what the design promises.

The real Collector (``otelcol-agentsight validate``, the distribution ``make collector`` builds from
``collector-config/builder-config.yaml``; see tests/collector_binary.py) loads both files with only the
environment they document: component names, settings, OTTL statements and pipelines are its to accept.
The distribution holds exactly the components the configs use, all of one release. The structural tests
keep what ``validate`` does not check: every defined component is used and every referenced extension
enabled, no deprecated aliases, ``${env:...}`` substitution only, trace-ID load balancing and a
persistent queue towards the bridges, a bearer token only over TLS, and the general backend never
receiving AgentSight message content or the customer IP.
"""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

import agentsight.spans.semconv as sc
from agentsight.bridge.server import DEFAULT_MAX_QUEUE_SIZE
from tests.collector_binary import MANIFEST, collector_binary

CONFIG_DIR = Path(__file__).resolve().parent.parent / "collector-config"
# The Collector configs: every YAML file here but the builder manifest.
CONFIG_FILES = sorted(path for path in CONFIG_DIR.glob("*.yaml") if path != MANIFEST)
EXPECTED_FILES = {"agent.yaml", "gateway.yaml"}

# The Collector release the configs are run with: every module of collector-config/builder-config.yaml,
# and the otelcol-contrib release that also runs them.
OTELCOL_VERSION = "0.161.0"

# What the configs need from the environment (as their header comments and README.md document), with
# values to validate with. Nothing else is set: a config needing anything more fails validation.
REQUIRED_ENV = {
    "OTELCOL_GATEWAY_ENDPOINT": "otel-gateway:4317",
    "AGENTSIGHT_BRIDGE_TOKEN": "validate-token",
    "TRACING_BACKEND_ENDPOINT": "tempo:4317",
}
# What the configs take from the environment when it is set (endpoints, ports, directories, CA files),
# with values to run with, and how each shows in the configuration the Collector resolves.
OPTIONAL_ENV = {
    "OTELCOL_OTLP_GRPC_ENDPOINT": "127.0.0.1:14317",
    "OTELCOL_OTLP_HTTP_ENDPOINT": "127.0.0.1:14318",
    "OTELCOL_HEALTH_ENDPOINT": "127.0.0.1:23133",
    "OTELCOL_METRICS_HOST": "127.0.0.1",
    "OTELCOL_METRICS_PORT": "18888",
    "OTELCOL_QUEUE_DIRECTORY": "/tmp/agentsight-queue",
    "OTELCOL_BRIDGE_CONSUMERS": "100",
    "AGENTSIGHT_BRIDGE_ENDPOINTS": "bridge-a:4317,bridge-b:4317",
    "AGENTSIGHT_BRIDGE_CA_FILE": "",
    "TRACING_BACKEND_CA_FILE": "",
}
DOCUMENTED_ENV = {**REQUIRED_ENV, **OPTIONAL_ENV}
# Components the distribution carries beyond what the configs use: the OTLP/HTTP exporter, for a general
# backend reached over HTTP instead of gRPC (README.md), and what the tests record with (debug, file).
EXTRA_TYPES: dict[str, set[str]] = {"exporters": {"otlp_http", "debug", "file"}}
VALIDATE_TIMEOUT = 60.0

# Old names the release still accepts as aliases (with a warning): valid, but not to be used.
DEPRECATED_TYPES: dict[str, dict[str, str]] = {
    "exporters": {"otlp": "otlp_grpc", "otlphttp": "otlp_http", "loadbalancing": "load_balancing"},
}

SECTIONS = ("receivers", "processors", "exporters", "connectors", "extensions")
SIGNALS = ("traces", "metrics", "logs", "profiles")
PIPELINE_NAME = re.compile(rf"^({'|'.join(SIGNALS)})(/[^/\s]+)?$")

# `${env:NAME}` or `${env:NAME:-default}`; `$$` is a literal dollar sign.
ENV_REFERENCE = re.compile(r"\$\{env:([A-Za-z_][A-Za-z0-9_]*)(?::-[^}]*)?\}")
ENV_DEFAULT = re.compile(r"\$\{env:([A-Za-z_][A-Za-z0-9_]*):-([^}]*)\}")

BRIDGE_PIPELINE = "traces/agentsight"
BACKEND_PIPELINE = "traces/backend"
BRIDGE_TOKEN = "${env:AGENTSIGHT_BRIDGE_TOKEN}"
BACKEND_ENDPOINT = "${env:TRACING_BACKEND_ENDPOINT}"

# What the general backend must never receive, named from our semantic conventions so that a renamed
# attribute fails here until the configs follow.
CONTENT_KEYS = (
    sc.MESSAGE_CONTENT,
    sc.ATTACHMENTS_FILES,
    sc.ACTION_RESPONSE,
    sc.GEN_AI_INPUT_MESSAGES,
    sc.GEN_AI_OUTPUT_MESSAGES,
    sc.GEN_AI_SYSTEM_INSTRUCTIONS,
    sc.GEN_AI_TOOL_DEFINITIONS,
)
IP_KEYS = (sc.CUSTOMER_IP_ADDRESS,)
STRIPPED_KEYS = CONTENT_KEYS + IP_KEYS

DELETE_KEY = re.compile(r'^delete_key\((span|spanevent)\.attributes,\s*"([^"]+)"\)$')
OTTL_CONTEXT_PATH = re.compile(r"\b(span|spanevent)\.")


# ---------------------------------------------------------------------------------------------- helpers


def load(path: Path) -> dict[str, Any]:
    with path.open(encoding="utf-8") as handle:
        config = yaml.safe_load(handle)
    assert isinstance(config, dict), f"{path.name}: top level is not a mapping"
    return config


def section(config: dict[str, Any], name: str) -> dict[str, Any]:
    return config.get(name) or {}


def component_type(component_id: str) -> str:
    return component_id.split("/", 1)[0]


def pipelines(config: dict[str, Any]) -> dict[str, dict[str, list[str]]]:
    return section(section(config, "service"), "pipelines")


def enabled_extensions(config: dict[str, Any]) -> list[str]:
    return list(section(config, "service").get("extensions") or [])


def walk(node: Any) -> Iterator[tuple[Any, Any]]:
    """Every (key, value) pair in a parsed YAML tree, depth first (list items have key None)."""
    if isinstance(node, dict):
        for key, value in node.items():
            yield key, value
            yield from walk(value)
    elif isinstance(node, list):
        for item in node:
            yield None, item
            yield from walk(item)


def strings(node: Any) -> Iterator[str]:
    for key, value in walk(node):
        if isinstance(key, str):
            yield key
        if isinstance(value, str):
            yield value


def extension_references(config: dict[str, Any]) -> set[str]:
    """Extension IDs named inside component configs (authenticators, storage of queues and receivers)."""
    refs: set[str] = set()
    for name in ("receivers", "processors", "exporters", "connectors", "extensions"):
        for key, value in walk(section(config, name)):
            if key in ("authenticator", "storage") and isinstance(value, str):
                refs.add(value)
    return refs


def is_enabled(settings: dict[str, Any] | None) -> bool:
    return settings is not None and settings.get("enabled", True) is not False


def exporter_targets(config: dict[str, Any], pipeline_ids: list[str]) -> set[str]:
    return {exporter for pid in pipeline_ids for exporter in pipelines(config)[pid].get("exporters", [])}


def transform_groups(trace_statements: list[Any]) -> list[list[str]]:
    """Statement groups as the transform processor parses them: plain strings form one group."""
    plain = [item for item in trace_statements if isinstance(item, str)]
    groups = [plain] if plain else []
    groups += [list(item.get("statements") or []) for item in trace_statements if isinstance(item, dict)]
    return groups


def deleted_keys(processor: dict[str, Any]) -> set[tuple[str, str]]:
    """(context, key) pairs a transform processor deletes unconditionally from trace attributes."""
    pairs: set[tuple[str, str]] = set()
    for group in transform_groups(processor.get("trace_statements") or []):
        for statement in group:
            match = DELETE_KEY.match(statement.strip())
            if match:
                pairs.add((match.group(1), match.group(2)))
    return pairs


def defaulted(value: str) -> str:
    """A setting as the Collector reads it with no variable set: each ``${env:NAME:-default}`` its default."""
    return ENV_DEFAULT.sub(lambda match: match.group(2), value)


def env_defaults(config: dict[str, Any]) -> dict[str, str]:
    """Variable -> default, of every ``${env:NAME:-default}`` in a config."""
    return {name: default for text in strings(config) for name, default in ENV_DEFAULT.findall(text)}


def gateway() -> dict[str, Any]:
    return load(CONFIG_DIR / "gateway.yaml")


def agent() -> dict[str, Any]:
    return load(CONFIG_DIR / "agent.yaml")


def of_type(config: dict[str, Any], name: str, *types: str) -> dict[str, Any]:
    """The components of section ``name`` whose type is one of ``types`` (any, when none is given), by ID."""
    return {cid: settings for cid, settings in section(config, name).items()
            if not types or component_type(cid) in types}


def bearer_senders(config: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Exporter settings (at any depth, such as a load balancer's ``protocol.otlp``) that authenticate with
    a ``bearertokenauth`` extension, by their key."""
    return {key: value for key, value in walk(section(config, "exporters"))
            if isinstance(value, dict) and isinstance(value.get("auth"), dict)
            and component_type(value["auth"].get("authenticator", "")) == "bearertokenauth"}


config_files = pytest.mark.parametrize("path", CONFIG_FILES, ids=[p.name for p in CONFIG_FILES])


def files_with(found: Callable[[dict[str, Any]], object]) -> pytest.MarkDecorator:
    """Parametrize ``path`` over the config files where ``found(config)`` is not empty: a test of what it
    finds checks at least one thing in every run, instead of passing by looping over nothing (a file with
    none of it has nothing to check, and no file at all shows as an empty parameter set, skipped)."""
    paths = [path for path in CONFIG_FILES if found(load(path))]
    return pytest.mark.parametrize("path", paths, ids=[path.name for path in paths])


# ------------------------------------------------------------------------------------ every config file


def test_expected_files_exist() -> None:
    assert EXPECTED_FILES <= {p.name for p in CONFIG_FILES}
    assert (CONFIG_DIR / "README.md").is_file()


@files_with(extension_references)
def test_referenced_extensions_are_defined_and_enabled(path: Path) -> None:
    config = load(path)
    for ref in extension_references(config):
        assert ref in section(config, "extensions"), f"{path.name}: extension {ref!r} referenced but undefined"
        assert ref in enabled_extensions(config), f"{path.name}: {ref!r} is referenced but not in service.extensions"


@config_files
def test_every_defined_component_is_used(path: Path) -> None:
    config = load(path)
    used_in = {name: set() for name in SECTIONS}
    for pipeline in pipelines(config).values():
        used_in["receivers"].update(pipeline.get("receivers", []))
        used_in["processors"].update(pipeline.get("processors") or [])
        used_in["exporters"].update(pipeline.get("exporters", []))
    used_in["connectors"] = used_in["receivers"] | used_in["exporters"]
    used_in["extensions"] = set(enabled_extensions(config)) | extension_references(config)
    for name in SECTIONS:
        unused = set(section(config, name)) - used_in[name]
        assert not unused, f"{path.name}: {name} defined but never used: {sorted(unused)}"


@config_files
def test_no_deprecated_component_names(path: Path) -> None:
    config = load(path)
    for name, aliases in DEPRECATED_TYPES.items():
        for cid in section(config, name):
            current = aliases.get(component_type(cid))
            assert current is None, f"{path.name}: {cid!r} uses a deprecated {name[:-1]} name; use {current!r}"


@config_files
def test_only_env_provider_substitution(path: Path) -> None:
    for text in strings(load(path)):
        rest = ENV_REFERENCE.sub("", text).replace("$$", "")
        assert "$" not in rest, f"{path.name}: {text!r} substitutes without ${{env:NAME}} syntax"


@config_files
def test_every_pipeline_starts_with_memory_limiter_and_batches(path: Path) -> None:
    for pid, pipeline in pipelines(load(path)).items():
        types = [component_type(p) for p in pipeline.get("processors") or []]
        assert types and types[0] == "memory_limiter", f"{path.name}: {pid} must start with memory_limiter"
        assert types[-1] == "batch", f"{path.name}: {pid} must end with a batch processor"


@config_files
def test_health_check_is_enabled(path: Path) -> None:
    assert any(component_type(e) == "health_check" for e in enabled_extensions(load(path)))


@files_with(lambda config: of_type(config, "extensions", "file_storage"))
def test_file_storage_directories_are_set(path: Path) -> None:
    for eid, settings in of_type(load(path), "extensions", "file_storage").items():
        directory = (settings or {}).get("directory")
        assert isinstance(directory, str), f"{path.name}: {eid} needs a directory"
        assert defaulted(directory).startswith("/"), f"{path.name}: {eid}'s default directory is not absolute"


@files_with(bearer_senders)
def test_bearer_token_is_only_sent_over_tls(path: Path) -> None:
    # bearertokenauth's gRPC credentials require transport security: over plaintext every export fails.
    for key, settings in bearer_senders(load(path)).items():
        assert (settings.get("tls") or {}).get("insecure") is not True, f"{path.name}: {key} sends a token in clear"


@config_files
def test_env_variables_are_documented(path: Path) -> None:
    # Each variable is in the file's header comment and in a row of README.md's environment table, which
    # gives its default (the value of `${env:NAME:-default}`) or says it is required (no default).
    readme = (CONFIG_DIR / "README.md").read_text(encoding="utf-8")
    raw = path.read_text(encoding="utf-8")
    defaults = env_defaults(load(path))
    for text in strings(load(path)):
        for name in ENV_REFERENCE.findall(text):
            rows = [line for line in readme.splitlines() if line.startswith(f"| `{name}` |")]
            assert rows, f"README.md's environment table has no row for {name} used by {path.name}"
            assert re.search(rf"^#.*\b{name}\b", raw, re.MULTILINE), f"{path.name}: header comment misses {name}"
            if name in defaults:
                shown = f"`{defaults[name]}`" if defaults[name] else "empty"
                assert shown in rows[0], f"README.md: the row of {name} does not give its default {shown}"
            else:
                assert "required" in rows[0], f"README.md: {name} has no default; its row must say required"
                assert name in REQUIRED_ENV


@config_files
def test_every_variable_with_a_default_is_known_here(path: Path) -> None:
    assert set(env_defaults(load(path))) <= set(OPTIONAL_ENV), "a new variable: add it to OPTIONAL_ENV"


@config_files
def test_names_the_release_it_runs_with(path: Path) -> None:
    assert f"v{OTELCOL_VERSION}" in path.read_text(encoding="utf-8")


def test_readme_names_the_release_the_build_and_the_files() -> None:
    readme = (CONFIG_DIR / "README.md").read_text(encoding="utf-8")
    assert f"v{OTELCOL_VERSION}" in readme
    assert "otelcol-contrib --config" in readme
    assert f"builder@v{OTELCOL_VERSION}" in readme and MANIFEST.name in readme
    for name in EXPECTED_FILES:
        assert name in readme


def test_every_manifest_module_is_of_the_one_release() -> None:
    manifest = load(MANIFEST)
    assert manifest["dist"]["version"] == OTELCOL_VERSION
    modules = [entry["gomod"] for name in SECTIONS for entry in manifest.get(name) or []]
    assert modules
    for gomod in [*modules, manifest["telemetry"]["gomod"]]:
        assert gomod.endswith(f" v{OTELCOL_VERSION}"), f"{MANIFEST.name}: {gomod!r} is not v{OTELCOL_VERSION}"


# ------------------------------------------------------------------------------- the real Collector


@pytest.fixture(scope="module")
def otelcol() -> Path:
    """The ``otelcol-agentsight`` binary (built once per machine; skips loudly without Go)."""
    return collector_binary()


def validate(binary: Path, path: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """``<binary> validate --config <path>`` with exactly ``env`` (and PATH) as its environment."""
    return subprocess.run(
        [str(binary), "validate", "--config", str(path)],
        env={"PATH": os.environ.get("PATH", ""), **env},
        capture_output=True, text=True, timeout=VALIDATE_TIMEOUT, check=False,
    )


def used_env(path: Path) -> set[str]:
    return {name for text in strings(load(path)) for name in ENV_REFERENCE.findall(text)}


@pytest.mark.collector
@pytest.mark.parametrize("name", sorted(EXPECTED_FILES))
def test_the_collector_accepts_the_config_as_shipped(otelcol: Path, name: str) -> None:
    # Only the required variables: everything else has its default.
    path = CONFIG_DIR / name
    assert used_env(path) <= set(DOCUMENTED_ENV), f"{name} needs variables this test does not know"
    result = validate(otelcol, path, {key: REQUIRED_ENV[key] for key in used_env(path) if key in REQUIRED_ENV})
    assert result.returncode == 0, f"otelcol validate refused {name}:\n{result.stdout}{result.stderr}"


def resolved(binary: Path, path: Path, env: dict[str, str]) -> dict[str, Any]:
    """The configuration the Collector resolves from ``path`` with exactly ``env`` (``print-config``)."""
    result = subprocess.run(
        [str(binary), "print-config", "--mode", "unredacted", "--config", str(path)],
        env={"PATH": os.environ.get("PATH", ""), **env},
        capture_output=True, text=True, timeout=VALIDATE_TIMEOUT, check=False,
    )
    assert result.returncode == 0, f"otelcol print-config refused {path.name}:\n{result.stderr}"
    config = yaml.safe_load(result.stdout)
    assert isinstance(config, dict)
    return config


def listening(config: dict[str, Any]) -> dict[str, Any]:
    """What a resolved config listens on and stores in, and the bridges it sends to."""
    protocols = config["receivers"]["otlp"]["protocols"]
    prometheus = config["service"]["telemetry"]["metrics"]["readers"][0]["pull"]["exporter"]["prometheus"]
    found = {"grpc": protocols["grpc"]["endpoint"], "http": protocols["http"]["endpoint"],
             "health": config["extensions"]["health_check"]["endpoint"],
             "metrics": (prometheus["host"], prometheus["port"])}
    if "file_storage/agentsight" in config["extensions"]:
        storage = config["extensions"]["file_storage/agentsight"]
        found["queue"] = (storage["directory"], storage["compaction"]["directory"])
        balancer = config["exporters"]["load_balancing/agentsight"]
        found["bridges"] = balancer["resolver"]["static"]["hostnames"]
        found["consumers"] = balancer["sending_queue"]["num_consumers"]
    return found


@pytest.mark.collector
def test_the_defaults_are_the_documented_deployment_values(otelcol: Path) -> None:
    # With only the required variables, the files listen and store where a platform team expects them.
    agent_config = resolved(otelcol, CONFIG_DIR / "agent.yaml", {"OTELCOL_GATEWAY_ENDPOINT": "g:4317"})
    assert listening(agent_config) == {"grpc": "localhost:4317", "http": "localhost:4318",
                                       "health": "0.0.0.0:13133", "metrics": ("127.0.0.1", 8888)}
    env = {key: REQUIRED_ENV[key] for key in used_env(CONFIG_DIR / "gateway.yaml") if key in REQUIRED_ENV}
    queue = "/var/lib/otelcol/file_storage/agentsight"
    assert listening(resolved(otelcol, CONFIG_DIR / "gateway.yaml", env)) == {
        "grpc": "0.0.0.0:4317", "http": "0.0.0.0:4318", "health": "0.0.0.0:13133", "metrics": ("0.0.0.0", 8888),
        "queue": (queue, queue),
        "bridges": [f"agentsight-bridge-{index}.agentsight-bridge:4317" for index in range(3)], "consumers": 150}


@pytest.mark.collector
@pytest.mark.parametrize("bridges", ["bridge-a:4317,bridge-b:4317", "[bridge-a:4317, bridge-b:4317]"])
def test_the_environment_sets_what_the_files_say(otelcol: Path, bridges: str) -> None:
    # Every optional variable set: the resolved configuration has its value; the bridge list comma-separated
    # or as a YAML list, as the files' comments say.
    env = {**DOCUMENTED_ENV, "AGENTSIGHT_BRIDGE_ENDPOINTS": bridges}
    expected = {"grpc": "127.0.0.1:14317", "http": "127.0.0.1:14318", "health": "127.0.0.1:23133",
                "metrics": ("127.0.0.1", 18888)}
    assert listening(resolved(otelcol, CONFIG_DIR / "agent.yaml", env)) == expected
    assert listening(resolved(otelcol, CONFIG_DIR / "gateway.yaml", env)) == {
        **expected, "queue": ("/tmp/agentsight-queue", "/tmp/agentsight-queue"),
        "bridges": ["bridge-a:4317", "bridge-b:4317"], "consumers": 100}


@pytest.mark.collector
def test_the_gateway_refuses_to_start_without_the_bridge_token(otelcol: Path) -> None:
    # gateway.yaml promises it: an empty AGENTSIGHT_BRIDGE_TOKEN is refused, not sent.
    env = {key: DOCUMENTED_ENV[key] for key in used_env(CONFIG_DIR / "gateway.yaml")}
    del env["AGENTSIGHT_BRIDGE_TOKEN"]
    result = validate(otelcol, CONFIG_DIR / "gateway.yaml", env)
    assert result.returncode != 0
    assert "bearertokenauth/agentsight" in result.stderr and "token" in result.stderr


@pytest.mark.collector
def test_validation_reads_the_ottl_statements(otelcol: Path, tmp_path: Path) -> None:
    # The control for the test above it: one wrong OTTL path in an otherwise shipped gateway is refused.
    broken = tmp_path / "gateway.yaml"
    text = (CONFIG_DIR / "gateway.yaml").read_text(encoding="utf-8")
    assert text.count("delete_key(spanevent.attributes,") > 0
    broken.write_text(text.replace("delete_key(spanevent.attributes,", "delete_key(spanevent.attribute,", 1))
    env = {key: DOCUMENTED_ENV[key] for key in used_env(broken)}
    result = validate(otelcol, broken, env)
    assert result.returncode != 0
    assert "transform/strip_agentsight_content" in result.stderr and "spanevent.attribute" in result.stderr


@pytest.mark.collector
def test_the_distribution_holds_exactly_what_the_configs_use(otelcol: Path) -> None:
    listed = yaml.safe_load(subprocess.run(
        [str(otelcol), "components"], capture_output=True, text=True, timeout=VALIDATE_TIMEOUT, check=True,
    ).stdout)
    assert listed["buildinfo"]["version"] == OTELCOL_VERSION
    configs = [load(CONFIG_DIR / name) for name in sorted(EXPECTED_FILES)]
    for name in SECTIONS:
        built = {entry["name"]: entry["module"] for entry in listed.get(name) or []}
        used = {component_type(cid) for config in configs for cid in section(config, name)}
        expected = used | EXTRA_TYPES.get(name, set())
        assert set(built) == expected, f"{name}: built {sorted(built)}, used or extra {sorted(expected)}"
        for module in built.values():
            assert module.endswith(f" v{OTELCOL_VERSION}"), f"{module} is not of release v{OTELCOL_VERSION}"


# ------------------------------------------------------------------------------------------------ agent


def test_agent_listens_on_loopback_only() -> None:
    # By default (an environment may move it, as the tests do, to other loopback ports).
    for protocol, settings in section(section(agent(), "receivers")["otlp"], "protocols").items():
        endpoint = defaulted((settings or {}).get("endpoint", ""))
        assert endpoint.startswith(("localhost:", "127.0.0.1:")), f"agent otlp {protocol} binds {endpoint!r}"


def test_agent_forwards_everything_to_the_gateway_with_queue_and_retry() -> None:
    config = agent()
    exporters = section(config, "exporters")
    assert {p.split("/")[0] for p in pipelines(config)} == {"traces", "metrics", "logs"}
    for pid, pipeline in pipelines(config).items():
        for eid in pipeline["exporters"]:
            assert component_type(eid) == "otlp_grpc", f"agent {pid} exports with {eid}"
            settings = exporters[eid]
            assert is_enabled(settings.get("sending_queue")), f"agent {eid} needs a sending_queue"
            assert is_enabled(settings.get("retry_on_failure")), f"agent {eid} needs retry_on_failure"
            assert ENV_REFERENCE.fullmatch(settings["endpoint"]), "the gateway endpoint comes from the environment"


# ---------------------------------------------------------------------------------------------- gateway


def test_gateway_has_both_trace_pipelines() -> None:
    assert {BRIDGE_PIPELINE, BACKEND_PIPELINE} <= set(pipelines(gateway()))


def test_bridge_pipeline_keeps_only_conversation_and_genai_spans() -> None:
    config = gateway()
    filters = [p for p in pipelines(config)[BRIDGE_PIPELINE]["processors"] if component_type(p) == "filter"]
    assert filters, f"{BRIDGE_PIPELINE} needs a filter processor"
    conditions = " ".join(
        str(c) for f in filters for c in (section(config, "processors")[f].get("trace_conditions") or [])
    )
    assert f'span.name != "{sc.CONVERSATION_SPAN}"' in conditions
    assert f'span.attributes["{sc.GEN_AI_OPERATION_NAME}"] == nil' in conditions


def test_bridge_pipeline_load_balances_by_trace_id() -> None:
    config = gateway()
    exporters = pipelines(config)[BRIDGE_PIPELINE]["exporters"]
    assert exporters
    for eid in exporters:
        assert component_type(eid) == "load_balancing", f"{BRIDGE_PIPELINE} exports with {eid}"
        settings = section(config, "exporters")[eid]
        assert settings["routing_key"] == "traceID"
        resolver = settings["resolver"]
        assert resolver.get("static", {}).get("hostnames") or resolver.get("dns", {}).get("hostname")


BRIDGE_ROOM_TURNS = DEFAULT_MAX_QUEUE_SIZE // 5
"""Turns a bridge takes at once by default: its delivery queue (100,000 payloads) of turns of 5 payloads."""


def test_the_gateway_never_sends_a_bridge_more_than_its_room() -> None:
    # Each consumer's batch is split over the bridges by trace and held there (grace and delivery): with the
    # default consumers over the default bridges, a bridge has at most its room in flight. Beyond it the
    # bridge answers UNAVAILABLE and the batch waits 5 s (the benchmark's collapse at 5,000 turns/s).
    config = gateway()
    batch = section(config, "processors")["batch/agentsight"]["send_batch_max_size"]
    balancer = section(config, "exporters")["load_balancing/agentsight"]
    consumers = int(defaulted(str(balancer["sending_queue"]["num_consumers"])))
    bridges = len(defaulted(balancer["resolver"]["static"]["hostnames"]).split(","))
    assert consumers * batch / bridges <= BRIDGE_ROOM_TURNS
    assert consumers * batch >= BRIDGE_ROOM_TURNS, "and no fewer than one bridge's room: it would idle"


def test_every_bridge_exporter_has_a_persistent_queue_and_endless_retry() -> None:
    config = gateway()
    extensions = section(config, "extensions")
    for eid in exporter_targets(config, [BRIDGE_PIPELINE]):
        settings = section(config, "exporters")[eid]
        queue = settings.get("sending_queue")
        assert is_enabled(queue), f"{eid} needs a sending_queue"
        storage = queue.get("storage")
        assert storage in extensions and component_type(storage) == "file_storage", f"{eid} queue needs file_storage"
        retry = settings.get("retry_on_failure")
        assert is_enabled(retry), f"{eid} needs retry_on_failure"
        assert str(retry.get("max_elapsed_time")) in ("0", "0s"), f"{eid} must retry until the bridges answer"
        if component_type(eid) == "load_balancing":
            # Per-bridge in-memory queues would acknowledge batches that a crash could still lose.
            otlp = settings["protocol"]["otlp"]
            assert otlp["sending_queue"]["enabled"] is False, f"{eid}: the per-bridge queue must be off"
            assert otlp["retry_on_failure"]["enabled"] is False, f"{eid}: failures must reach the persistent queue"


def test_bridge_exporter_authenticates_with_the_bridge_token() -> None:
    config = gateway()
    extensions = section(config, "extensions")
    for eid in exporter_targets(config, [BRIDGE_PIPELINE]):
        otlp = section(config, "exporters")[eid]["protocol"]["otlp"]
        authenticator = otlp["auth"]["authenticator"]
        assert component_type(authenticator) == "bearertokenauth"
        assert extensions[authenticator]["token"] == BRIDGE_TOKEN


def test_backend_pipeline_exports_to_the_general_backend() -> None:
    config = gateway()
    for eid in pipelines(config)[BACKEND_PIPELINE]["exporters"]:
        assert component_type(eid) == "otlp_grpc"
        assert section(config, "exporters")[eid]["endpoint"] == BACKEND_ENDPOINT


def test_backend_never_receives_agentsight_content_or_customer_ip() -> None:
    config = gateway()
    backend_exporters = set(pipelines(config)[BACKEND_PIPELINE]["exporters"])
    feeding = [
        pid
        for pid, spec in pipelines(config).items()
        if pid.startswith("traces") and backend_exporters & set(spec.get("exporters", []))
    ]
    assert BACKEND_PIPELINE in feeding
    for pid in feeding:
        deleted: set[tuple[str, str]] = set()
        for proc in pipelines(config)[pid]["processors"]:
            if component_type(proc) == "transform":
                deleted |= deleted_keys(section(config, "processors")[proc])
        for key in STRIPPED_KEYS:
            for context in ("span", "spanevent"):
                assert (context, key) in deleted, f"{pid} must delete {key!r} from {context}.attributes"


def test_strip_transform_groups_have_one_context_and_fail_closed() -> None:
    # A group mixing span. and spanevent. paths is inferred as spanevent and runs once per event, so
    # spans without events would keep their span attributes.
    config = gateway()
    for proc in pipelines(config)[BACKEND_PIPELINE]["processors"]:
        if component_type(proc) != "transform":
            continue
        settings = section(config, "processors")[proc]
        assert settings.get("error_mode") == "propagate", f"{proc}: an error must drop, not leak, the batch"
        for group in transform_groups(settings.get("trace_statements") or []):
            contexts = {m for statement in group for m in OTTL_CONTEXT_PATH.findall(statement)}
            assert len(contexts) == 1, f"{proc}: a statement group mixes OTTL contexts {sorted(contexts)}"
