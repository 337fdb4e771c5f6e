"""Egress guard: the last check before a message leaves the site (DESIGN.md section 6).

Re-scans every string of an outgoing payload (dict keys included) with the
:class:`~sitemesh.policy.PiiScanner`; a detection that is not a placeholder blocks
the message with :class:`~sitemesh.errors.EgressBlocked` (dead-lettered and
audited, never forwarded). Errors name the JSON path and entity type, never the
value. The guard fails closed: if the scanner fails, nothing leaves.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any, Final

import msgspec

from ..errors import EgressBlocked, PiiAnalyzerError
from ._pii import DetectedEntity, PiiScanner
from ._pseudonym import PLACEHOLDER_RE

__all__ = ["EgressGuard"]

_KEY_RE: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")
"""Dict keys printed as ``.key`` in paths; any other key as ``[#i]`` (its position)."""


def _walk(node: Any, path: str) -> Iterator[tuple[str, str]]:
    """``(json_path, string)`` for every string in ``node`` (keys as ``<path>{key}``)."""
    if isinstance(node, str):
        yield path, node
    elif isinstance(node, dict):
        for i, (key, value) in enumerate(node.items()):
            name = str(key)
            seg = f".{name}" if _KEY_RE.fullmatch(name) else f"[#{i}]"
            yield f"{path}{{key#{i}}}", name
            yield from _walk(value, path + seg)
    elif isinstance(node, list | tuple):
        for i, value in enumerate(node):
            yield from _walk(value, f"{path}[{i}]")


def _outside_placeholders(text: str, entities: list[DetectedEntity]) -> list[DetectedEntity]:
    spans = [m.span() for m in PLACEHOLDER_RE.finditer(text)]
    if not spans:
        return entities
    return [e for e in entities if not any(a <= e.start and e.end <= b for a, b in spans)]


class EgressGuard:
    """Blocks outgoing payloads that still carry PII.

    Args:
        scanner: the scanner to re-scan with; its entity set and score floors
            define "still detected above threshold".
    """

    def __init__(self, scanner: PiiScanner) -> None:
        self._scanner = scanner

    def findings(
        self, payload: msgspec.Struct | dict[str, Any] | list[Any] | str
    ) -> list[tuple[str, str]]:
        """Every ``(json_path, entity_type)`` still detected in ``payload``.

        Args:
            payload: a wire Struct (walked via ``msgspec.to_builtins``), a JSON-like
                dict/list, or a string (path ``$``).

        Returns:
            Findings in walk order; empty when the payload is clean.

        Raises:
            PiiAnalyzerError: the scanner failed (fail closed).
        """
        try:
            tree = msgspec.to_builtins(payload) if isinstance(payload, msgspec.Struct) else payload
            pairs = [
                (path, text)
                for path, text in _walk(tree, "$")
                if PLACEHOLDER_RE.sub("", text).strip()
            ]
            detected = self._scanner.scan_many([text for _, text in pairs])
        except PiiAnalyzerError:
            raise
        except Exception as exc:
            raise PiiAnalyzerError(
                f"egress scan failed ({type(exc).__name__}); the message stays on site"
            ) from exc
        out: list[tuple[str, str]] = []
        for (path, text), entities in zip(pairs, detected, strict=True):
            for e in _outside_placeholders(text, entities):
                out.append((path, e.entity_type))
        return out

    def check(self, payload: msgspec.Struct | dict[str, Any] | list[Any] | str) -> None:
        """Raise if ``payload`` still carries PII; return quietly if it is clean.

        Args:
            payload: see :meth:`findings`.

        Raises:
            EgressBlocked: something other than a placeholder was detected; the
                error's ``field`` is the first JSON path, ``findings`` all of them.
            PiiAnalyzerError: the scanner failed (fail closed: nothing leaves).
        """
        found = self.findings(payload)
        if found:
            raise EgressBlocked(found)
