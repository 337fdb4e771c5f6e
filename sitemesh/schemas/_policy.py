"""Policy decisions."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

import msgspec

from ._base import DataClass, Message, TaskId, utcnow

Action = Literal["pin_edge", "allow_cloud", "deny", "require_approval"]
"""What the router decided: keep on site, allow to cloud (anonymised), deny, or
park for a human."""


class EntityCount(msgspec.Struct, frozen=True, kw_only=True):
    """How many entities of one type were detected (values never leave the analyzer)."""

    entity_type: str
    """Presidio entity type (``PERSON``, ``EMAIL_ADDRESS``...)."""
    count: int
    max_score: float


class PolicyDecision(Message, frozen=True, kw_only=True, tag="policy_decision.v1"):
    """The router's decision for one task, recorded and carried on every hop."""

    task_id: TaskId
    action: Action
    rule_id: str
    policy_version: str
    """SHA-256 (first 16 hex digits) of the canonical rules file."""
    data_class: DataClass
    entities: list[EntityCount] = []
    reasons: list[str] = []
    analyzer_ms: float = 0.0
    decided_at: datetime = msgspec.field(default_factory=utcnow)
    approved_by: str | None = None
    """Who approved a ``require_approval`` decision (``sitemesh approve --by``);
    ``None`` until a person approved it."""
    approved_at: datetime | None = None
    """When it was approved (UTC); ``None`` until then."""
