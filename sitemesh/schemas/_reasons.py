"""Escalation reason codes: the only form in which *why* a task was escalated leaves a site.

A reason that crosses the boundary is a code from a fixed vocabulary, never a sentence:
text the site wrote about a ticket can quote the ticket (a label, a name, a number), and
the egress guard cannot catch what the PII detector misses. A code is either a base code
(``critical_urgency``) or a base code and a detail from that base's own fixed set
(``major_finding:interface_down``, ``validation_failed:unknown_grounding``); the details
of each base are in :data:`REASON_DETAILS`, and ``other`` stands for a detail not (yet)
in it. Every code is in :data:`ALL_REASON_CODES`, a finite set, which is what the egress
guard checks ``$.reasons[*]`` against.

Agents can emit codes directly (:func:`reason_code`); the forwarder maps whatever the
escalation agent wrote with :func:`reason_codes`, tolerantly: a code passes as it is,
a known phrasing maps to its code, anything else becomes ``other``. The cloud turns
codes back into sentences with :func:`describe_reason`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from types import MappingProxyType
from typing import Final, get_args

from ._outputs import FindingKind

OTHER: Final = "other"
"""The code (and the detail) for anything outside the vocabulary."""

REASON_CODES: Final[Mapping[str, str]] = MappingProxyType(
    {
        "critical_urgency": "The request is marked critical.",
        "critical_alert": "The device alert is critical.",
        "major_alert": "The device alert is major.",
        "critical_finding": "Diagnostics found a critical {detail} condition.",
        "major_finding": "Diagnostics found a major {detail} condition.",
        "low_retrieval_confidence": "The site's knowledge base matched the request only weakly.",
        "low_knowledge_confidence": (
            "The closest knowledge-base answer is not a confident match for the request."
        ),
        "no_knowledge_match": "No knowledge-base document answers the request.",
        "no_retrieval": "The site's knowledge base was not searched.",
        "no_telemetry": "The site has no telemetry for the alert's device and window.",
        "triage_uncertain": "The triage model is not confident about the request's category.",
        "knowledge_triage_disagree": (
            "The triage label and the closest knowledge-base answer disagree."
        ),
        "no_plan": "The site produced no plan.",
        "plan_not_validated": "The site's plan was not validated.",
        "validation_failed": "The site's plan did not pass validation ({detail}).",
        OTHER: "The site escalated it for another reason.",
    }
)
"""Base code -> the sentence the cloud may say for it (``{detail}``: the code's detail
with ``_`` read as a space). A new code is a reviewed change to this module."""

FINDING_KINDS: Final = frozenset(get_args(FindingKind))

VALIDATION_CODES: Final = frozenset(
    {
        "no_plan",
        "empty_plan",
        "bad_step_number",
        "action_not_allowed",
        "schema_invalid",
        "ungrounded_step",
        "unknown_grounding",
        "ungrounded_reply",
        "pii",
        "pii_check_failed",
    }
)
"""The validator's issue codes (``ValidationIssue.code``, ``sitemesh/agents/_validator.py``)."""

REASON_DETAILS: Final[Mapping[str, frozenset[str]]] = MappingProxyType(
    {
        "critical_finding": FINDING_KINDS | {OTHER},
        "major_finding": FINDING_KINDS | {OTHER},
        "validation_failed": VALIDATION_CODES | {OTHER},
    }
)
"""Base codes that take a detail -> the details they take (``other`` included). These
bases never appear without a detail."""

ALL_REASON_CODES: Final = frozenset(
    [base for base in REASON_CODES if base not in REASON_DETAILS]
    + [f"{base}:{d}" for base, details in REASON_DETAILS.items() for d in details]
)
"""Every valid reason code (finite): the egress guard's format of ``$.reasons[*]``."""


def is_reason_code(value: object) -> bool:
    """Whether ``value`` is a code of the vocabulary (:data:`ALL_REASON_CODES`)."""
    return isinstance(value, str) and value in ALL_REASON_CODES


def reason_code(base: str, detail: str | None = None) -> str:
    """The code for ``base`` (and ``detail``), for agents that emit codes directly.

    Args:
        base: a key of :data:`REASON_CODES` (``"major_finding"``).
        detail: for the bases of :data:`REASON_DETAILS`, the detail
            (``"interface_down"``); one outside that base's set becomes ``other``.
            Ignored for the other bases.

    Returns:
        E.g. ``"major_finding:interface_down"``, ``"critical_urgency"``.

    Raises:
        ValueError: ``base`` is not in the vocabulary (a programming error: add it here).
    """
    if base not in REASON_CODES:
        raise ValueError(f"unknown reason code {base!r}; known: {sorted(REASON_CODES)}")
    details = REASON_DETAILS.get(base)
    if details is None:
        return base
    return f"{base}:{detail if detail in details else OTHER}"


_SEVERITY_FINDING: Final = re.compile(r"\b(major|critical) finding\W+([a-z_]+)")
_SEVERITY_ALERT: Final = re.compile(r"\b(major|critical) alert\b")
_VALIDATION: Final = re.compile(r"\bvalidation failed\W*(.*)$")

_PHRASES: Final[tuple[tuple[re.Pattern[str], str], ...]] = tuple(
    (re.compile(pattern), code)
    for pattern, code in (
        (r"\bdisagree", "knowledge_triage_disagree"),
        (r"\btriage\b.*\b(uncertain|unsure|not confident|low confidence)\b",
         "triage_uncertain"),
        (r"\burgency\W*0\b|\bcritical urgency\b", "critical_urgency"),
        (r"\blow retrieval confidence\b", "low_retrieval_confidence"),
        (r"\blow knowledge confidence\b|\bknowledge\b.*\bnot confident\b",
         "low_knowledge_confidence"),
        (r"\bno (knowledge|kb)\b|\bno (document|article|passage|answer|match)\b",
         "no_knowledge_match"),
        (r"\bno retrieval\b", "no_retrieval"),
        (r"\bno telemetry\b", "no_telemetry"),
        (r"\bno plan\b", "no_plan"),
        (r"\bnot validated\b", "plan_not_validated"),
    )
)  # fmt: skip
"""Known phrasings of the escalation agent's reasons -> code, first match wins."""


def _codes_of(reason: str) -> list[str]:
    text = " ".join(reason.strip().lower().split())
    if is_reason_code(text):
        return [text]
    if m := _VALIDATION.search(text):
        found = re.findall(r"[a-z][a-z0-9_]*", m.group(1))
        return [reason_code("validation_failed", c) for c in found] or [
            reason_code("validation_failed", OTHER)
        ]
    if m := _SEVERITY_FINDING.search(text):
        return [reason_code(f"{m.group(1)}_finding", m.group(2))]
    if m := _SEVERITY_ALERT.search(text):
        return [f"{m.group(1)}_alert"]
    for pattern, code in _PHRASES:
        if pattern.search(text):
            return [code]
    return [OTHER]


def reason_codes(reasons: Iterable[str]) -> list[str]:
    """Map reasons as an agent wrote them to codes, tolerantly.

    A reason that already is a code passes unchanged; ``validation failed: a, b``
    gives one ``validation_failed:<code>`` per issue code; ``<severity> finding:
    <kind>`` and ``<severity> alert`` give their codes; other known phrasings
    (``low retrieval confidence 0.12 < 0.30``, ``ticket urgency 0 (critical)``,
    ``triage uncertain: ...``, ``... disagree``) their base code; anything else is
    ``other``. Numbers, labels and any other text of the reason are dropped.

    Args:
        reasons: e.g. ``FinalAnswer.reasons``.

    Returns:
        Codes of :data:`ALL_REASON_CODES`, each once, in the order of first appearance.
    """
    out: dict[str, None] = {}
    for reason in reasons:
        for code in _codes_of(reason):
            out.setdefault(code, None)
    return list(out)


def describe_reason(code: str) -> str:
    """The sentence for ``code`` (:data:`REASON_CODES`); ``other``'s for an unknown one.

    Args:
        code: a reason code (``"major_finding:interface_down"``).

    Returns:
        E.g. ``"Diagnostics found a major interface down condition."``
    """
    if not is_reason_code(code):
        return REASON_CODES[OTHER]
    base, _, detail = code.partition(":")
    if detail == OTHER:
        detail = "unclassified"
    return REASON_CODES[base].format(detail=detail.replace("_", " "))
