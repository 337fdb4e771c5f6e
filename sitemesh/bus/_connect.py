"""Connecting to NATS with the reconnect settings every sitemesh process uses."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping
from typing import Any

import nats
from nats.aio.client import Client

from ..errors import BusConnectionError
from ._redact import redact_url

log = logging.getLogger("sitemesh.bus")


async def connect(
    url: str,
    *,
    name: str,
    timeout_s: float = 5.0,
    options: Mapping[str, Any] | None = None,
) -> Client:
    """Connect to NATS.

    Once connected the client reconnects forever (every 0.5 s, buffering up to
    8 MiB of outgoing data meanwhile), so a NATS restart is ridden out; the *first*
    connection must succeed within ``timeout_s``.

    Args:
        url: server URL, e.g. ``nats://127.0.0.1:4222``.
        name: client name shown by the server (``<role>@<host>:<pid>``).
        timeout_s: seconds allowed for the first connection.
        options: extra nats-py ``connect`` options for the process's identity
            (``nkeys_seed_str``, ``inbox_prefix``, ``tls``), e.g. from
            :func:`sitemesh.topology.client_options`. Never logged: they hold secrets.

    Returns:
        A connected client; close it with ``await nc.drain()``.

    Raises:
        BusConnectionError: not connected within ``timeout_s``; names ``url`` without
            its credentials (:func:`redact_url`), as every log line here does.
    """
    nc = Client()
    last_error: list[BaseException] = []
    shown = redact_url(url)

    async def on_error(exc: Exception) -> None:
        last_error[:] = [exc]
        log.warning("nats %s: %s", shown, redact_url(str(exc)))

    async def on_disconnected() -> None:
        log.info("nats %s: disconnected", shown)

    async def on_reconnected() -> None:
        log.info("nats %s: reconnected", shown)

    try:
        await asyncio.wait_for(
            nc.connect(
                servers=[url],
                name=name,
                connect_timeout=max(1, min(int(timeout_s), 2)),
                allow_reconnect=True,
                max_reconnect_attempts=-1,
                reconnect_time_wait=0.5,  # type: ignore[arg-type]  # nats-py annotates int
                ping_interval=10,
                max_outstanding_pings=3,
                pending_size=8 * 1024 * 1024,
                error_cb=on_error,
                disconnected_cb=on_disconnected,
                reconnected_cb=on_reconnected,
                **dict(options or {}),
            ),
            timeout_s,
        )
    except (TimeoutError, OSError, nats.errors.Error) as exc:
        with contextlib.suppress(Exception):
            await nc.close()
        cause = last_error[0] if last_error else exc
        reason = redact_url(str(cause) or "timed out")
        raise BusConnectionError(
            shown, f"{type(cause).__name__}: {reason} (after {timeout_s}s)"
        ) from exc
    return nc
