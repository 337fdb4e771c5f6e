"""The ``sentiment`` role: how a support ticket's title and body read, scored by VADER.

VADER (Hutto & Gilbert 2014, "VADER: A Parsimonious Rule-based Model for Sentiment
Analysis of Social Media Text", ICWSM-14) is a lexicon and a few rules tuned on
social-media text, which is what the bundled tickets are (customer-care tweets). It
is deterministic and offline: the ``vaderSentiment`` wheel ships its lexicon.
"""

from __future__ import annotations

from importlib.metadata import version
from typing import Final, Literal

import msgspec
from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

from sitemesh.agents import Agent, AgentContext, AgentResources
from sitemesh.errors import PermanentError
from sitemesh.schemas import SupportTicket, WorkItem

THRESHOLD: Final = 0.05
"""VADER's cut-off on ``compound`` for a non-neutral label (vaderSentiment README,
"About the Scoring"; Hutto & Gilbert 2014)."""


Label = Literal["negative", "neutral", "positive"]
"""A ticket's sentiment in one word."""


def label_of(compound: float) -> Label:
    """VADER's label for a ``compound`` score: positive at >= 0.05, negative at <= -0.05."""
    if compound >= THRESHOLD:
        return "positive"
    return "negative" if compound <= -THRESHOLD else "neutral"


class Sentiment(msgspec.Struct, frozen=True, kw_only=True, tag="sentiment.v1"):
    """The sentiment of one ticket (numbers and a label only, never its text)."""

    label: Label
    """``positive`` if ``compound >= 0.05``, ``negative`` if ``compound <= -0.05``,
    else ``neutral``: VADER's thresholds (Hutto & Gilbert 2014)."""
    compound: float
    """The summed valence of the words, normalised to -1 (most negative) .. +1 (most
    positive) as ``x / sqrt(x**2 + 15)``; 4 decimals."""
    negative: float
    """Share of the text's valence that is negative, 0..1 (VADER's ``neg``)."""
    neutral: float
    """Share that is neutral, 0..1 (``neu``); the three shares sum to about 1."""
    positive: float
    """Share that is positive, 0..1 (``pos``)."""
    analyzer: str = ""
    """The scorer and its version (``vaderSentiment 3.3.2``): a replay on another
    version shows up in the diff."""


class SentimentAgent(Agent):
    """Scores a ticket's title and body with VADER; a label and four numbers out."""

    role = "sentiment"
    output = Sentiment
    accepts = (SupportTicket,)
    description = "VADER sentiment of a ticket (Hutto & Gilbert 2014), offline"

    async def setup(self, resources: AgentResources) -> None:
        """Load the lexicon once per process (about 20 ms)."""
        self._analyzer = SentimentIntensityAnalyzer()
        self._version = f"vaderSentiment {version('vaderSentiment')}"

    async def handle(self, item: WorkItem, ctx: AgentContext) -> Sentiment:
        """The sentiment of ``item.task`` (a :class:`SupportTicket`).

        Raises:
            PermanentError: the task is not a support ticket (the runtime already
                checks ``accepts``; this narrows the type).
        """
        ticket = item.task
        if not isinstance(ticket, SupportTicket):
            raise PermanentError("sentiment reads support tickets only", field="$.task.type")
        s = self._analyzer.polarity_scores(f"{ticket.title}\n{ticket.body}".strip())
        return Sentiment(
            label=label_of(s["compound"]), compound=s["compound"], negative=s["neg"],
            neutral=s["neu"], positive=s["pos"], analyzer=self._version,
        )  # fmt: skip

    def summarize(self, output: Sentiment) -> str:
        """``negative -0.77``: label and score, never the ticket's words."""
        return f"{output.label} {output.compound:+.2f}"
