"""Which NATS server a command talks to: the configured URL or the embedded one."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from rich.console import Console

from ..bus import EmbeddedNats
from ..config import Settings


@contextlib.asynccontextmanager
async def nats_url(settings: Settings, console: Console) -> AsyncIterator[str]:
    """Yield the NATS URL to use.

    With ``SITEMESH_NATS_URL`` set, that URL. Otherwise the embedded server under
    ``<state_dir>``: reused when one is already running there, else started (and
    stopped again on exit). Says which binary runs and why it was chosen.

    Raises:
        NatsServerError: no usable ``nats-server`` binary, or it failed to start.
    """
    if settings.nats.url:
        yield settings.nats.url
        return
    async with EmbeddedNats(settings.state_dir, settings.nats.server_bin) as embedded:
        if embedded.server is not None:
            b = embedded.server.binary
            console.print(
                f"[dim]started nats-server v{b.version_str} ({b.origin}: {b.path}) "
                f"at {embedded.url}, store {settings.state_dir / 'nats'}[/dim]"
            )
        else:
            console.print(
                f"[dim]using the embedded nats-server already running at {embedded.url}[/dim]"
            )
        yield embedded.url


def running_nats_url(settings: Settings) -> str | None:
    """The NATS URL to *inspect*: ``SITEMESH_NATS_URL``, else the embedded server if
    one is running under ``<state_dir>``; ``None`` otherwise (nothing is started)."""
    if settings.nats.url:
        return settings.nats.url
    return EmbeddedNats(settings.state_dir, settings.nats.server_bin).live_url()
