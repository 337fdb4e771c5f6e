"""The agent API: a role, a typed output, one async ``handle``, no bus code inside.

```python
class Sentiment(msgspec.Struct, frozen=True, kw_only=True, tag="sentiment.v1"):
    label: str
    score: float

class SentimentAgent(Agent):
    role = "sentiment"
    output = Sentiment
    accepts = (SupportTicket,)

    async def handle(self, item: WorkItem, ctx: AgentContext) -> Sentiment:
        return Sentiment(label="negative", score=0.9)
```

or, for a function, ``@agent(role="sentiment", output=Sentiment)``. The runtime
(:mod:`sitemesh.runtime`) owns acking, retries, dead letters, tracing and
publishing; it checks that the task is one the agent accepts and that the output is
of the declared type. Errors go through :mod:`sitemesh.errors`:
:class:`~sitemesh.errors.PermanentError` dead-letters the message with its reason,
:class:`~sitemesh.errors.TransientError` redelivers it with backoff.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

import msgspec

from ..schemas import DataClass, Task, WorkItem, Zone

if TYPE_CHECKING:
    from nats.js import JetStreamContext

    from ..bus import SiteArtifacts
    from ..config import Settings
    from ..models import ModelClient
    from ..tools import ToolCalls, ToolRegistry
    from ._kb import KnowledgeBase

AgentOutput = msgspec.Struct
"""What a role produces: any tagged msgspec Struct (``tag="<type>.v<N>"``); the last
step of a workflow returns a :class:`~sitemesh.schemas.FinalAnswer`."""

OutT = TypeVar("OutT", bound=msgspec.Struct)


class AgentResources:
    """What a process offers its agents, built once per process by the runtime.

    Heavy things load on first use: :attr:`models` (``None`` when no model endpoint
    is configured: use your deterministic fallback and say so), :attr:`tools` (the
    site's tool registry; ``None`` when no tool is configured) and :attr:`knowledge`
    (the site's knowledge base).

    Args:
        site: the site the process serves.
        settings: the process settings (``None`` in unit tests and replays).
        models: builds the model client on first use (the runtime passes one that
            reads ``settings.models``); ``None``: no models.
        js: the process's JetStream context on its site (``None`` in unit tests and
            replays), for :meth:`artifacts`.
        tools: builds the tool registry on first use (the runtime passes one that
            reads ``settings.tools``); ``None``: no tools.
    """

    def __init__(
        self,
        site: str,
        settings: Settings | None = None,
        *,
        models: Callable[[], ModelClient | None] | None = None,
        js: JetStreamContext | None = None,
        tools: Callable[[], ToolRegistry | None] | None = None,
    ) -> None:
        self.site = site
        self.settings = settings
        self._models_factory = models
        self._models: ModelClient | None = None
        self._models_built = False
        self._tools_factory = tools
        self._tools: ToolRegistry | None = None
        self._tools_built = False
        self.js = js
        self._artifacts: SiteArtifacts | None = None
        self.followers: list[Callable[[str], Awaitable[None]]] = []
        """Callbacks the runtime calls with the name of every artifact put or deleted
        in the site's bucket after setup (see :meth:`on_artifact_change`)."""

    async def artifacts(self) -> SiteArtifacts | None:
        """The site's artifact bucket (knowledge bases, triage examples), or ``None``
        when the process has no bus (unit tests, replays) or the bucket does not
        exist yet (nothing was added with ``sitemesh kb add`` / ``triage train
        --publish``)."""
        if self._artifacts is None and self.js is not None:
            from ..bus import ArtifactNotFound, SiteArtifacts

            try:
                self._artifacts = await SiteArtifacts.open(self.js, self.site)
            except ArtifactNotFound:
                return None
        return self._artifacts

    def on_artifact_change(self, callback: Callable[[str], Awaitable[None]]) -> None:
        """Have ``callback(name)`` called for each artifact (``kb/<name>``,
        ``triage/<name>``) put or deleted while the process runs, to reload it.

        Calls run one at a time, after :meth:`Agent.setup`; an exception is logged
        and the watch goes on (the agent keeps what it had loaded)."""
        self.followers.append(callback)

    @property
    def models(self) -> ModelClient | None:
        """The process's :class:`~sitemesh.models.ModelClient`, or ``None``."""
        if not self._models_built:
            self._models_built = True
            if self._models_factory is not None:
                self._models = self._models_factory()
        return self._models

    @property
    def tools(self) -> ToolRegistry | None:
        """The process's :class:`~sitemesh.tools.ToolRegistry` (built on first use; its
        servers start on their first call), or ``None``. Agents use ``ctx.tools``."""
        if not self._tools_built:
            self._tools_built = True
            if self._tools_factory is not None:
                self._tools = self._tools_factory()
        return self._tools

    @property
    def models_built(self) -> bool:
        """Whether :attr:`models` was built (a client exists whose health to report)."""
        return self._models is not None

    @property
    def tools_built(self) -> bool:
        """Whether :attr:`tools` was built (a registry exists to report or close)."""
        return self._tools is not None

    async def aclose(self) -> None:
        """Close what was built: the tool registry's MCP sessions. Safe to call twice."""
        if self._tools is not None:
            await self._tools.aclose()

    @property
    def knowledge(self) -> KnowledgeBase:
        """The site's knowledge base (loaded and indexed on first use)."""
        from ._kb import default_kb

        return default_kb()


@dataclass(frozen=True, slots=True)
class AgentContext:
    """What an agent may know and use beyond the work item.

    Attributes:
        site: the site the agent runs at.
        worker: ``<host>:<pid>`` of the process.
        num_delivered: 1 on the first delivery; agents must be idempotent anyway.
        step: the workflow step being run (``item.step``).
        resources: the process's shared resources (models, tools, knowledge).
        log: a logger named ``sitemesh.agent.<role>``; log no customer text.
        task_id: the task being handled (``item.envelope.task_id``).
        role: the role handling it.
    """

    site: str
    worker: str
    num_delivered: int = 1
    step: str = ""
    resources: AgentResources | None = None
    log: logging.Logger = field(default_factory=lambda: logging.getLogger("sitemesh.agent"))
    task_id: str = ""
    role: str = ""
    _tool_calls: ToolCalls | None = field(default=None, init=False, repr=False, compare=False)

    @property
    def models(self) -> ModelClient | None:
        """The model client (``None``: no model configured; fall back and say so)."""
        return self.resources.models if self.resources is not None else None

    @property
    def tools(self) -> ToolCalls | None:
        """The site's tools for this message (``None``: no tool is configured).

        One view per context: it fills in the task id, the step and each call's index
        (its idempotency key), so a redelivered step repeats no side effect; make the
        calls in a deterministic order. See :class:`sitemesh.tools.ToolCalls`.
        """
        if self._tool_calls is None:
            registry = self.resources.tools if self.resources is not None else None
            if registry is None:
                return None
            from ..tools import ToolCalls

            view = ToolCalls(registry, task_id=self.task_id, step=self.step, agent=self.role)
            object.__setattr__(self, "_tool_calls", view)  # frozen: cache the one view
        return self._tool_calls

    @property
    def tool_data_class(self) -> DataClass | None:
        """The most sensitive class of the tool results of this message (``None``: no
        tool was called). After the step the runtime raises the task's data class to it
        (``Envelope.data_class`` from the next step on), which keeps the task on site
        when it goes above the class the policy decided on."""
        return self._tool_calls.data_class if self._tool_calls is not None else None

    @property
    def knowledge(self) -> KnowledgeBase:
        """The site's knowledge base."""
        if self.resources is not None:
            return self.resources.knowledge
        from ._kb import default_kb

        return default_kb()


class Agent:
    """Base class of every agent role, built-in or yours.

    Class attributes to set:
        role: the role name, one subject token (``[a-z][a-z0-9_]*``, at most 32).
        output: the tagged Struct type :meth:`handle` returns.
        accepts: the task types it handles (``(SupportTicket,)``); ``None``: any.
        zones: where it may run: ``{"edge"}`` (default) or also ``"cloud"``.
        description: one line for ``sitemesh agents``.

    ``handle`` must be deterministic for the same input (so redeliveries and replays
    give the same output) and raise :class:`sitemesh.errors.PermanentError` for
    input it can never handle, :class:`sitemesh.errors.TransientError` for a
    dependency that is down. The constructor takes no arguments; load indexes or
    models in :meth:`setup`, which runs once before the first message.
    """

    role: ClassVar[str]
    output: ClassVar[type[msgspec.Struct]]
    accepts: ClassVar[tuple[type[Task], ...] | None] = None
    zones: ClassVar[frozenset[Zone]] = frozenset({"edge"})
    description: ClassVar[str] = ""

    async def setup(self, resources: AgentResources) -> None:
        """Load what :meth:`handle` needs (default: nothing). Runs once per process."""
        del resources

    async def handle(self, item: WorkItem, ctx: AgentContext) -> Any:
        """Compute this step's output for ``item`` (earlier outputs: ``item.output``)."""
        raise NotImplementedError

    def summarize(self, output: Any) -> str:
        """One PII-free line about ``output`` for the task's progress event."""
        return f"{type(output).__name__}"


Handle = Callable[[WorkItem, AgentContext], Awaitable[OutT]]


def agent(
    *,
    role: str,
    output: type[OutT],
    accepts: tuple[type[Task], ...] | None = None,
    zones: frozenset[Zone] | set[Zone] = frozenset({"edge"}),
    description: str = "",
) -> Callable[[Handle[OutT]], type[Agent]]:
    """Make an agent class from an async function ``(item, ctx) -> output``.

    ```python
    @agent(role="language", output=Language, accepts=(SupportTicket,))
    async def detect_language(item: WorkItem, ctx: AgentContext) -> Language: ...
    ```

    Returns:
        A decorator returning an :class:`Agent` subclass (register it like a class).
    """

    def wrap(fn: Handle[OutT]) -> type[Agent]:
        async def handle(self: Agent, item: WorkItem, ctx: AgentContext) -> OutT:
            return await fn(item, ctx)

        attrs: dict[str, Any] = {
            "role": role,
            "output": output,
            "accepts": accepts,
            "zones": frozenset(zones),
            "description": description or (fn.__doc__ or "").strip().split("\n")[0],
            "handle": handle,
            "__module__": fn.__module__,
            "__qualname__": fn.__qualname__,
            "__doc__": fn.__doc__,
        }
        return type(fn.__name__, (Agent,), attrs)

    return wrap
