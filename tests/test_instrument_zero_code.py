"""LLM calls attributed to a turn under ``opentelemetry-instrument``, loaded from the entry points."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from agentsight.dev import DevServer
from agentsight.dev.local_llm import FakeLLMServer
from tests.conftest import API_KEY, bodies, run_script

pytestmark = pytest.mark.usefixtures("rest_wire")  # these tests read model calls as REST actions

APP = """
import anthropic, openai
from agentsight import ConversationTracker

tracker = ConversationTracker()
tracker.get_or_create_conversation("conv-zero-code")
tracker.track_question("Where is my order?")
openai.OpenAI(base_url=OPENAI_URL, api_key="test", max_retries=0).chat.completions.create(
    model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])
anthropic.Anthropic(base_url=ANTHROPIC_URL, api_key="test", max_retries=0).messages.create(
    model="claude-fake-model", max_tokens=64, messages=[{"role": "user", "content": "hi"}])
tracker.send_tracked_data()
"""


def _run(api: DevServer, fake: FakeLLMServer, tmp_path: Path, **env: str) -> None:
    source = APP.replace("OPENAI_URL", repr(fake.openai_base_url)).replace("ANTHROPIC_URL",
                                                                           repr(fake.anthropic_base_url))
    instrument = str(Path(sys.executable).parent / "opentelemetry-instrument")
    result = run_script(tmp_path, source, {
        "AGENTSIGHT_API_KEY": API_KEY, "AGENTSIGHT_API_ENDPOINT": api.url, "PYTHONPATH": str(Path.cwd()),
        "AGENTSIGHT_AUTO_INSTRUMENT": "false", "OTEL_TRACES_EXPORTER": "none", "OTEL_METRICS_EXPORTER": "none",
        "OTEL_LOGS_EXPORTER": "none", **env,
    }, args=(instrument,))
    assert result.returncode == 0, result.stderr


def test_model_calls_count_in_the_turn(api: DevServer, fake: FakeLLMServer, tmp_path: Path) -> None:
    _run(api, fake, tmp_path)
    actions = bodies(api, "/api/action_logs/")
    assert [a["action_name"] for a in actions] == [
        "chat openai/gpt-4o-mini-2024-07-18", "chat anthropic/claude-fake-model-20241022", "token_usage"]
    assert actions[-1]["metadata"] == {"prompt_tokens": 28, "completion_tokens": 16, "total_tokens": 44,
                                       "embedding_tokens": 0}


def test_a_disabled_instrumentation_is_not_loaded(
    api: DevServer, fake: FakeLLMServer, tmp_path: Path
) -> None:
    _run(api, fake, tmp_path, OTEL_PYTHON_DISABLED_INSTRUMENTATIONS="agentsight_openai")
    actions = bodies(api, "/api/action_logs/")
    assert [a["action_name"] for a in actions] == ["chat anthropic/claude-fake-model-20241022", "token_usage"]


def test_auto_instrumentation_waits_for_the_app_to_import_the_client(
    api: DevServer, fake: FakeLLMServer, tmp_path: Path
) -> None:
    source = """
import sys
from agentsight import ConversationTracker

tracker = ConversationTracker()
assert "openai" not in sys.modules, "creating a tracker imports no client library"
import openai

tracker.get_or_create_conversation("conv-late-import")
openai.OpenAI(base_url=OPENAI_URL, api_key="test", max_retries=0).chat.completions.create(
    model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])
tracker.send_tracked_data()
""".replace("OPENAI_URL", repr(fake.openai_base_url))
    result = run_script(tmp_path, source, {"AGENTSIGHT_API_KEY": API_KEY, "AGENTSIGHT_API_ENDPOINT": api.url,
                                           "PYTHONPATH": str(Path.cwd()), "AGENTSIGHT_AUTO_INSTRUMENT": "true"})
    assert result.returncode == 0, result.stderr
    assert [a["action_name"] for a in bodies(api, "/api/action_logs/")] == [
        "chat openai/gpt-4o-mini-2024-07-18", "token_usage"]
