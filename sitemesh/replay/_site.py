"""A site's router and five agents as in-process workers on any subject map.

The replay sandbox runs the pipeline this way on ``Subjects.sandbox(site, id)``;
tests use it on a live ``Subjects(site)`` to record a run without OS processes.
The handlers are the production ones (:class:`sitemesh.edge_node.Ingress`,
:func:`sitemesh.edge_node.agent_handler`); only the process boundary is missing.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from types import TracebackType
from typing import Any, Self

from nats.js import JetStreamContext

from ..agents import AGENT_ROLES, Agent, build_agent
from ..bus import HDR_TASK_ID, Subjects, Worker, provision
from ..config import BusSettings
from ..edge_node import BatchingDecider, Ingress, agent_handler, task_decoder, task_id_of
from ..policy import PiiScanner, Policy, PolicyRouter
from ..schemas import WORK_DECODER, WorkItem, decode


def _work_task_id(data: bytes, headers: Mapping[str, str]) -> str | None:
    del data
    return headers.get(HDR_TASK_ID)


def _decode_work(data: bytes) -> WorkItem:
    return decode(data, WORK_DECODER)


def build_agents() -> dict[str, Agent]:
    """The five deterministic agents, loaded (knowledge base, telemetry, analyzer)."""
    return {role: build_agent(role) for role in AGENT_ROLES}


class InProcessSite:
    """Router and agent workers of one subject map, running in this process.

    ``async with InProcessSite(...)`` provisions the map's streams and consumers and
    starts the workers; leaving the block shuts them down (in-flight work finishes).

    Args:
        js: a JetStream context.
        subjects: the subject map to serve (live or sandbox).
        bus: worker settings.
        policy: the rules the router applies.
        scanner: a PII scanner (loaded once, shared: loading Presidio is slow).
        agents: role -> agent; default :func:`build_agents`.
        backend_healthy: the ``backend_healthy`` policy fact (``True`` only where
            a hub is linked; the sandbox never forwards to one).
    """

    def __init__(
        self,
        js: JetStreamContext,
        subjects: Subjects,
        bus: BusSettings,
        *,
        policy: Policy,
        scanner: PiiScanner,
        agents: Mapping[str, Agent] | None = None,
        backend_healthy: bool = False,
    ) -> None:
        self._js = js
        self.subjects = subjects
        self._bus = bus
        self._agents = dict(agents) if agents is not None else None
        self.router = PolicyRouter(policy, scanner, backend_healthy=lambda: backend_healthy)
        self._decider: BatchingDecider | None = None
        self._stack: contextlib.AsyncExitStack | None = None
        self.workers: list[Worker[Any]] = []

    def _build(self) -> list[Worker[Any]]:
        s, bus = self.subjects, self._bus
        agents = self._agents if self._agents is not None else build_agents()
        self._decider = BatchingDecider(self.router, max_batch=bus.batch)
        stream, durable, _ = s.consumer_for("router")
        workers: list[Worker[Any]] = [
            Worker(
                self._js,
                site=s.site,
                role="router",
                stream=stream,
                durable=durable,
                decoder=task_decoder(bus.max_task_bytes),
                handler=Ingress(s, self._decider),
                settings=bus,
                task_id_of=task_id_of,
                subjects=s,
            )
        ]
        for role in AGENT_ROLES:
            stream, durable, _ = s.consumer_for(role)
            workers.append(
                Worker(
                    self._js,
                    site=s.site,
                    role=role,
                    stream=stream,
                    durable=durable,
                    decoder=_decode_work,
                    handler=agent_handler(agents[role], s),
                    settings=bus,
                    task_id_of=_work_task_id,
                    subjects=s,
                )
            )
        return workers

    async def __aenter__(self) -> Self:
        """Provision the map and start every worker."""
        self.router.scanner.load()
        await provision(self._js, self.subjects, self._bus)
        self.workers = self._build()
        async with contextlib.AsyncExitStack() as stack:
            for worker in self.workers:
                await stack.enter_async_context(worker)
            self._stack = stack.pop_all()
        return self

    async def shutdown(self) -> None:
        """Stop the workers after their in-flight messages. Safe to call twice."""
        stack, self._stack = self._stack, None
        if stack is not None:
            await stack.aclose()
        if self._decider is not None:
            self._decider.close()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.shutdown()
