"""The site's own knowledge: knowledge bases a site adds, routed by task kind and
tenant, searched with BM25, with a confidence calibrated per knowledge base.

* documents: every source becomes :class:`Document` s (:func:`ingest`: Markdown,
  HTML, past cases, FAQs); past cases are pseudonymised at ingest
  (:class:`Pseudonymiser`: typed placeholders such as ``<PERSON>``);
* routing: a :class:`KbSpec` names the task kinds and tenant globs it serves
  (:func:`routes`); documents with a tenant answer only that tenant (:func:`visible`);
* index: :class:`KbIndex` (``bm25s``), calibrated by leave-one-out Platt scaling
  (:class:`Calibration`, :func:`fit_platt`) when its documents are labelled;
* store: site knowledge bases live in the site's artifact bucket as ``kb/<name>``
  (:func:`publish_kb`, :func:`fetch_kb`, :func:`list_site_kbs`, :func:`remove_kb`);
* :class:`Library`: the bundled ones (``runbooks``, ``support-cases``,
  ``banking-faq``; see :data:`BUNDLED`) plus the site's, reloaded live.

See ``docs/knowledge.md``.
"""

from ._articles import (
    ARCHIVE_PREFIX_RE,
    HELD_OUT_MODULUS,
    article_key,
    article_url,
    held_out,
    held_out_session,
)
from ._bundled import (
    BUNDLED,
    DATA_ROOT,
    INDEXED,
    RUNBOOKS,
    RUNBOOKS_SPEC,
    bundled_calibration,
    bundled_docs,
    bundled_index,
    bundled_spec,
    docs_path,
)
from ._calibrate import (
    CV_FOLDS,
    FEATURE_NAMES,
    HEURISTIC,
    MIN_LOO,
    SCORE_SCALE,
    VOTE_K,
    Calibration,
    Features,
    expected_calibration_error,
    fit_platt,
    heuristic_confidence,
)
from ._docs import (
    KIND_RE,
    NAME_RE,
    DocKind,
    Document,
    KbSpec,
    Origin,
    check_name,
    check_routing,
    content_sha256,
    decode_docs,
    encode_docs,
)
from ._errors import IngestError, KbNotFound, KnowledgeError
from ._index import MAX_INDEXED_CHARS, KbHit, KbIndex, Ranking
from ._ingest import FAQ_URL_BASE, FORMATS, Ingested, detect_format, ingest
from ._library import Library, LoadedKb
from ._pseudonymise import HANDLE, Pseudonymiser
from ._records import (
    CaseRecord,
    FaqRecord,
    case_records,
    cases_to_docs,
    faq_records,
    faq_to_docs,
    humanise,
    intent_slug,
)
from ._routing import routes, tenant_matches, visible
from ._split import Section, split_html, split_markdown
from ._store import KB_KIND, artifact_name, fetch_kb, kb_name, list_site_kbs, publish_kb, remove_kb
from ._text import (
    EMAIL_RE,
    HANDLE_RE,
    MAX_PASSAGE_CHARS,
    MAX_QUERY_CHARS,
    PHONE_RE,
    PLACEHOLDER_RE,
    URL_RE,
    cap_query,
    index_text,
    scrub_contact_details,
    slugify,
    split_camel,
    stem,
    tokenize,
    trim,
)

__all__ = [
    "ARCHIVE_PREFIX_RE",
    "BUNDLED",
    "CV_FOLDS",
    "DATA_ROOT",
    "EMAIL_RE",
    "FAQ_URL_BASE",
    "FEATURE_NAMES",
    "FORMATS",
    "HANDLE",
    "HANDLE_RE",
    "HELD_OUT_MODULUS",
    "HEURISTIC",
    "INDEXED",
    "KB_KIND",
    "KIND_RE",
    "MAX_INDEXED_CHARS",
    "MAX_PASSAGE_CHARS",
    "MAX_QUERY_CHARS",
    "MIN_LOO",
    "NAME_RE",
    "PHONE_RE",
    "PLACEHOLDER_RE",
    "RUNBOOKS",
    "RUNBOOKS_SPEC",
    "SCORE_SCALE",
    "URL_RE",
    "VOTE_K",
    "Calibration",
    "CaseRecord",
    "DocKind",
    "Document",
    "FaqRecord",
    "Features",
    "IngestError",
    "Ingested",
    "KbHit",
    "KbIndex",
    "KbNotFound",
    "KbSpec",
    "KnowledgeError",
    "Library",
    "LoadedKb",
    "Origin",
    "Pseudonymiser",
    "Ranking",
    "Section",
    "article_key",
    "article_url",
    "artifact_name",
    "bundled_calibration",
    "bundled_docs",
    "bundled_index",
    "bundled_spec",
    "cap_query",
    "case_records",
    "cases_to_docs",
    "check_name",
    "check_routing",
    "content_sha256",
    "decode_docs",
    "detect_format",
    "docs_path",
    "encode_docs",
    "expected_calibration_error",
    "faq_records",
    "faq_to_docs",
    "fetch_kb",
    "fit_platt",
    "held_out",
    "held_out_session",
    "heuristic_confidence",
    "humanise",
    "index_text",
    "ingest",
    "intent_slug",
    "kb_name",
    "list_site_kbs",
    "publish_kb",
    "remove_kb",
    "routes",
    "scrub_contact_details",
    "slugify",
    "split_camel",
    "split_html",
    "split_markdown",
    "stem",
    "tenant_matches",
    "tokenize",
    "trim",
    "visible",
]
