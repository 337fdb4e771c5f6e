"""Which knowledge bases a task searches, and which of their documents it may see."""

from __future__ import annotations

from fnmatch import fnmatchcase

from ._docs import KbSpec


def tenant_matches(tenant: str, globs: tuple[str, ...] | list[str]) -> bool:
    """Whether ``tenant`` matches one of ``globs`` (``fnmatch``, case-insensitive).

    Args:
        tenant: the task's tenant (``Envelope.tenant``).
        globs: patterns such as ``bank*`` or ``*``.
    """
    folded = tenant.casefold()
    return any(fnmatchcase(folded, g.casefold()) for g in globs)


def routes(spec: KbSpec, kind: str, tenant: str) -> bool:
    """Whether a task of ``kind`` and ``tenant`` searches the knowledge base ``spec``.

    Args:
        spec: the knowledge base's routing.
        kind: the task kind token (``support_ticket``).
        tenant: the task's tenant.

    Returns:
        ``kind`` is one of ``spec.kinds`` (or they hold ``*``) and ``tenant``
        matches one of ``spec.tenants``.
    """
    kind_ok = kind in spec.kinds or "*" in spec.kinds
    return kind_ok and tenant_matches(tenant, spec.tenants)


def visible(doc_tenant: str | None, tenant: str | None) -> bool:
    """Whether a document of ``doc_tenant`` may answer a task of ``tenant``.

    Documents without a tenant answer everyone; others only their own tenant
    (case-insensitive). ``tenant=None`` (no filter) sees everything.
    """
    return doc_tenant is None or tenant is None or doc_tenant.casefold() == tenant.casefold()
