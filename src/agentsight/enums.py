"""0.0.44's ``agentsight.enums`` names that still mean something here."""

from agentsight.management import Sentiment

__all__ = ["Sentiment"]
