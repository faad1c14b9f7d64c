"""Upstream agentsight 0.1.4's quick start (its PyPI description), unchanged, against this package.

Around it, only what the snippet leaves to the reader: ``my_agent`` (a stand-in agent with one tool) and
the key, read from ``AGENTSIGHT_API_KEY`` as the snippet's comment allows. Without a key ``init()`` logs
one error and every call below is a pass-through: the script still runs. Nothing is flushed: the process
delivers what it tracked on its way out.

    AGENTSIGHT_API_ENDPOINT=http://127.0.0.1:8321 AGENTSIGHT_API_KEY=ags_... python examples/quickstart_0_1.py
"""

import agentsight


@agentsight.tool
def lookup_weather(city):
    return {"city": city, "forecast": "sunny, 21°C"}


class StandInAgent:
    """What ``my_agent`` is in the quick start: an agent that calls a tool and answers."""

    def run(self, question):
        weather = lookup_weather("Lisbon")
        return f"It's {weather['forecast']} in {weather['city']}."


my_agent = StandInAgent()

# ---- the quick start, as published (the key from the environment) ----
agentsight.init()  # or agentsight.init(api_key="ags_...")

with agentsight.conversation("your_conversation_id"):
    with agentsight.turn():
        agentsight.user_message("What's the weather like today?")
        reply = my_agent.run(...)  # token usage, cost and tool calls captured automatically
        agentsight.agent_message(reply)
