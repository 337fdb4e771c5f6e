"""Egress guard: the last check before a message leaves the site (DESIGN.md section 6).

A message is split by its ``type`` into two kinds of fields:

* **content**: every string of a field that the message type's *field spec* does
  not name, dict keys included, and every string of a message type without a spec.
  Content is re-scanned with the :class:`~sitemesh.policy.PiiScanner`; a detection
  that is not a placeholder blocks the message.
* **platform fields**: values the platform generates itself (the opaque task
  reference, rule ids, knowledge-base ids, placeholders, enums, timestamps). The NER
  model misreads them (``ho-gl-508`` as a LOCATION; 527 of 20,000 references
  ``r`` + 26 base32 as LOCATION, measured with the bundled spaCy model), so they are
  not given to it: each must match its :class:`FieldFormat` instead, and one that
  does not blocks the message with the type :data:`UNEXPECTED_FORMAT` (fail closed:
  a name, an address or an e-mail in such a field does not fit its format). A format
  whose characters could still spell an identifier (digits, dots, dashes: a phone
  number as a rule id, an IP address as a runbook id) is also scanned, and every
  detection counts except those of the NER types (:data:`NER_ENTITY_TYPES`).

Field specs are keyed by message type (:data:`EGRESS_FIELD_SPECS`; a message type
registers its own by passing ``specs=``); paths are JSON paths with ``[*]`` for
any list element. ``cloud_incident.v1`` (:class:`~sitemesh.schemas.CloudIncident`):

===============================  =============================================  =========
path                             format (full match)                            + scanned
===============================  =============================================  =========
``$.type``                       ``cloud_incident.v1``                          no
``$.task_id``                    reference ``r[a-z2-7]{26}`` (``REF_RE``)       no
``$.site``                       site name ``[a-z][a-z0-9]{0,15}``              yes
``$.kind``                       token ``[a-z][a-z0-9_]{0,63}``                 yes
``$.data_class``                 ``public|internal|confidential|restricted``    no
``$.policy_version``             hex ``[0-9a-f]{1,64}``                         yes
``$.rule_id``                    rule id ``[a-z][a-z0-9]*(-[a-z0-9]+)*``        yes
``$.placeholders[*]``            placeholder (``PLACEHOLDER_RE``)               no
``$.runbook``                    KB doc id ``<corpus>/<path>``, or null         yes
``$.steps[*].n``                 integer                                        no
``$.steps[*].action``            action name ``[a-z][a-z0-9_]{0,63}``           yes
``$.steps[*].grounding[*]``      ``<doc id>#<slug>`` or ``diagnosis#<n>``       yes
``$.findings[*].kind``           a ``FindingKind``                              no
``$.findings[*].severity``       ``info|minor|major|critical``                  no
``$.findings[*].at``             RFC 3339 date-time, or null                    no
``$.findings[*].interface``      interface name ``[A-Za-z][A-Za-z0-9/._:-]*``   yes
``$.forwarded_at``               RFC 3339 date-time                             no
===============================  =============================================  =========

Everything else is content: ``$.text``, ``$.reasons[*]``, ``$.steps[*].description``,
``$.findings[*].evidence``, ``$.findings[*].device`` and any field added later.

Placeholders: a detection inside a placeholder is ignored, and so is a detection of
an NER type that has no letter outside placeholders (spaCy reading
``<IP_ADDRESS_1>:10249`` as the LOCATION ``IP_ADDRESS_1>:10249``): a name or a place
is spelled with letters. With ``vocabulary=`` (the words of the site's knowledge
base), an NER detection made only of runbook words is runbook text too.

Errors name the JSON path and entity type, never the value. The guard fails closed:
if the scanner fails, nothing leaves.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Final, get_args, get_type_hints

import msgspec

from ..errors import EgressBlocked, PiiAnalyzerError
from ..schemas import CloudIncident, DataClass, Finding, FindingKind, Site
from ._pii import DetectedEntity, PiiScanner
from ._pseudonym import PLACEHOLDER_RE
from ._refs import REF_RE

__all__ = ["EGRESS_FIELD_SPECS", "UNEXPECTED_FORMAT", "EgressGuard", "FieldFormat"]

UNEXPECTED_FORMAT: Final = "UNEXPECTED_FORMAT"
"""Entity type of a finding for a platform field whose value does not match its format."""

NER_ENTITY_TYPES: Final = frozenset({"PERSON", "LOCATION", "NRP", "ORGANIZATION"})
"""Types only Presidio's ``SpacyRecognizer`` reports (its ``DATE_TIME`` also comes from
a pattern recognizer): the ones that misread identifiers, ignored in platform fields."""

_KEY_RE: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")
"""Dict keys printed as ``.key`` in paths; any other key as ``[#i]`` (its position)."""

_SPEC_PATH_RE: Final = re.compile(r"\$(?:\.[A-Za-z_][A-Za-z0-9_]{0,63}|\[\*\])*")
"""A field spec path: ``$``, then ``.name`` and ``[*]`` segments."""


@dataclass(frozen=True, slots=True)
class FieldFormat:
    """The format a platform-generated field must have (checked, not scanned by NER).

    A value is accepted when it is ``None`` and :attr:`optional`, an ``int`` (not a
    ``bool``) and :attr:`integer`, or a string of at most :attr:`max_chars` that
    :attr:`regex` fully matches. Values are checked in their JSON form (Structs go
    through ``msgspec.to_builtins``: date-times are RFC 3339 strings).
    """

    name: str
    """What the field holds, for documentation (``"reference"``)."""
    regex: re.Pattern[str] | None = None
    """Pattern a string value must fully match; ``None``: no string is accepted."""
    max_chars: int = 256
    """Longest string accepted, in characters."""
    integer: bool = False
    """Accept a JSON integer."""
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
            return self.integer
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
    """The pattern of an ``Annotated[str, msgspec.Meta(pattern=...)]`` schema type."""
    meta = get_args(annotated)[1]
    if not isinstance(meta, msgspec.Meta) or meta.pattern is None:
        raise TypeError(f"{annotated!r} carries no pattern")
    return re.compile(meta.pattern)


_DOC_ID: Final = r"[A-Za-z][A-Za-z0-9._-]*(?:/[A-Za-z][A-Za-z0-9._-]*)+"
"""A knowledge-base doc id ``<corpus>/<runbook path>`` (``prometheus/etcd/etcdMembersDown``):
two or more path segments, each starting with a letter (a number is not a runbook)."""

_RULE_ID: Final = re.compile(r"[a-z][a-z0-9]*(?:-[a-z0-9]+)*")
"""A rule id: ``RuleId``'s characters, starting with a letter (``every-ticket-to-cloud``);
stricter than the rules schema so that a phone number or an SSN is not a rule id."""

_DATETIME: Final = FieldFormat(
    name="date-time",
    regex=re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d{1,9})?(?:Z|[+-]\d{2}:\d{2})?"),
    scan=False,
)

_SEVERITY: Final = get_args(get_type_hints(Finding)["severity"])

CLOUD_INCIDENT_FIELDS: Final[Mapping[str, FieldFormat]] = MappingProxyType(
    {
        "$.type": FieldFormat.literal("message type", [str(CloudIncident.__struct_config__.tag)]),
        "$.task_id": FieldFormat(name="reference", regex=REF_RE, scan=False),
        "$.site": FieldFormat(name="site name", regex=_meta_regex(Site)),
        "$.kind": FieldFormat(name="task kind", regex=re.compile(r"[a-z][a-z0-9_]{0,63}")),
        "$.data_class": FieldFormat.literal("data class", get_args(DataClass)),
        "$.policy_version": FieldFormat(name="policy version", regex=re.compile(r"[0-9a-f]{1,64}")),
        "$.rule_id": FieldFormat(name="rule id", regex=_RULE_ID, max_chars=64),
        "$.placeholders[*]": FieldFormat(name="placeholder", regex=PLACEHOLDER_RE, scan=False),
        "$.runbook": FieldFormat(name="KB doc id", regex=re.compile(_DOC_ID), optional=True),
        "$.steps[*].n": FieldFormat(name="step number", integer=True),
        "$.steps[*].action": FieldFormat(name="action", regex=re.compile(r"[a-z][a-z0-9_]{0,63}")),
        "$.steps[*].grounding[*]": FieldFormat(
            name="passage id",
            regex=re.compile(rf"{_DOC_ID}#[a-z0-9][a-z0-9-]*|diagnosis#[1-9][0-9]{{0,3}}"),
            max_chars=320,
        ),
        "$.findings[*].kind": FieldFormat.literal("finding kind", get_args(FindingKind)),
        "$.findings[*].severity": FieldFormat.literal("severity", _SEVERITY),
        "$.findings[*].at": FieldFormat(
            name="date-time", regex=_DATETIME.regex, optional=True, scan=False
        ),
        "$.findings[*].interface": FieldFormat(
            name="interface", regex=re.compile(r"[A-Za-z][A-Za-z0-9/._:-]*"), optional=True
        ),
        "$.forwarded_at": _DATETIME,
    }
)
"""Platform fields of ``cloud_incident.v1`` (see the module docstring's table)."""

EGRESS_FIELD_SPECS: Final[Mapping[str, Mapping[str, FieldFormat]]] = MappingProxyType(
    {str(CloudIncident.__struct_config__.tag): CLOUD_INCIDENT_FIELDS}
)
"""Message type (the ``type`` field) -> JSON path -> :class:`FieldFormat`: the
platform fields of every outgoing message type that declares them. A type not in
here is scanned whole."""


@dataclass(frozen=True, slots=True)
class _Content:
    path: str
    text: str


@dataclass(frozen=True, slots=True)
class _Platform:
    path: str
    format: FieldFormat
    value: object


def _split(
    node: Any,
    path: str,
    shape: str,
    spec: Mapping[str, FieldFormat],
    out: list[_Content | _Platform],
) -> None:
    """Walk ``node``: platform fields (``shape`` in ``spec``) and content strings, in order.

    ``path`` is the printed JSON path (``$.steps[0].action``), ``shape`` the same with
    list indices as ``[*]`` (``$.steps[*].action``). Dict keys are content
    (``<path>{key#i}``).
    """
    fmt = spec.get(shape)
    if fmt is not None:
        out.append(_Platform(path, fmt, node))
    elif isinstance(node, str):
        out.append(_Content(path, node))
    elif isinstance(node, dict):
        for i, (key, value) in enumerate(node.items()):
            name = str(key)
            named = _KEY_RE.fullmatch(name) is not None
            out.append(_Content(f"{path}{{key#{i}}}", name))
            seg = f".{name}" if named else f"[#{i}]"
            _split(value, path + seg, shape + (seg if named else "[#]"), spec, out)
    elif isinstance(node, list | tuple):
        for i, value in enumerate(node):
            _split(value, f"{path}[{i}]", f"{shape}[*]", spec, out)


def _text(field: _Content | _Platform) -> str:
    return field.text if isinstance(field, _Content) else str(field.value)


_WORD_RE: Final = re.compile(r"\w+")


def _leftover(
    text: str, entities: list[DetectedEntity], vocabulary: frozenset[str]
) -> list[DetectedEntity]:
    """Detections that count: not inside a placeholder, and for the NER types, with a
    letter outside placeholders and a word there that is not in ``vocabulary``."""
    spans = [m.span() for m in PLACEHOLDER_RE.finditer(text)]
    if not spans and not vocabulary:
        return entities
    kept: list[DetectedEntity] = []
    for e in entities:
        if any(a <= e.start and e.end <= b for a, b in spans):
            continue
        if e.entity_type in NER_ENTITY_TYPES:
            outside = "".join(
                c if not any(a <= i < b for a, b in spans) else " "
                for i, c in enumerate(text[e.start : e.end], start=e.start)
            )
            if not any(c.isalpha() for c in outside):
                continue  # the model read a placeholder's own letters
            if vocabulary and all(w in vocabulary for w in _WORD_RE.findall(outside)):
                continue  # runbook words, written by the site's own documentation
        kept.append(e)
    return kept


class EgressGuard:
    """Blocks outgoing payloads that still carry PII, or platform fields out of format.

    Args:
        scanner: the scanner to re-scan with; its entity set and score floors
            define "still detected above threshold".
        specs: message type -> field spec (JSON path -> :class:`FieldFormat`);
            ``None``: :data:`EGRESS_FIELD_SPECS`. ``{}`` scans every string of every
            message (no platform fields).
        vocabulary: words of the site's own published documentation (its runbook
            knowledge base; build with :meth:`vocabulary_of`). A detection of an NER
            type in content whose every word outside placeholders is in it (case
            as written) is runbook text, not personal data: spaCy reads
            ``Correlate`` at the start of a step as a LOCATION. Detections of the
            other types (e-mail, phone, card, IP...) always count. Empty: off.

    Raises:
        ValueError: a spec path is not ``$`` followed by ``.name`` / ``[*]`` segments.
    """

    def __init__(
        self,
        scanner: PiiScanner,
        *,
        specs: Mapping[str, Mapping[str, FieldFormat]] | None = None,
        vocabulary: Iterable[str] = (),
    ) -> None:
        self._scanner = scanner
        self._vocabulary = frozenset(vocabulary)
        chosen = EGRESS_FIELD_SPECS if specs is None else specs
        for message_type, spec in chosen.items():
            for path in spec:
                if not _SPEC_PATH_RE.fullmatch(path):
                    raise ValueError(f"field spec of {message_type!r}: bad path {path!r}")
        self._specs: dict[str, Mapping[str, FieldFormat]] = dict(chosen)

    @staticmethod
    def vocabulary_of(texts: Iterable[str]) -> frozenset[str]:
        """The words (``\\w+``, case kept) of ``texts``, for ``vocabulary=``.

        Args:
            texts: e.g. every title, heading and body of the site's knowledge base.
        """
        return frozenset(w for text in texts for w in _WORD_RE.findall(text))

    def spec_for(self, message_type: str | None) -> Mapping[str, FieldFormat]:
        """The field spec applied to ``message_type`` (empty: scanned whole)."""
        if message_type is None:
            return {}
        return self._specs.get(message_type, {})

    def findings(
        self, payload: msgspec.Struct | dict[str, Any] | list[Any] | str
    ) -> list[tuple[str, str]]:
        """Every ``(json_path, entity_type)`` still detected in ``payload``.

        Args:
            payload: a wire Struct (walked via ``msgspec.to_builtins``), a JSON-like
                dict/list, or a string (path ``$``). A dict's ``type`` picks its
                field spec.

        Returns:
            Findings in walk order; empty when the payload is clean. A platform field
            out of format gives ``(path, UNEXPECTED_FORMAT)``.

        Raises:
            PiiAnalyzerError: the scanner failed (fail closed).
        """
        try:
            tree = msgspec.to_builtins(payload) if isinstance(payload, msgspec.Struct) else payload
            kind = tree.get("type") if isinstance(tree, dict) else None
            fields: list[_Content | _Platform] = []
            _split(tree, "$", "$", self.spec_for(kind if isinstance(kind, str) else None), fields)
            todo = [
                i
                for i, f in enumerate(fields)
                if (isinstance(f, _Content) and PLACEHOLDER_RE.sub("", f.text).strip())
                or (isinstance(f, _Platform) and f.format.scan and f.format.accepts(f.value))
            ]
            texts = [_text(fields[i]) for i in todo]
            detected = dict(zip(todo, self._scanner.scan_many(texts), strict=True))
        except PiiAnalyzerError:
            raise
        except Exception as exc:
            raise PiiAnalyzerError(
                f"egress scan failed ({type(exc).__name__}); the message stays on site"
            ) from exc
        out: list[tuple[str, str]] = []
        for i, f in enumerate(fields):
            if isinstance(f, _Platform) and not f.format.accepts(f.value):
                out.append((f.path, UNEXPECTED_FORMAT))
            elif isinstance(f, _Platform):
                out.extend(
                    (f.path, e.entity_type)
                    for e in detected.get(i, [])
                    if e.entity_type not in NER_ENTITY_TYPES
                )
            else:
                out.extend(
                    (f.path, e.entity_type)
                    for e in _leftover(f.text, detected.get(i, []), self._vocabulary)
                )
        return out

    def check(self, payload: msgspec.Struct | dict[str, Any] | list[Any] | str) -> None:
        """Raise if ``payload`` still carries PII; return quietly if it is clean.

        Args:
            payload: see :meth:`findings`.

        Raises:
            EgressBlocked: something other than a placeholder was detected, or a
                platform field is out of format; the error's ``field`` is the first
                JSON path, ``findings`` all of them.
            PiiAnalyzerError: the scanner failed (fail closed: nothing leaves).
        """
        found = self.findings(payload)
        if found:
            raise EgressBlocked(found)
