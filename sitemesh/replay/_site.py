"""A site's router and agents as in-process workers on any subject map.

The replay sandbox runs the workflows this way on ``Subjects.sandbox(site, id)``;
tests use it on a live ``Subjects(site)`` to record a run without OS processes.
The handlers are the production ones (:class:`sitemesh.edge_node.Ingress`,
:func:`sitemesh.runtime.step_handler`); only the process boundary is missing.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Mapping
from types import TracebackType
from typing import Any, Self

from nats.js import JetStreamContext

from ..agents import Agent, AgentResources, Registry
from ..bus import HDR_TASK_ID, Subjects, Worker, provision
from ..config import BusSettings
from ..edge_node import BatchingDecider, Ingress, task_decoder, task_id_of
from ..policy import PiiScanner, Policy, PolicyRouter
from ..runtime import step_handler
from ..schemas import WORK_DECODER, WorkItem, decode
from ..workflows import Workflows


def _work_task_id(data: bytes, headers: Mapping[str, str]) -> str | None:
    del data
    return headers.get(HDR_TASK_ID)


def _decode_work(data: bytes) -> WorkItem:
    return decode(data, WORK_DECODER)


async def build_agents(
    registry: Registry | None = None,
    roles: Iterable[str] | None = None,
    *,
    resources: AgentResources | None = None,
) -> dict[str, Agent]:
    """The agents of ``roles`` (default: every registered one), set up with no model
    client (replays serve recorded model calls, see ``sitemesh.replay``).

    Args:
        registry: where the roles come from; default: the installed agents.
        roles: which roles to build.
        resources: what their ``setup`` gets (the replay's tools,
            :meth:`ReplayTools.resources`); default: nothing (no models, no tools).
    """
    registry = registry if registry is not None else Registry.load()
    agents: dict[str, Agent] = {}
    for role in roles if roles is not None else registry.roles:
        agent = registry.spec(role).create()
        await agent.setup(resources if resources is not None else AgentResources(""))
        agents[role] = agent
    return agents


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
        agents: role -> agent (set up); default: :func:`build_agents` for the roles
            the workflows name.
        workflows: the workflows the router starts; default: the bundled ones.
        registry: the agent registry; default: the installed agents.
        backend_healthy: the ``backend_healthy`` policy fact (``True`` only where
            a hub is linked; the sandbox never forwards to one).
        resources: what the agents reach through their context (``ctx.tools``: the
            replay's tools, :meth:`ReplayTools.resources`); ``None``: no models, no
            tools.
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
        workflows: Workflows | None = None,
        registry: Registry | None = None,
        resources: AgentResources | None = None,
    ) -> None:
        self._js = js
        self.resources = resources
        self.workflows = workflows if workflows is not None else Workflows.load()
        self.registry = registry if registry is not None else Registry.load()
        self.subjects = subjects
        self._bus = bus
        self._agents = dict(agents) if agents is not None else None
        self.router = PolicyRouter(policy, scanner, backend_healthy=lambda: backend_healthy)
        self._decider: BatchingDecider | None = None
        self._stack: contextlib.AsyncExitStack | None = None
        self.workers: list[Worker[Any]] = []

    def _build(self, agents: Mapping[str, Agent]) -> list[Worker[Any]]:
        s, bus = self.subjects, self._bus
        docs = self.workflows
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
                handler=Ingress(s, self._decider, lambda: docs),
                settings=bus,
                task_id_of=task_id_of,
                subjects=s,
            )
        ]
        for role, agent in agents.items():
            stream, durable, _ = s.consumer_for(role)
            workers.append(
                Worker(
                    self._js,
                    site=s.site,
                    role=role,
                    stream=stream,
                    durable=durable,
                    decoder=_decode_work,
                    handler=step_handler(
                        self.registry.spec(role), s, agent=agent, resources=self.resources
                    ),
                    settings=bus,
                    task_id_of=_work_task_id,
                    subjects=s,
                )
            )
        return workers

    async def __aenter__(self) -> Self:
        """Provision the map and start every worker."""
        self.router.scanner.load()
        roles = [r for r in self.workflows.roles if r in self.registry]
        agents = self._agents
        if agents is None:
            agents = await build_agents(self.registry, roles, resources=self.resources)
        await provision(self._js, self.subjects, self._bus, roles=("router", *agents))
        self.workers = self._build(agents)
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
