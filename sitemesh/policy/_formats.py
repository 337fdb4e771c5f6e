"""Field formats of outgoing messages: what each platform field must look like.

The egress guard (:mod:`sitemesh.policy._egress`) checks every *platform field* of an
outgoing message against its :class:`FieldFormat` instead of giving it to the NER
model; a value that does not fit blocks the message (fail closed).

Field specs are keyed by message type (:data:`EGRESS_FIELD_SPECS`; a message type
registers its own by passing ``specs=``); paths are JSON paths with ``[*]`` for
any list element. ``cloud_incident.v2`` (:class:`~sitemesh.schemas.CloudIncident`) is
closed, and carries only these (docs/privacy.md explains each):

================================  ===============================================  =========
path                              format (full match)                              + scanned
================================  ===============================================  =========
``$.type``                        ``cloud_incident.v2``                            no
``$.task_id``                     reference ``r[a-z2-7]{26}`` (``REF_RE``)         no
``$.site``                        site name ``[a-z][a-z0-9]{0,15}``                yes
``$.kind``                        token ``[a-z][a-z0-9_]{0,63}``                   yes
``$.data_class``                  ``public|internal|confidential|restricted``      no
``$.policy_version``              hex ``[0-9a-f]{1,64}``                           yes
``$.rule_id``                     rule id ``[a-z][a-z0-9]*(-[a-z0-9]+)*``          yes
``$.placeholders[*]``             placeholder (``PLACEHOLDER_RE``)                 no
``$.runbook``                     KB doc id ``<corpus>/<path>``, or null           yes
``$.steps[*].n``                  integer 1..999                                   no
``$.steps[*].action``             action name ``[a-z][a-z0-9_]{0,63}``             yes
``$.steps[*].grounding[*]``       ``<doc id>#<slug>``, ``diagnosis#<n>``,          yes
                                  ``case#<reference>``
``$.steps[*].placeholders[*]``    placeholder                                      no
``$.findings[*].kind``            a ``FindingKind``                                no
``$.findings[*].severity``        ``info|minor|major|critical``                    no
``$.findings[*].device``          device name or placeholder, or null              yes
``$.findings[*].interface``       interface name or placeholder, or null           yes
``$.findings[*].at``              RFC 3339 date-time, or null                      no
``$.reasons[*]``                  a reason code (``ALL_REASON_CODES``)             no
``$.triage.label``                label ``[a-z0-9_]{1,64}``                        yes
``$.triage.label_set``            label ``[a-z0-9_]{1,64}``, or null               yes
``$.triage.urgency``              integer 0..3                                     no
``$.triage.language``             ``[a-z]{2,3}``                                   no
``$.resolution.kb``               KB name ``[a-z0-9][a-z0-9_-]{0,62}``             yes
``$.resolution.doc_kind``         ``runbook|article|case|faq``                     no
``$.resolution.doc``              KB doc id, or ``case#<reference>``               yes
``$.resolution.intent``           label, or null                                   yes
``$.forwarded_at``                RFC 3339 date-time                               no
================================  ===============================================  =========

Formats come from the schema's own field patterns (``sitemesh/schemas/_cloud.py``)
where it has them, so the hub's decoder and the guard agree.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Final, get_args, get_type_hints

import msgspec

from ..schemas import (
    ALL_REASON_CODES,
    CloudIncident,
    DataClass,
    FindingKind,
    IncidentFinding,
    IncidentResolution,
    IncidentStep,
    IncidentTriage,
    Site,
)
from ._pseudonym import PLACEHOLDER_RE
from ._refs import REF_RE

__all__ = ["CLOSED_MESSAGE_TYPES", "CLOUD_INCIDENT_FIELDS", "EGRESS_FIELD_SPECS", "FieldFormat"]


@dataclass(frozen=True, slots=True)
class FieldFormat:
    """The format a platform-generated field must have (checked, not scanned by NER).

    A value is accepted when it is ``None`` and :attr:`optional`, an ``int`` (not a
    ``bool``) within :attr:`min_int`..:attr:`max_int` and :attr:`integer`, or a string
    of at most :attr:`max_chars` that :attr:`regex` fully matches. Values are checked
    in their JSON form (Structs go through ``msgspec.to_builtins``: date-times are
    RFC 3339 strings).
    """

    name: str
    """What the field holds, for documentation (``"reference"``)."""
    regex: re.Pattern[str] | None = None
    """Pattern a string value must fully match; ``None``: no string is accepted."""
    max_chars: int = 256
    """Longest string accepted, in characters."""
    integer: bool = False
    """Accept a JSON integer."""
    min_int: int | None = None
    """Smallest integer accepted (``None``: no bound)."""
    max_int: int | None = None
    """Largest integer accepted (``None``: no bound): a step number is not a phone number."""
    optional: bool = False
    """Accept ``null``."""
    scan: bool = True
    """Also scan an accepted string; detections of the NER types are ignored. Turn off
    only for formats that cannot spell an identifier (literals, date-times)."""

    def accepts(self, value: object) -> bool:
        """Whether ``value`` has this format."""
        if value is None:
            return self.optional
        if isinstance(value, bool):
            return False
        if isinstance(value, int):
            return (
                self.integer
                and (self.min_int is None or value >= self.min_int)
                and (self.max_int is None or value <= self.max_int)
            )
        if isinstance(value, str):
            return (
                self.regex is not None
                and len(value) <= self.max_chars
                and self.regex.fullmatch(value) is not None
            )
        return False

    @classmethod
    def literal(cls, name: str, values: Iterable[str]) -> FieldFormat:
        """A format accepting exactly ``values`` (not scanned)."""
        alternatives = "|".join(re.escape(v) for v in sorted(values))
        return cls(name=name, regex=re.compile(f"(?:{alternatives})"), scan=False)


def _meta_regex(annotated: object) -> re.Pattern[str]:
    """The pattern of an ``Annotated[str, msgspec.Meta(pattern=...)]`` schema type
    (also inside ``list[...]`` or ``... | None``), for a full match."""
    args = get_args(annotated)
    while args and not isinstance(args[-1], msgspec.Meta):
        inner = [a for a in args if a is not type(None)]
        if len(inner) != 1:
            break
        args = get_args(inner[0])
    meta = args[-1] if args else None
    if not isinstance(meta, msgspec.Meta) or meta.pattern is None:
        raise TypeError(f"{annotated!r} carries no pattern")
    return re.compile(meta.pattern.removeprefix("^").removesuffix("$"))


def _field_regex(cls: type[msgspec.Struct], name: str) -> re.Pattern[str]:
    """The pattern of field ``name`` of ``cls`` (see :func:`_meta_regex`)."""
    return _meta_regex(get_type_hints(cls, include_extras=True)[name])


_RULE_ID: Final = re.compile(r"[a-z][a-z0-9]*(?:-[a-z0-9]+)*")
"""A rule id: ``RuleId``'s characters, starting with a letter (``every-ticket-to-cloud``);
stricter than the rules schema so that a phone number or an SSN is not a rule id."""

_DATETIME: Final = FieldFormat(
    name="date-time",
    regex=re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d{1,9})?(?:Z|[+-]\d{2}:\d{2})?"),
    scan=False,
)

_SEVERITY: Final = get_args(get_type_hints(IncidentFinding)["severity"])
_DOC_KINDS: Final = get_args(get_type_hints(IncidentResolution)["doc_kind"])
_PLACEHOLDER: Final = FieldFormat(name="placeholder", regex=PLACEHOLDER_RE, scan=False)
_DEVICE: Final = _field_regex(IncidentFinding, "device")
_LABEL: Final = _field_regex(IncidentTriage, "label")
_TAG: Final = str(CloudIncident.__struct_config__.tag)

CLOUD_INCIDENT_FIELDS: Final[Mapping[str, FieldFormat]] = MappingProxyType(
    {
        "$.type": FieldFormat.literal("message type", [_TAG]),
        "$.task_id": FieldFormat(name="reference", regex=REF_RE, scan=False),
        "$.site": FieldFormat(name="site name", regex=_meta_regex(Site)),
        "$.kind": FieldFormat(name="task kind", regex=_field_regex(CloudIncident, "kind")),
        "$.data_class": FieldFormat.literal("data class", get_args(DataClass)),
        "$.policy_version": FieldFormat(name="policy version", regex=re.compile(r"[0-9a-f]{1,64}")),
        "$.rule_id": FieldFormat(name="rule id", regex=_RULE_ID, max_chars=64),
        "$.placeholders[*]": _PLACEHOLDER,
        "$.runbook": FieldFormat(
            name="KB doc id", regex=_field_regex(CloudIncident, "runbook"), optional=True
        ),
        "$.steps[*].n": FieldFormat(name="step number", integer=True, min_int=1, max_int=999),
        "$.steps[*].action": FieldFormat(name="action", regex=_field_regex(IncidentStep, "action")),
        "$.steps[*].grounding[*]": FieldFormat(
            name="grounding id", regex=_field_regex(IncidentStep, "grounding"), max_chars=320
        ),
        "$.steps[*].placeholders[*]": _PLACEHOLDER,
        "$.findings[*].kind": FieldFormat.literal("finding kind", get_args(FindingKind)),
        "$.findings[*].severity": FieldFormat.literal("severity", _SEVERITY),
        "$.findings[*].device": FieldFormat(
            name="device", regex=_DEVICE, max_chars=64, optional=True
        ),
        "$.findings[*].interface": FieldFormat(
            name="interface", regex=_DEVICE, max_chars=64, optional=True
        ),
        "$.findings[*].at": FieldFormat(
            name="date-time", regex=_DATETIME.regex, optional=True, scan=False
        ),
        "$.reasons[*]": FieldFormat.literal("reason code", ALL_REASON_CODES),
        "$.triage.label": FieldFormat(name="label", regex=_LABEL),
        "$.triage.label_set": FieldFormat(name="label set", regex=_LABEL, optional=True),
        "$.triage.urgency": FieldFormat(name="urgency", integer=True, min_int=0, max_int=3),
        "$.triage.language": FieldFormat(
            name="language", regex=_field_regex(IncidentTriage, "language"), scan=False
        ),
        "$.resolution.kb": FieldFormat(
            name="KB name", regex=_field_regex(IncidentResolution, "kb")
        ),
        "$.resolution.doc_kind": FieldFormat.literal("doc kind", _DOC_KINDS),
        "$.resolution.doc": FieldFormat(
            name="KB doc id or case reference", regex=_field_regex(IncidentResolution, "doc")
        ),
        "$.resolution.intent": FieldFormat(name="intent", regex=_LABEL, optional=True),
        "$.forwarded_at": _DATETIME,
    }
)
"""Platform fields of ``cloud_incident.v2``, every field it has (see the module
docstring's table); the spec is closed (:data:`CLOSED_MESSAGE_TYPES`)."""

EGRESS_FIELD_SPECS: Final[Mapping[str, Mapping[str, FieldFormat]]] = MappingProxyType(
    {_TAG: CLOUD_INCIDENT_FIELDS}
)
"""Message type (the ``type`` field) -> JSON path -> :class:`FieldFormat`: the
platform fields of every outgoing message type that declares them. A type not in
here is scanned whole."""

CLOSED_MESSAGE_TYPES: Final = frozenset({_TAG})
"""Message types that carry no content: a field their spec does not name blocks
(:data:`UNEXPECTED_FIELD`). ``cloud_incident.v2`` is one: nothing a person or a model
wrote crosses as prose (docs/privacy.md)."""
