"""Health records the processes of a site keep in its KV buckets (not tagged messages).

:class:`ModelHealth` lives here, not in :mod:`sitemesh.models`, so the worker runtime
can decode a process's health report without importing the model SDKs.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

import msgspec


class ModelHealth(msgspec.Struct, frozen=True, kw_only=True):
    """One model backend's health in this process since it started
    (:meth:`sitemesh.models.ModelClient.health`; shown on the console's health page and
    by ``sitemesh tools health``).

    Counts are of live calls only: replayed and fallback answers never reach a backend.
    """

    provider: str
    """The backend (``vllm``, ``openai``, ``anthropic``)."""
    breaker: Literal["closed", "open", "half_open"] = "closed"
    """Its circuit breaker now."""
    retry_in_s: float = 0.0
    """Seconds until an open breaker lets a probe through (0 unless open)."""
    calls: int = 0
    """Calls that reached the breaker (each may take several attempts)."""
    ok: int = 0
    """Calls answered (``invalid_output`` ones included: the backend answered)."""
    failed: int = 0
    """Calls that ended in an error: rate limited, timed out, unavailable, rejected."""
    circuit_open: int = 0
    """Calls refused by the open breaker without a request."""
    last_error: str = ""
    """The last failed call's error class and message, at most 200 characters. The
    message is the backend's own and may quote what it was sent: the report stays in
    the site's bucket, and the console masks it for every role."""
    last_error_at: datetime | None = None
    """When it happened (UTC)."""
