"""The knowledge bases shipped in the package.

* ``runbooks``: the operations runbooks of ``sitemesh/agents/kb/`` (prometheus-operator
  and OpenShift, Apache-2.0), indexed by :class:`sitemesh.agents.KnowledgeBase` and
  searched by the retriever for ``telemetry_alert`` tasks;
* ``support-cases``: past cases from the IBM Twitter customer-care conversations
  (Apache-2.0), pseudonymised, one tenant per company, for ``support_ticket`` tasks of
  any tenant (documents answer only their own tenant);
* ``banking-faq``: one answer per banking77 intent (answers written for sitemesh;
  example questions from banking77, CC BY 4.0), for ``support_ticket`` tasks of
  tenants ``bank*``.

Each data folder ``data/<name>/`` holds ``kb.json`` (the routing), ``docs.jsonl`` (the
documents, :func:`~sitemesh.knowledge.encode_docs`), ``SOURCE.md`` and ``LICENSE``;
``examples/make_kb.py`` writes them.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Final

from ._docs import Document, KbSpec, content_sha256, decode_docs
from ._errors import KbNotFound
from ._index import KbIndex

DATA_ROOT: Final = Path(__file__).parent / "data"
"""The bundled knowledge bases' folders."""

RUNBOOKS: Final = "runbooks"
"""Name of the runbook knowledge base (served by :class:`sitemesh.agents.KnowledgeBase`)."""

RUNBOOKS_SPEC: Final = KbSpec(
    name=RUNBOOKS,
    kinds=("telemetry_alert",),
    tenants=("*",),
    format="markdown",
    origin="bundled",
    description="prometheus-operator and OpenShift alert runbooks (Apache-2.0)",
)
"""Routing of the runbooks; ``docs`` and ``sha256`` are filled in by whoever loads them."""

INDEXED: Final = ("support-cases", "banking-faq")
"""The bundled knowledge bases indexed here (the runbooks are not)."""

BUNDLED: Final = (RUNBOOKS, *INDEXED)


def docs_path(name: str) -> Path:
    """The ``docs.jsonl`` of a bundled knowledge base (a valid ``kb add`` input is
    ``bundled:<name>``).

    Raises:
        KbNotFound: ``name`` is not one of :data:`INDEXED`.
    """
    if name not in INDEXED:
        raise KbNotFound(
            name,
            f"no bundled knowledge base {name!r} with documents (bundled: {', '.join(INDEXED)})",
        )
    return DATA_ROOT / name / "docs.jsonl"


@functools.cache
def bundled_spec(name: str) -> KbSpec:
    """The spec of a bundled knowledge base (from its ``kb.json``; docs and hash
    from its ``docs.jsonl``; the runbooks' without them).

    Raises:
        KbNotFound: not a bundled name.
    """
    if name == RUNBOOKS:
        return RUNBOOKS_SPEC
    path = docs_path(name)
    meta = json.loads((path.parent / "kb.json").read_text("utf-8"))
    data = path.read_bytes()
    return KbSpec(
        name=name,
        kinds=tuple(meta["kinds"]),
        tenants=tuple(meta.get("tenants", ["*"])),
        format=meta["format"],
        origin="bundled",
        description=meta.get("description", ""),
        docs=sum(1 for line in data.splitlines() if line.strip()),
        sha256=content_sha256(data),
    )


def bundled_calibration(name: str) -> str:
    """The calibration summary recorded in a bundled knowledge base's ``kb.json`` when
    it was built (``examples/make_kb.py``; a test checks it against a fresh fit).

    Raises:
        KbNotFound: not one of :data:`INDEXED`.
    """
    meta = json.loads((docs_path(name).parent / "kb.json").read_text("utf-8"))
    return str(meta.get("calibration", ""))


def bundled_docs(name: str) -> list[Document]:
    """The documents of a bundled knowledge base (not the runbooks).

    Raises:
        KbNotFound: not one of :data:`INDEXED`.
    """
    return decode_docs(docs_path(name).read_bytes(), source=f"bundled:{name}")


@functools.cache
def bundled_index(name: str) -> KbIndex:
    """The index of a bundled knowledge base, built and calibrated once per process
    (``support-cases``: well under a second; ``banking-faq``: a few seconds, its
    ~8,000 example questions each searched once for the calibration)."""
    return KbIndex(bundled_spec(name), bundled_docs(name))
