"""A sitemesh agent package: the ``sentiment`` role (VADER) for support tickets.

Installed, it registers itself through the ``sitemesh.agents`` entry point
``sentiment = "sitemesh_sentiment:SentimentAgent"``; not installed, name it by
import path: ``sitemesh worker --agent sitemesh_sentiment:SentimentAgent``.
"""

from ._agent import THRESHOLD, Label, Sentiment, SentimentAgent, label_of

__all__ = ["THRESHOLD", "Label", "Sentiment", "SentimentAgent", "label_of"]
