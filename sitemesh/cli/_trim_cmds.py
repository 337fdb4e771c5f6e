"""``sitemesh trim``: remove the site's processed stream history (what ``edge`` does
every few seconds), for deployments that run their workers without ``edge``."""

from __future__ import annotations

import asyncio

from rich.console import Console

from ..bus import TRIM_INTERVAL_S, Subjects, keep_streams, redact_url, trim_processed
from ..config import Settings
from ..errors import ConfigError
from ..runtime import connect
from ._nats import running_nats_url


async def run_trim(settings: Settings, console: Console, *, watch: bool = False) -> int:
    """Trim once and print what each work stream lost, or with ``watch`` keep trimming
    every :data:`~sitemesh.bus.TRIM_INTERVAL_S` seconds until interrupted.

    Returns:
        The exit code: 0.

    Raises:
        ConfigError: no NATS server to trim (``nats.url``).
        BusConnectionError: NATS is unreachable.
    """
    url = running_nats_url(settings)
    if url is None:
        raise ConfigError(
            "nats.url", "no NATS server running here; set SITEMESH_NATS_URL to the site's server"
        )
    nc = await connect(settings, "operator", url=url, name="sitemesh-trim")
    subjects = Subjects(settings.site)
    try:
        if watch:
            console.print(
                f"trimming processed history at {redact_url(url)} every "
                f"{TRIM_INTERVAL_S:.0f} s; Ctrl-C to stop"
            )
            await keep_streams(nc, subjects, settings.bus)
        for t in await trim_processed(nc, subjects, settings.bus):
            what = f"{t.purged:,} removed below seq {t.upto} ({t.reason})" if t.purged else "kept"
            console.print(f"{t.stream}: processed up to seq {t.floor}; {what}", highlight=False)
    except asyncio.CancelledError:
        pass
    finally:
        await nc.drain()
    return 0
