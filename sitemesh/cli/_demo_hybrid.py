"""``sitemesh demo --sites eu1,us1``: the main job across the site boundary.

Runs the hub, the sites and their workers (:func:`hybrid_stack`), publishes the
demo policy (``examples/policy/hybrid-demo.toml``) live to every site's KV bucket,
splits the real tickets across the sites, approves the tasks a rule parked (with
``sitemesh approve``, as an operator would), and waits until every task has ended.
Meanwhile a client subscribed to ``>`` on the hub records everything that crosses;
at the end it is searched for every customer handle and e-mail address of the
published tickets. Exit 0 only if every task ended and nothing leaked.

The servers require per-role identities and TLS as with ``sitemesh up``; the demo's
site connections, ``sitemesh publish`` and ``sitemesh approve`` use the site's
``operator`` and ``client`` identities. The hub watcher alone logs in as the hub
account's administrator (:meth:`~sitemesh.topology.Topology.connect_hub`, inside this
process): no per-role identity may subscribe to ``>``, and the audit must see every
subject, the sourcing deliveries included.
"""

from __future__ import annotations

import asyncio
import re
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import msgspec
from nats.js.api import ConsumerConfig, DeliverPolicy
from rich.console import Console
from rich.table import Table

from ..config import Settings
from ..edge_node import child_env, process_environ
from ..policy import PolicyStore
from ..runtime import connect
from ..schemas import (
    EVENT_DECODER,
    ApprovalRequested,
    FinalAnswer,
    PolicyDecision,
    SupportTicket,
    TaskFailed,
    decode,
    utcnow,
)
from ._demo import DEFAULT_DATA, _pct, _sh_publish
from ._hybrid import hybrid_stack

_EMAIL = re.compile(r"[\w.+-]+@[\w-]+\.[\w.]+")
DEMO_POLICY = Path(__file__).resolve().parents[2] / "examples" / "policy" / "hybrid-demo.toml"


def _token_re(value: str) -> re.Pattern[str]:
    """``value`` as a whole token (a handle ``Chase`` is not in ``@ChaseSupport``)."""
    return re.compile(rf"(?<!\w){re.escape(value)}(?!\w)")


def _secrets(tickets: list[SupportTicket]) -> set[str]:
    """Identifiers that must never reach the hub: customer handles, e-mail addresses."""
    out: set[str] = set()
    for t in tickets:
        if t.customer and len(t.customer) >= 4:
            out.add(t.customer)
        out.update(_EMAIL.findall(t.body))
    return out


async def _approve(settings: Settings, task_id: str) -> int:
    env = child_env(process_environ(), settings.to_env())
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "sitemesh", "approve", task_id, "--by", "demo-operator",
        "--reason", "reviewed in the demo", env=env,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    return await proc.wait()


async def run_hybrid_demo(
    settings: Settings,
    console: Console,
    sites: list[str],
    *,
    timeout_s: float = 600.0,
    insecure: bool = False,
) -> int:
    """Run the demo across the boundary; returns the exit code (0: every task ended
    and nothing leaked). ``insecure``: the servers without identities and TLS (the
    shared account passwords, with a warning; see :func:`hybrid_stack`)."""
    data = DEFAULT_DATA
    prefix = f"hy-{utcnow().strftime('%Y%m%dT%H%M%S')}-"
    lines = [ln for ln in (data / "tickets.jsonl").read_bytes().splitlines() if ln.strip()]
    tickets = [msgspec.json.decode(ln, type=SupportTicket) for ln in lines]
    secrets = _secrets(tickets)
    policy_text = DEMO_POLICY.read_text("utf-8")
    crossed: list[bytes] = []
    decisions: dict[str, PolicyDecision] = {}
    answers: dict[str, FinalAnswer] = {}
    failed: dict[str, TaskFailed] = {}
    parked: dict[str, str] = {}
    async with hybrid_stack(settings, sites, console, insecure=insecure) as stack:
        hub_nc = await stack.topo.connect_hub("demo-hub-watch")  # the audit: every subject

        async def on_hub(msg: Any) -> None:
            crossed.append(msg.subject.encode() + b" " + msg.data)

        await hub_nc.subscribe(">", cb=on_hub)
        site_ncs = {}
        for site, s in stack.sites.items():
            nc = await connect(s, "operator", name=f"demo-{site}")
            site_ncs[site] = nc
            version = await PolicyStore(nc.jetstream()).publish(policy_text)
            js = nc.jetstream()

            async def on_event(msg: Any, site: str = site) -> None:
                ev = decode(msg.data, EVENT_DECODER)
                if not ev.task_id.startswith(prefix):
                    return
                match ev:
                    case PolicyDecision():
                        decisions[ev.task_id] = ev
                    case FinalAnswer():
                        answers[ev.task_id] = ev
                    case TaskFailed():
                        failed[ev.task_id] = ev
                    case ApprovalRequested():
                        parked[ev.task_id] = site

            await js.subscribe(
                f"sm.v1.event.{site}.>", cb=on_event, ordered_consumer=True,
                config=ConsumerConfig(deliver_policy=DeliverPolicy.NEW),
            )  # fmt: skip
        console.print(f"hub and sites {', '.join(sites)} up; policy {version} published to "
                      f"every site's KV bucket")  # fmt: skip

        tmp = settings.state_dir.resolve() / "demo-input"
        tmp.mkdir(parents=True, exist_ok=True)
        valid: dict[str, str] = {}
        for i, site in enumerate(sites):
            part = tmp / f"tickets-{site}.jsonl"
            part.write_bytes(b"\n".join(lines[i :: len(sites)]) + b"\n")
            for tid in await _sh_publish(stack.sites[site], stack.sites[site].nats.url or "",
                                         [part], prefix):  # fmt: skip
                valid[tid] = site
        console.print(f"published {len(valid)} real tickets across {len(sites)} sites")

        approved: set[str] = set()
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            for tid, site in list(parked.items()):
                if tid not in approved and await _approve(stack.sites[site], tid) == 0:
                    approved.add(tid)
            if len(answers.keys() | failed.keys()) >= len(valid):
                break
            await asyncio.sleep(0.5)
        await asyncio.sleep(1.0)  # let the last hub messages arrive
        await hub_nc.drain()
        for nc in site_ncs.values():
            await nc.drain()

    leak_file = settings.state_dir.resolve() / "hub-leaks.txt"
    return _summary(
        console, valid, decisions, answers, failed, approved, crossed, secrets, leak_file
    )


def _summary(
    console: Console, valid: dict[str, str], decisions: dict[str, PolicyDecision],
    answers: dict[str, FinalAnswer], failed: dict[str, TaskFailed], approved: set[str],
    crossed: list[bytes], secrets: set[str], leak_file: Path | None = None,
) -> int:  # fmt: skip
    actions = Counter(d.action for d in decisions.values())
    # a denied task is dead-lettered by the router before its decision is published
    actions["deny"] += sum(1 for f in failed.values() if f.error_class == "PolicyDenied")
    routes = Counter(a.route for a in answers.values())
    t = Table(title="where the work went (policy decisions)")
    for col in ("action", "tasks"):
        t.add_column(col)
    for action in ("pin_edge", "allow_cloud", "require_approval", "deny"):
        t.add_row(action, str(actions.get(action, 0)))
    console.print(t)
    errors = Counter(f.error_class for f in failed.values())
    console.print(
        f"answered: {len(answers)} (on site {routes.get('edge', 0)}, by the cloud "
        f"anonymised and re-identified on site {routes.get('cloud', 0)}); approved by an "
        f"operator: {len(approved)}; ended without answer: {dict(errors)}"
    )
    lat = {r: [(a.answered_at - a.submitted_at).total_seconds() * 1000
               for a in answers.values() if a.route == r] for r in ("edge", "cloud")}  # fmt: skip
    for route, values in lat.items():
        if values:
            console.print(f"latency {route}: p50 {_pct(values, 50):.0f} ms, "
                          f"p95 {_pct(values, 95):.0f} ms over {len(values)} tasks")  # fmt: skip
    blob = b"\n".join(crossed).decode("utf-8", "replace")
    leaked = sorted(s for s in secrets if _token_re(s).search(blob))
    console.print(
        f"hub saw {len(crossed)} messages; customer identifiers found in them: {len(leaked)} "
        f"of {len(secrets)} checked"
    )
    missing = sorted(set(valid) - answers.keys() - failed.keys())
    unexplained = [t for t, f in failed.items() if f.error_class not in ("PolicyDenied",)]
    ok = not missing and not leaked
    if missing:
        console.print(f"[red]not ended: {missing[:10]}[/red]")
    if leaked:
        console.print(f"[red]LEAKED to the hub: {len(leaked)} identifiers[/red]")
        if leak_file is not None:  # for the operator only: never printed
            with leak_file.open("w", encoding="utf-8") as fh:
                for secret in leaked:
                    for msg in crossed:
                        if _token_re(secret).search(msg.decode("utf-8", "replace")):
                            fh.write(f"{secret!r} in {msg[:2000]!r}\n")
            console.print(f"contexts written to {leak_file} (contains personal data)")
    if unexplained:
        other = Counter(failed[t].error_class for t in unexplained)
        console.print(f"[yellow]failed for other reasons: {dict(other)}[/yellow]")
    console.print("[bold green]demo OK[/bold green]" if ok else "[bold red]demo FAILED[/bold red]")
    return 0 if ok else 1
