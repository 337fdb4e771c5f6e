"""Policy as code: the rules file, its schema, its version hash, and rule matching."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Annotated, Any

import msgspec
from msgspec import UNSET, UnsetType

from ..bus import load_toml
from ..errors import PolicyError
from ..schemas import Action, DataClass

__all__ = [
    "BUNDLED_RULES",
    "DEFAULT_MACHINE_KINDS",
    "DEFAULT_RULE",
    "DecisionFacts",
    "Match",
    "Policy",
    "Rule",
    "RuleMatch",
]

RuleId = Annotated[str, msgspec.Meta(min_length=1, max_length=64, pattern=r"^[a-z0-9][a-z0-9-]*$")]
"""A rule id: lower-case letters, digits and ``-``, 1-64 characters."""

Fraction = Annotated[float, msgspec.Meta(ge=0.0, le=1.0)]


class Match(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """The conditions of a rule; all given conditions must hold (logical AND).

    An omitted condition (``UNSET``) matches anything; a rule with an empty
    ``match`` table matches every task.
    """

    kinds: frozenset[str] | UnsetType = UNSET
    """Task kinds (subject kind token: ``support_ticket``, ``telemetry_alert``)."""
    data_classes: frozenset[DataClass] | UnsetType = UNSET
    """Data classes of the task content."""
    entity_types_any: frozenset[str] | UnsetType = UNSET
    """At least one of these PII entity types was detected."""
    tenant_tiers: frozenset[str] | UnsetType = UNSET
    """Tenant tiers (``standard``, ``premium``, ``regulated``, ``suspended``...)."""
    tenants: frozenset[str] | UnsetType = UNSET
    """Tenant ids (an allow or deny list of named tenants)."""
    max_latency_budget_ms: Annotated[float, msgspec.Meta(gt=0)] | UnsetType = UNSET
    """The task has a latency budget of at most this many milliseconds (tasks
    without a budget do not match)."""
    min_complexity: Fraction | UnsetType = UNSET
    """Estimated complexity (0..1) is at least this."""
    max_complexity: Fraction | UnsetType = UNSET
    """Estimated complexity (0..1) is at most this."""
    backend_healthy: bool | UnsetType = UNSET
    """The site's model backend is (``true``) or is not (``false``) healthy."""


class Rule(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """One ``[[rule]]`` entry."""

    id: RuleId
    """Stable id, recorded on every decision the rule makes."""
    description: str
    """Why the rule exists (shown in decision reasons)."""
    match: Match = Match()
    """Conditions; empty matches everything."""
    action: Action
    """``pin_edge``, ``allow_cloud``, ``deny`` or ``require_approval``."""


DEFAULT_MACHINE_KINDS: frozenset[str] = frozenset({"telemetry_alert"})
"""Task kinds scanned as machine data when a rules file does not say
(``machine_kinds``): telemetry alerts, whose summary quotes device output and whose
inline logs are log lines (see :class:`sitemesh.policy.MachineDataScanner`)."""


class _Header(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    version: Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
    public_kinds: frozenset[str] = frozenset()
    machine_kinds: frozenset[str] = DEFAULT_MACHINE_KINDS
    rule: list[dict[str, Any]] = []


DEFAULT_RULE = Rule(
    id="default-deny-cloud",
    description="no rule matched: nothing leaves the site unless a rule allows it",
    action="pin_edge",
)
"""The built-in last rule: fail closed (DESIGN.md section 6, "Default is
deny-to-cloud"). Its id is reserved."""

BUNDLED_RULES = "rules/default.toml"
"""The bundled rules file, relative to the ``sitemesh.policy`` package."""


@dataclass(frozen=True, slots=True)
class DecisionFacts:
    """What the policy decides on; everything a rule can match.

    Attributes:
        kind: task kind (``support_ticket``, ``telemetry_alert``).
        data_class: the content's data class (see :func:`sitemesh.policy.classify`).
        entity_types: PII entity types detected in the content.
        tenant_tier: the tenant's service tier.
        tenant: the tenant id (``""`` when unknown).
        latency_budget_ms: the task's latency budget in milliseconds, or ``None``.
        complexity: estimated complexity, 0..1 (see
            :func:`sitemesh.policy.estimate_complexity`).
        backend_healthy: whether the site's model backend is healthy.
    """

    kind: str
    data_class: DataClass
    entity_types: frozenset[str] = frozenset()
    tenant_tier: str = "standard"
    tenant: str = ""
    latency_budget_ms: float | None = None
    complexity: float = 0.0
    backend_healthy: bool = True


@dataclass(frozen=True, slots=True)
class RuleMatch:
    """The rule that decided, and why.

    Attributes:
        rule_id: id of the first matching rule, or ``default-deny-cloud``.
        action: the rule's action.
        reasons: human-readable reasons: the rule's description, then each
            condition that held. Never contains entity values.
    """

    rule_id: str
    action: Action
    reasons: tuple[str, ...] = field(default=())


def _set(values: frozenset[str]) -> str:
    return "[" + ", ".join(sorted(values)) + "]"


def _check(m: Match, f: DecisionFacts) -> list[str] | None:
    """The reasons ``m`` holds for ``f``, or ``None`` when it does not."""
    why: list[str] = []
    if m.kinds is not UNSET:
        if f.kind not in m.kinds:
            return None
        why.append(f"kind {f.kind} in {_set(m.kinds)}")
    if m.data_classes is not UNSET:
        if f.data_class not in m.data_classes:
            return None
        why.append(f"data_class {f.data_class} in {_set(m.data_classes)}")
    if m.entity_types_any is not UNSET:
        hits = f.entity_types & m.entity_types_any
        if not hits:
            return None
        why.append(f"detected {_set(hits)}")
    if m.tenant_tiers is not UNSET:
        if f.tenant_tier not in m.tenant_tiers:
            return None
        why.append(f"tenant_tier {f.tenant_tier} in {_set(m.tenant_tiers)}")
    if m.tenants is not UNSET:
        if f.tenant not in m.tenants:
            return None
        why.append(f"tenant {f.tenant} in the rule's tenant list")
    if m.max_latency_budget_ms is not UNSET:
        budget = f.latency_budget_ms
        if budget is None or budget > m.max_latency_budget_ms:
            return None
        why.append(f"latency budget {budget:g} ms <= {m.max_latency_budget_ms:g} ms")
    if m.min_complexity is not UNSET:
        if f.complexity < m.min_complexity:
            return None
        why.append(f"complexity {f.complexity:.2f} >= {m.min_complexity:g}")
    if m.max_complexity is not UNSET:
        if f.complexity > m.max_complexity:
            return None
        why.append(f"complexity {f.complexity:.2f} <= {m.max_complexity:g}")
    if m.backend_healthy is not UNSET:
        if f.backend_healthy is not m.backend_healthy:
            return None
        why.append(f"backend_healthy is {str(f.backend_healthy).lower()}")
    return why


def _rule_error(index: int, raw: Any, message: str) -> PolicyError:
    rule_id = raw.get("id") if isinstance(raw, dict) else None
    where = f"rule[{index}]" if rule_id is None else f"rule[{index}] (id={rule_id!r})"
    return PolicyError(f"{where}: {message}")


class Policy:
    """An ordered, validated list of rules; the first matching rule decides.

    Build with :meth:`load` or :meth:`from_toml`. The file format::

        version = "2026-11-22.1"      # a label for humans
        public_kinds = []             # task kinds whose PII-free content is public
        machine_kinds = ["telemetry_alert"]  # task kinds scanned as machine data

        [[rule]]
        id = "restricted-stays-on-site"
        description = "card, bank and national ids never leave the site"
        action = "pin_edge"           # pin_edge | allow_cloud | deny | require_approval
        match = { data_classes = ["restricted"] }

    ``match`` keys are those of :class:`Match`. Unknown keys, unknown actions and
    wrong types are errors. After the file's rules, :data:`DEFAULT_RULE` applies.

    Attributes:
        rules: the file's rules, in order (without the built-in default).
        label: the file's ``version`` label.
        public_kinds: task kinds the file declares public.
        machine_kinds: task kinds whose content is scanned as machine data (logs,
            telemetry: :class:`sitemesh.policy.MachineDataScanner`); the file's
            ``machine_kinds``, :data:`DEFAULT_MACHINE_KINDS` when it has none. ``[]``
            scans every kind as prose (an alert's log lines included, with NER).
        version: first 16 hex digits of the SHA-256 of the canonical JSON of the
            parsed file (sorted keys, defaults filled in), so whitespace, comments
            and key order do not change it but any rule change does.
    """

    __slots__ = ("label", "machine_kinds", "public_kinds", "rules", "source", "version")

    def __init__(
        self,
        rules: list[Rule],
        *,
        label: str,
        public_kinds: frozenset[str] = frozenset(),
        machine_kinds: frozenset[str] = DEFAULT_MACHINE_KINDS,
        source: str = "<rules>",
    ) -> None:
        self.rules: tuple[Rule, ...] = tuple(rules)
        self.label = label
        self.public_kinds = public_kinds
        self.machine_kinds = machine_kinds
        self.source = source
        canonical = msgspec.json.encode(
            {
                "version": label,
                "public_kinds": public_kinds,
                "machine_kinds": machine_kinds,
                "rule": self.rules,
            },
            order="sorted",
        )
        self.version = hashlib.sha256(canonical).hexdigest()[:16]

    def __repr__(self) -> str:
        return (
            f"Policy(label={self.label!r}, version={self.version!r}, "
            f"rules={len(self.rules)}, source={self.source!r})"
        )

    @classmethod
    def from_toml(cls, text: str, *, source: str = "<rules>") -> Policy:
        """Parse and validate a rules file.

        Args:
            text: the TOML document.
            source: where it came from, for error messages.

        Returns:
            The policy.

        Raises:
            PolicyError: invalid TOML or a schema violation; the message names the
                rule index and id and the field, e.g. ``rule[3] (id='x'): Invalid
                enum value 'cloud' - at `$.action```.
        """
        header = load_toml(text, _Header, source=source, error=PolicyError)
        rules: list[Rule] = []
        seen: set[str] = set()
        for index, raw in enumerate(header.rule):
            try:
                rule = msgspec.convert(raw, Rule)
            except msgspec.ValidationError as exc:
                raise _rule_error(index, raw, str(exc)) from exc
            m = rule.match
            if (
                m.min_complexity is not UNSET
                and m.max_complexity is not UNSET
                and m.min_complexity > m.max_complexity
            ):
                raise _rule_error(
                    index, raw, "min_complexity is greater than max_complexity - at `$.match`"
                )
            if rule.id == DEFAULT_RULE.id:
                raise _rule_error(
                    index, raw, "the id is reserved for the built-in rule - at `$.id`"
                )
            if rule.id in seen:
                raise _rule_error(index, raw, "duplicate rule id - at `$.id`")
            seen.add(rule.id)
            rules.append(rule)
        return cls(
            rules,
            label=header.version,
            public_kinds=header.public_kinds,
            machine_kinds=header.machine_kinds,
            source=source,
        )

    @classmethod
    def load(cls, path: str | Path | None = None) -> Policy:
        """Load a rules file.

        Args:
            path: the TOML file; ``None``: the bundled ``rules/default.toml``
                (``PolicySettings.rules_file``).

        Returns:
            The policy.

        Raises:
            PolicyError: the file cannot be read or is invalid.
        """
        try:
            if path is None:
                ref = resources.files(__package__ or "sitemesh.policy") / BUNDLED_RULES
                return cls.from_toml(ref.read_text(encoding="utf-8"), source=BUNDLED_RULES)
            text = Path(path).read_text(encoding="utf-8")
        except OSError as exc:
            raise PolicyError(f"{path}: cannot read rules file: {exc}") from exc
        return cls.from_toml(text, source=str(path))

    def may_leave_site(self, kind: str) -> bool:
        """Whether any task of ``kind`` can be let out of the site by this policy.

        Rules are read in order: a rule that matches every task of ``kind`` (no
        condition but ``kinds``) and keeps it (``pin_edge``/``deny``) ends the search
        with ``False``; a rule that may match ``kind`` and lets it out
        (``allow_cloud``, ``require_approval``) gives ``True``. The default rule keeps
        everything on site. Used to refuse a workflow step in zone ``cloud`` that no
        task could ever reach.
        """
        for rule in self.rules:
            m = rule.match
            if m.kinds is not UNSET and kind not in m.kinds:
                continue
            if rule.action in ("allow_cloud", "require_approval"):
                return True
            others = msgspec.structs.replace(m, kinds=UNSET)
            if others == Match():
                return False
        return False

    def decide(self, facts: DecisionFacts) -> RuleMatch:
        """Apply the first rule whose conditions all hold.

        Args:
            facts: what is known about the task.

        Returns:
            The decision; :data:`DEFAULT_RULE` (``pin_edge``) when no rule matches.
        """
        for rule in self.rules:
            why = _check(rule.match, facts)
            if why is not None:
                return RuleMatch(rule.id, rule.action, (rule.description, *why))
        return RuleMatch(DEFAULT_RULE.id, DEFAULT_RULE.action, (DEFAULT_RULE.description,))
