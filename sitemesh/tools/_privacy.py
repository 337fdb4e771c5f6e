"""Privacy of tool responses: scanned before an agent sees them, fail closed.

Every string of a response is scanned with the site's PII scanner: the text of its
content blocks and every string value of its structured content (and every key that
is not a plain field name such as ``customer_id``). The
detected entity types give the response's data class
(:func:`sitemesh.policy.classify`), which the result carries with per-type counts
(never values) so the caller raises the task's class. When asked (content that may
reach a cloud step), the detected values are replaced by the task's placeholders
through the site's pseudonymiser and vault (:class:`sitemesh.policy.Pseudonymizer`),
the same placeholders the task's other texts get.

If the scanner (or, when asked, the pseudonymiser) fails, the response is withheld
with :class:`~sitemesh.tools.ToolResponseUnscanned`, a permanent error: nothing passes
unscanned. Blocks that hold no text (images, audio, binary resources) are dropped, not
passed on, and counted in ``omitted``.

Tool *arguments* are never re-identified here: a cloud step that built arguments with
placeholders has them re-identified on the site, by the site code that makes the call
(``Pseudonymizer.reidentify``), never in the cloud and never implicitly by the registry.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Final, Protocol

from ..errors import PiiAnalyzerError
from ._errors import ToolResponseUnscanned
from ._types import ToolResponse

if TYPE_CHECKING:
    from ..policy import DetectedEntity, Pseudonymizer
    from ..schemas import DataClass

__all__ = ["ResponseScanner", "ScannedResponse", "protect_response"]


class ResponseScanner(Protocol):
    """What the registry needs of a PII scanner (:class:`sitemesh.policy.PiiScanner`)."""

    def scan_many(self, texts: Sequence[str]) -> list[list[DetectedEntity]]:
        """Detected entities per text, in input order.

        Raises:
            PiiAnalyzerError: the analysis failed.
        """
        ...


class ScannedResponse:
    """A response after the scan: its strings (maybe pseudonymised), class and counts."""

    def __init__(
        self,
        texts: list[str],
        structured: Any,
        data_class: DataClass,
        entities: dict[str, int],
        pseudonymised: bool,
    ) -> None:
        self.texts = texts
        self.structured = structured
        self.data_class = data_class
        self.entities = entities
        self.pseudonymised = pseudonymised


_FIELD_NAME: Final = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]{0,63}$")
"""A key that is a field name (``customer_id``, ``emailAddress``): not scanned. Out of
context the NER model takes such names for entities (``customer_id`` as a LOCATION);
any other key (``jane@example.com``, ``Jane Doe``, ``+44 20...``) is scanned."""


def _strings(value: Any, out: list[str]) -> None:
    """Every string leaf, and every key that is not a field name, in walk order."""
    if isinstance(value, str):
        out.append(value)
    elif isinstance(value, dict):
        for k, v in value.items():
            if not _FIELD_NAME.match(str(k)):
                out.append(str(k))
            _strings(v, out)
    elif isinstance(value, list):
        for v in value:
            _strings(v, out)


def _rebuild(value: Any, replaced: list[str], pos: list[int]) -> Any:
    """``value`` with the strings :func:`_strings` took replaced from ``replaced``."""
    if isinstance(value, str):
        pos[0] += 1
        return replaced[pos[0] - 1]
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for k, v in value.items():
            key = str(k)
            if not _FIELD_NAME.match(key):
                pos[0] += 1
                key = replaced[pos[0] - 1]
            out[key] = _rebuild(v, replaced, pos)
        return out
    if isinstance(value, list):
        return [_rebuild(v, replaced, pos) for v in value]
    return value


async def protect_response(
    response: ToolResponse,
    *,
    tool: str,
    scanner: ResponseScanner,
    task_id: str,
    pseudonymise: bool = False,
    pseudonymizer: Pseudonymizer | None = None,
) -> ScannedResponse:
    """Scan ``response``, classify it and, if asked, pseudonymise it for ``task_id``.

    Args:
        response: the tool's raw answer (live or recorded).
        tool: the tool as called (named in errors).
        scanner: the site's PII scanner.
        task_id: the task the call serves (the pseudonyms are the task's).
        pseudonymise: replace the detected values by the task's placeholders.
        pseudonymizer: the site's pseudonymiser (required with ``pseudonymise``).

    Returns:
        The strings (pseudonymised if asked), the structured content (likewise), the
        data class and the entity counts.

    Raises:
        ToolResponseUnscanned: the scanner or the pseudonymiser failed, or
            ``pseudonymise`` without a task id or pseudonymiser (reason codes
            ``scanner_failed``, ``pseudonymisation_failed``, ``no_task``).
    """
    from ..policy import classify

    structured_strings: list[str] = []
    _strings(response.structured, structured_strings)
    texts = [*response.texts, *structured_strings]
    try:
        found = scanner.scan_many(texts)
        if len(found) != len(texts):
            raise PiiAnalyzerError(f"scanner returned {len(found)} results for {len(texts)} texts")
    except Exception as exc:
        # the exception text may quote the response: keep it only as __cause__
        detail = type(exc.__cause__ or exc).__name__
        raise ToolResponseUnscanned(
            f"{tool}: the response could not be scanned for personal data ({detail}); "
            "it is withheld",
            tool=tool,
            reason="scanner_failed",
        ) from exc
    counts = Counter(e.entity_type for entities in found for e in entities)
    data_class = classify(counts)
    if not pseudonymise or not counts:
        return ScannedResponse(
            list(response.texts), response.structured, data_class, dict(counts), False
        )
    if not task_id or pseudonymizer is None:
        raise ToolResponseUnscanned(
            f"{tool}: pseudonymisation asked for without "
            + ("a task id" if not task_id else "a pseudonymiser (vault)")
            + "; the response is withheld",
            tool=tool,
            reason="no_task" if not task_id else "pseudonymisation_failed",
        )
    keyed = {f"s{i}": text for i, text in enumerate(texts)}
    try:
        done = await pseudonymizer.pseudonymize(task_id, keyed)
    except Exception as exc:
        raise ToolResponseUnscanned(
            f"{tool}: the response could not be pseudonymised ({type(exc).__name__}); "
            "it is withheld",
            tool=tool,
            reason="pseudonymisation_failed",
        ) from exc
    replaced = [done.texts[f"s{i}"] for i in range(len(texts))]
    n = len(response.texts)
    structured = _rebuild(response.structured, replaced[n:], [0])
    return ScannedResponse(replaced[:n], structured, data_class, dict(counts), True)
