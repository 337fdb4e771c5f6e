"""Egress guard: the last check before a message leaves the site (DESIGN.md section 6).

A message is split by its ``type`` into two kinds of fields:

* **platform fields**: values the platform generates itself (the opaque task
  reference, rule ids, knowledge-base ids, action names, reason codes, placeholders,
  enums, timestamps), named by the message type's *field spec*. The NER model
  misreads them (``ho-gl-508`` as a LOCATION; 527 of 20,000 references ``r`` + 26
  base32 as LOCATION, measured with the bundled spaCy model), so they are not given to
  it: each must match its :class:`FieldFormat` instead, and one that does not blocks
  the message with the type :data:`UNEXPECTED_FORMAT` (fail closed: a name, an
  address or an e-mail in such a field does not fit its format). A format whose
  characters could still spell an identifier (digits, dots, dashes: a phone number as
  a rule id, an IP address as a runbook id) is also scanned, and every detection
  counts except those of the NER types (:data:`NER_ENTITY_TYPES`).
* **content**: every other string, dict keys included, and every string of a message
  type without a spec. Content is re-scanned with the :class:`~sitemesh.policy.PiiScanner`;
  a detection that is not a placeholder blocks the message. A message type whose spec
  is *closed* (:data:`CLOSED_MESSAGE_TYPES`) has no content at all: any field its spec
  does not name blocks it with the type :data:`UNEXPECTED_FIELD`, whatever it holds.

Field specs are keyed by message type (:data:`EGRESS_FIELD_SPECS`; a message type
registers its own by passing ``specs=``); paths are JSON paths with ``[*]`` for
any list element. The formats, and the table of ``cloud_incident.v2``'s (a closed
type: every field it has is in it), are in :mod:`sitemesh.policy._formats`.

Placeholders: in content, a detection inside a placeholder is ignored, and so is a
detection of an NER type that has no letter outside placeholders (spaCy reading
``<IP_ADDRESS_1>:10249`` as the LOCATION ``IP_ADDRESS_1>:10249``): a name or a place
is spelled with letters. With ``vocabulary=`` (the words of the site's knowledge
base), an NER detection made only of runbook words is runbook text too.

Errors name the JSON path and entity type, never the value. The guard fails closed:
if the scanner fails, nothing leaves.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final

import msgspec

from ..errors import EgressBlocked, PiiAnalyzerError
from ._formats import CLOSED_MESSAGE_TYPES, EGRESS_FIELD_SPECS, FieldFormat
from ._pii import DetectedEntity, PiiScanner
from ._pseudonym import PLACEHOLDER_RE

__all__ = ["UNEXPECTED_FIELD", "UNEXPECTED_FORMAT", "EgressGuard"]

UNEXPECTED_FORMAT: Final = "UNEXPECTED_FORMAT"
"""Entity type of a finding for a platform field whose value does not match its format."""

UNEXPECTED_FIELD: Final = "UNEXPECTED_FIELD"
"""Entity type of a finding for a field that a closed spec does not name (or a
container of the wrong shape): a message type without content carries nothing else."""

NER_ENTITY_TYPES: Final = frozenset({"PERSON", "LOCATION", "NRP", "ORGANIZATION"})
"""Types only Presidio's ``SpacyRecognizer`` reports (its ``DATE_TIME`` also comes from
a pattern recognizer): the ones that misread identifiers, ignored in platform fields."""

_KEY_RE: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")
"""Dict keys printed as ``.key`` in paths; any other key as ``[#i]`` (its position)."""

_SPEC_PATH_RE: Final = re.compile(r"\$(?:\.[A-Za-z_][A-Za-z0-9_]{0,63}|\[\*\])*")
"""A field spec path: ``$``, then ``.name`` and ``[*]`` segments."""


@dataclass(frozen=True, slots=True)
class _Content:
    path: str
    text: str


@dataclass(frozen=True, slots=True)
class _Platform:
    path: str
    format: FieldFormat
    value: object


@dataclass(frozen=True, slots=True)
class _Unexpected:
    path: str


_Field = _Content | _Platform | _Unexpected

_SEGMENT_START: Final = re.compile(r"[.\[]")


def _containers(spec: Mapping[str, FieldFormat]) -> frozenset[str]:
    """Shapes that hold a spec's fields: every proper prefix of its paths
    (``$.steps[*].grounding[*]`` -> ``$``, ``$.steps``, ``$.steps[*]``,
    ``$.steps[*].grounding``)."""
    return frozenset(
        path[: m.start()] for path in spec for m in _SEGMENT_START.finditer(path) if m.start()
    )


def _split(
    node: Any,
    path: str,
    shape: str,
    spec: Mapping[str, FieldFormat],
    out: list[_Field],
    containers: frozenset[str] | None = None,
) -> None:
    """Walk ``node``: platform fields (``shape`` in ``spec``) and content strings, in order.

    ``path`` is the printed JSON path (``$.steps[0].action``), ``shape`` the same with
    list indices as ``[*]`` (``$.steps[*].action``). Dict keys are content
    (``<path>{key#i}``). With ``containers`` (a closed spec: :func:`_containers`) there
    is no content: a key or a value at a shape that is neither a platform field nor a
    container of one is :class:`_Unexpected`; ``null`` may stand for a container.
    """
    fmt = spec.get(shape)
    if fmt is not None:
        out.append(_Platform(path, fmt, node))
    elif containers is not None:
        _split_closed(node, path, shape, spec, out, containers)
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


def _split_closed(
    node: Any,
    path: str,
    shape: str,
    spec: Mapping[str, FieldFormat],
    out: list[_Field],
    containers: frozenset[str],
) -> None:
    """:func:`_split` for a container shape of a closed spec."""
    if node is None and shape in containers:
        return
    if isinstance(node, dict) and shape in containers:
        for i, (key, value) in enumerate(node.items()):
            name = str(key)
            child = f"{shape}.{name}"
            if _KEY_RE.fullmatch(name) and (child in spec or child in containers):
                _split(value, f"{path}.{name}", child, spec, out, containers)
            else:
                out.append(_Unexpected(f"{path}{{key#{i}}}"))
    elif isinstance(node, list | tuple) and shape in containers:
        child = f"{shape}[*]"
        for i, value in enumerate(node):
            if child in spec or child in containers:
                _split(value, f"{path}[{i}]", child, spec, out, containers)
            else:
                out.append(_Unexpected(f"{path}[{i}]"))
    else:
        out.append(_Unexpected(path))


def _text(field: _Field) -> str:
    if isinstance(field, _Content):
        return field.text
    return str(field.value) if isinstance(field, _Platform) else ""


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
        closed: message types whose spec is closed (a field it does not name blocks
            with :data:`UNEXPECTED_FIELD`); ``None``: those of
            :data:`CLOSED_MESSAGE_TYPES` that ``specs`` has a spec for.
        vocabulary: words of the site's own published documentation (its runbook
            knowledge base; build with :meth:`vocabulary_of`). A detection of an NER
            type in content whose every word outside placeholders is in it (case
            as written) is runbook text, not personal data: spaCy reads
            ``Correlate`` at the start of a step as a LOCATION. Detections of the
            other types (e-mail, phone, card, IP...) always count. Empty: off.

    Raises:
        ValueError: a spec path is not ``$`` followed by ``.name`` / ``[*]`` segments,
            or a closed message type has no spec.
    """

    def __init__(
        self,
        scanner: PiiScanner,
        *,
        specs: Mapping[str, Mapping[str, FieldFormat]] | None = None,
        closed: Collection[str] | None = None,
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
        shut = CLOSED_MESSAGE_TYPES & chosen.keys() if closed is None else frozenset(closed)
        missing = sorted(t for t in shut if not chosen.get(t))
        if missing:
            raise ValueError(f"closed message types without a field spec: {missing}")
        self._closed = {t: _containers(chosen[t]) for t in shut}

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

    def is_closed(self, message_type: str | None) -> bool:
        """Whether ``message_type`` may carry nothing but its spec's fields."""
        return message_type in self._closed

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
            out of format gives ``(path, UNEXPECTED_FORMAT)``, a field a closed spec
            does not name ``(path, UNEXPECTED_FIELD)``.

        Raises:
            PiiAnalyzerError: the scanner failed (fail closed).
        """
        try:
            tree = msgspec.to_builtins(payload) if isinstance(payload, msgspec.Struct) else payload
            kind = tree.get("type") if isinstance(tree, dict) else None
            message_type = kind if isinstance(kind, str) else None
            fields: list[_Field] = []
            spec = self.spec_for(message_type)
            _split(tree, "$", "$", spec, fields, self._closed.get(message_type or ""))
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
            if isinstance(f, _Unexpected):
                out.append((f.path, UNEXPECTED_FIELD))
            elif isinstance(f, _Platform) and not f.format.accepts(f.value):
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
            EgressBlocked: something other than a placeholder was detected, a
                platform field is out of format, or a closed message type carries a
                field its spec does not name; the error's ``field`` is the first
                JSON path, ``findings`` all of them.
            PiiAnalyzerError: the scanner failed (fail closed: nothing leaves).
        """
        found = self.findings(payload)
        if found:
            raise EgressBlocked(found)
