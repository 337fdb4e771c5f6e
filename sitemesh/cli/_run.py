"""Bodies of ``sitemesh edge`` and ``sitemesh publish``."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Sequence
from pathlib import Path

from rich.console import Console

from ..bus import Subjects, connect, provision
from ..config import Settings
from ..edge_node import SITE_ROLES, Supervisor, child_env, process_environ
from ._nats import nats_url
from ._publish import prepare, publish


def site_roles(replicas: int) -> list[str]:
    """The processes of a site: one recorder and router, ``replicas`` per agent role."""
    roles: list[str] = []
    for role in SITE_ROLES:
        roles.extend([role] * (1 if role in ("recorder", "router") else replicas))
    return roles


def on_url(settings: Settings, url: str) -> Settings:
    """``settings`` for a child process: NATS at ``url``, state dir made absolute."""
    return settings.model_copy(
        update={
            "nats": settings.nats.model_copy(update={"url": url}),
            "state_dir": settings.state_dir.resolve(),
        }
    )


def site_supervisor(settings: Settings, url: str, roles: list[str]) -> Supervisor:
    """The supervisor of ``settings.site``'s worker processes, joining NATS at ``url``."""
    return Supervisor(
        settings.site,
        roles,
        env=child_env(process_environ(), on_url(settings, url).to_env()),
        log_dir=settings.state_dir / "logs",
        graceful_timeout_s=settings.bus.graceful_timeout_s,
    )


async def run_edge(settings: Settings, console: Console, *, replicas: int = 1) -> int:
    """Run a site until SIGTERM/SIGINT; returns the exit code."""
    async with nats_url(settings, console) as url:
        nc = await connect(url, name=f"sitemesh-edge-{settings.site}", timeout_s=5)
        await provision(nc.jetstream(), Subjects(settings.site), settings.bus)
        await nc.drain()
        sup = site_supervisor(settings, url, site_roles(replicas))
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        async with sup:
            console.print(f"site [bold]{settings.site}[/bold] running at {url}: {sup.pids}")
            console.print(f"logs in {settings.state_dir / 'logs'}; Ctrl-C to stop")
            await stop.wait()
            console.print("stopping workers (finishing in-flight work)...")
    return 0


async def run_publish(
    settings: Settings, console: Console, files: Sequence[Path], prefix: str, raw_kind: str | None
) -> int:
    """Publish tasks from ``files``; prints one task id per line."""
    tasks = prepare(files, prefix=prefix, raw_kind=raw_kind)
    async with nats_url(settings, console) as url:
        from ..edge_node._identity import nats_options

        nc = await connect(
            url,
            name="sitemesh-publish",
            timeout_s=settings.nats.connect_timeout_s,
            options=nats_options(settings.nats, "client"),
        )
        try:
            if not settings.nats.has_identity:
                await provision(nc.jetstream(), Subjects(settings.site), settings.bus)
            done = await publish(nc.jetstream(), settings.site, tasks)
        finally:
            await nc.drain()
    dup = sum(1 for d in done if d.duplicate)
    for d in done:
        console.print(d.task_id, highlight=False, soft_wrap=True)
    console.print(
        f"[dim]published {len(done)} tasks to site {settings.site}"
        + (f" ({dup} already stored: deduplicated)" if dup else "")
        + "[/dim]"
    )
    await asyncio.sleep(0)
    return 0


async def run_policy(
    settings: Settings, console: Console, rules_text: str | None, site: str | None
) -> int:
    """Show the policy in force, or validate and publish ``rules_text`` to the KV bucket."""
    from ..policy import PolicyStore

    async with nats_url(settings, console) as url:
        nc = await connect(url, name="sitemesh-policy", timeout_s=settings.nats.connect_timeout_s)
        try:
            store = PolicyStore(nc.jetstream())
            if rules_text is not None:
                version = await store.publish(rules_text, site=site)
                console.print(
                    f"published policy {version} ({'site ' + site if site else 'all sites'})"
                )
                return 0
            current = await store.current(site or settings.site)
            console.print(
                f"policy {current.version} ({current.label}), {len(current.rules)} rules:"
            )
            for rule in current.rules:
                console.print(f"  {rule.id:<40} {rule.action}", highlight=False)
            return 0
        finally:
            await nc.drain()
