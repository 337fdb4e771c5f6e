"""Errors of the knowledge package (all under :class:`~sitemesh.errors.SitemeshError`)."""

from __future__ import annotations

from ..errors import SitemeshError


class KnowledgeError(SitemeshError, ValueError):
    """A knowledge base is invalid or cannot be used (bad name, routing or content)."""


class KbNotFound(KnowledgeError, LookupError):
    """No knowledge base of that name, bundled or at the site.

    Attributes:
        name: the name asked for.
    """

    def __init__(self, name: str, message: str | None = None) -> None:
        super().__init__(message or f"no knowledge base named {name!r}")
        self.name = name


class IngestError(KnowledgeError):
    """Input to ``sitemesh kb add`` that cannot be ingested; one line, no traceback.

    ``str(error)`` reads ``<file>:<line>: <field>: expected <what>, got <what>``
    (line and field when known).

    Attributes:
        path: the file (as given, relative where possible).
        line: the 1-based line (JSONL/CSV record) or ``None``.
        field: the field name or ``None``.
        expected: what was expected there.
    """

    def __init__(
        self,
        path: str,
        expected: str,
        *,
        line: int | None = None,
        field: str | None = None,
        got: str | None = None,
    ) -> None:
        where = path if line is None else f"{path}:{line}"
        what = f"field {field!r}: " if field else ""
        tail = f", got {got}" if got is not None else ""
        super().__init__(f"{where}: {what}expected {expected}{tail}")
        self.path = path
        self.line = line
        self.field = field
        self.expected = expected
