"""The action allow-list: every action a plan step may name.

The planner classifies each runbook line into one of these; the validator rejects
any step whose action is not listed. Actions are verbs at the level of an
operator's runbook, not commands: a step says *what* to do, its description and
grounding say *how*. Adding an action is a reviewed change to this file.
"""

from __future__ import annotations

import re
from types import MappingProxyType
from typing import Final, Literal

ACTION_DESCRIPTIONS: Final = MappingProxyType(
    {
        "check_status": "Read the state of a component, node, link or resource (read-only).",
        "inspect_logs": "Read the logs or events of a component (read-only).",
        "restart_component": "Restart, reboot, roll out or delete-to-recreate a component.",
        "scale_component": "Change the replica count or capacity of a component.",
        "change_config": "Edit, patch or apply configuration, limits or resources.",
        "drain_node": "Cordon and drain a node so its workloads move elsewhere.",
        "free_capacity": "Free or extend storage: delete old data, compact, resize volumes.",
        "wait_and_monitor": "Wait for a self-healing condition and watch the alert clear.",
        "gather_details": "Collect the information needed to act (versions, times, symptoms).",
        "investigate": "Analyse a cause that needs judgement (no direct change).",
        "contact_customer": "Send the customer or affected team a message.",
        "escalate": "Hand the task to a human or a specialist team.",
    }
)
"""Action name -> one-line description of what it may do."""

ALLOWED_ACTIONS: Final = frozenset(ACTION_DESCRIPTIONS)
"""The names a :class:`~sitemesh.schemas.PlanStep` ``action`` may take."""

_PATTERNS: Final[dict[str, re.Pattern[str]]] = {
    action: re.compile(pattern, re.IGNORECASE)
    for action, pattern in {
        "escalate": r"\b(escalat\w*|open (a )?(support )?(case|ticket)|contact (red hat )?support"
        r"|refer to the \S+ team|reach out to (the )?\S+ team)\b",
        "contact_customer": r"\b(contact|notify|inform|tell) (the )?(customer|user|owner)s?\b",
        "drain_node": r"\b(cordon|drain|evacuat\w*)\b",
        "inspect_logs": r"\b(logs?|journal\w*|events?|dmesg|stack ?traces?)\b",
        "free_capacity": r"\b(free up|clean ?up|delete (old|unused)|compact\w*|defrag\w*"
        r"|prune|resiz\w+|expand\w*|extend\w*|increase (the )?(disk|volume|storage))\b",
        "scale_component": r"\b(scal\w+|replicas?|add (more )?(nodes?|capacity))\b",
        "restart_component": r"\b(restart\w*|reboot\w*|rollout|roll out|redeploy\w*|recreat\w*"
        r"|delete (the )?pods?|kill\w*|bounce)\b",
        "wait_and_monitor": r"\b(wait\w*|monitor\w*|resolve automatically"
        r"|automatically resolve|observe)\b",
        "change_config": r"\b(config\w*|edit\w*|patch\w*|apply|set|modify\w*|adjust\w*|update"
        r"|upgrade\w*|chang\w+|increase|lower|raise|limits?|silence)\b",
        "check_status": r"\b(check\w*|verif\w+|inspect\w*|ensure|confirm\w*|validat\w+|review"
        r"|list|get|describe|look|query|determine|identify|status|health\w*)\b",
        "gather_details": r"\b(gather|collect|capture|record|note)\b",
    }.items()
}

_ORDER: Final[dict[str, tuple[str, ...]]] = {
    # Diagnosis sections describe read-only checks: "check whether a reboot is
    # running" is a check, not a restart, so read-only actions are tried first.
    "diagnosis": (
        "escalate",
        "inspect_logs",
        "check_status",
        "gather_details",
        "drain_node",
        "free_capacity",
        "scale_component",
        "restart_component",
        "wait_and_monitor",
        "change_config",
        "contact_customer",
    ),
    # Elsewhere the more specific (and mutating) actions win over a generic "check".
    "mitigation": (
        "escalate",
        "contact_customer",
        "drain_node",
        "inspect_logs",
        "free_capacity",
        "scale_component",
        "restart_component",
        "wait_and_monitor",
        "change_config",
        "check_status",
        "gather_details",
    ),
}
"""Rule order per section kind; first match wins."""


_READ_ONLY_VERBS: Final = frozenset(
    {
        "check",
        "verify",
        "inspect",
        "confirm",
        "ensure",
        "validate",
        "review",
        "look",
        "identify",
        "determine",
        "list",
        "get",
        "describe",
        "examine",
        "investigate",
        "see",
    }
)
"""An instruction that starts with one of these is read-only, whatever it mentions
later ("Verify switch port configuration" is a check, not a config change)."""


def classify_action(text: str, *, phase: Literal["diagnosis", "mitigation"] = "mitigation") -> str:
    """Map one runbook instruction to an action from :data:`ALLOWED_ACTIONS` by keywords.

    Args:
        text: the instruction line (Markdown allowed).
        phase: the kind of section the line comes from; ``"diagnosis"`` tries the
            read-only actions first (see ``_ORDER``), as does a line starting with
            a read-only verb (:data:`_READ_ONLY_VERBS`).

    Returns:
        The first action whose keywords occur in ``text``, else ``"investigate"``.
    """
    words = text.strip().lstrip("*_`").split(maxsplit=1)
    if words and words[0].lower().rstrip(":,.") in _READ_ONLY_VERBS:
        phase = "diagnosis"
    for action in _ORDER[phase]:
        if _PATTERNS[action].search(text):
            return action
    return "investigate"
