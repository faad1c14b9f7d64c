"""A LangChain tool-calling agent tracked by AgentSight's 0.1.x API, with no AgentSight code inside the agent.

``agentsight.init()`` installs the LangChain handler and the ``openai`` instrumentation: the agent's tool
runs become actions of the current turn and each model call counts once. The model is
``OPENAI_BASE_URL`` (any OpenAI-compatible API; ``OPENAI_API_KEY``, ``AGENT_MODEL``), else the bundled
stand-in model on 127.0.0.1. Delivers to ``AGENTSIGHT_API_ENDPOINT`` with ``AGENTSIGHT_API_KEY``, else to
a local AgentSight-compatible API, and prints what it stored. Exits with 1 when something was not delivered.
"""

from __future__ import annotations

import json
import os
import sys
from contextlib import ExitStack

from langchain_core.messages import BaseMessage, HumanMessage
from langchain_core.runnables import RunnableLambda
from langchain_core.tools import tool
from langchain_openai import ChatOpenAI

import agentsight
from agentsight.dev import DevServer
from agentsight.dev.local_llm import FakeLLMServer

LOCAL_API_KEY = "ags_" + "0" * 32 + "_" + "0" * 6


@tool
def get_weather(city: str) -> str:
    """Today's weather in a city."""
    return f"Sunny and 24 degrees in {city}"


def build_agent(model: ChatOpenAI) -> RunnableLambda:
    """One agent step: the model picks tools, they run, the model answers with their results."""
    chooser = model.bind_tools([get_weather])

    def run(question: str) -> str:
        messages: list[BaseMessage] = [HumanMessage(question)]
        choice = chooser.invoke(messages)
        messages.append(choice)
        messages.extend(get_weather.invoke(call) for call in choice.tool_calls)
        return str(model.invoke(messages).content)

    return RunnableLambda(run, name="weather_agent")


def main() -> int:
    """Answer one question in a conversation turn, send it, and print what AgentSight stored."""
    with ExitStack() as stack:
        api = None
        if not os.environ.get("AGENTSIGHT_API_ENDPOINT"):
            api = stack.enter_context(DevServer())
            os.environ.update(AGENTSIGHT_API_ENDPOINT=api.url, AGENTSIGHT_API_KEY=LOCAL_API_KEY)
        base_url = os.environ.get("OPENAI_BASE_URL") or stack.enter_context(FakeLLMServer()).openai_base_url
        agentsight.init()
        model = ChatOpenAI(model=os.environ.get("AGENT_MODEL", "gpt-4o-mini"), base_url=base_url,
                           api_key=os.environ.get("OPENAI_API_KEY", "not-needed"), max_retries=0)
        agent = build_agent(model)

        with agentsight.conversation("agent-demo-1", customer_id="user-7", source="agent_langchain"):
            with agentsight.turn():
                question = "What is the weather in Paris?"
                agentsight.user_message(question)
                agentsight.agent_message(agent.invoke(question))
        delivered = agentsight.flush(30_000)
        print(f"delivered={delivered}")
        if api is not None:
            for conversation in api.store.all_conversations():
                detail = api.store.get_conversation(conversation["id"]) or {}
                for action in detail["actions"]:
                    print("action", json.dumps({key: action[key] for key in ("action_name", "tools_used", "response")}))
                print("tokens", json.dumps(detail["tokens"]))
        agentsight.shutdown()
        return 0 if delivered else 1


if __name__ == "__main__":
    sys.exit(main())
