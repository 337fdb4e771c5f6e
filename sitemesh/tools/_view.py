"""The tools of one message, as an agent sees them: ``ctx.tools``.

```python
async def handle(self, item: WorkItem, ctx: AgentContext) -> Plan:
    tools = ctx.tools
    if tools is not None:
        found = await tools.call("crm.lookup_customer", {"email": ...})
        data_class = found.raises(item.envelope.data_class)
```

The view fills in the task id, the step and the call index itself: the n-th call of a
step (counted from 0, in the order the agent *starts* them) always gets the same
idempotency key, however often the step is delivered or replayed. An agent must
therefore make its tool calls in a deterministic order.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..schemas import DataClass
    from ._registry import ToolRegistry
    from ._types import ToolInfo, ToolResult

__all__ = ["ToolCalls"]


class ToolCalls:
    """A per-message view of the process's :class:`~sitemesh.tools.ToolRegistry`.

    Args:
        registry: the process's registry.
        task_id: the task being handled.
        step: the workflow step being run.
        agent: the role running it (recorded with each call).
    """

    def __init__(self, registry: ToolRegistry, *, task_id: str, step: str, agent: str = "") -> None:
        self.registry = registry
        self.task_id = task_id
        self.step = step
        self.agent = agent
        self._next = 0
        self._data_class: DataClass | None = None

    @property
    def calls(self) -> int:
        """Calls started through this view so far."""
        return self._next

    @property
    def data_class(self) -> DataClass | None:
        """The most sensitive class of the results returned through this view so far
        (``None``: none yet). The runtime raises the task's class to it after the step
        (``Envelope.data_class`` of the next step; see ``docs/tools.md``)."""
        return self._data_class

    async def reidentify(self, text: str) -> str:
        """``text`` with this task's placeholders (``<PERSON_1>``) restored from the
        site's vault: for what the site itself sends (the final answer), never for
        anything that leaves the site.

        Args:
            text: e.g. a field of a result called with ``pseudonymise=True``.

        Returns:
            The text with every placeholder of the task replaced by its value (text
            without placeholders comes back unchanged).

        Raises:
            ToolUnavailable: the registry has no pseudonymiser (no vault) to read.
            VaultKeyError: the task's mapping cannot be decrypted.
        """
        if "<" not in text:
            return text
        pseudonymizer = self.registry.pseudonymizer()
        if pseudonymizer is None:
            from ._errors import ToolUnavailable

            raise ToolUnavailable(
                "no pseudonymiser (site vault) to re-identify with", reason="no vault"
            )
        return await pseudonymizer.reidentify(self.task_id, text)

    async def call(
        self,
        tool: str,
        arguments: Mapping[str, Any] | None = None,
        *,
        pseudonymise: bool = False,
    ) -> ToolResult:
        """Call ``tool`` as this step's next call (:meth:`ToolRegistry.call`).

        Args:
            tool: ``<server>.<tool>`` (``<server>`` alone when it offers one tool).
            arguments: its arguments (validated against its input schema).
            pseudonymise: replace personal data in the response by the task's
                placeholders (the content may reach a cloud step).

        Returns:
            The scanned result; raise the task's data class with
            :meth:`ToolResult.raises`.

        Raises:
            ToolUnavailable: the tool is down, timed out, rate limited or its breaker
                is open (transient: degrade, saying why, or let the step be redelivered).
            InvalidToolArguments | UnknownTool | ToolResponseUnscanned | ToolReplayMiss:
                permanent (see :meth:`ToolRegistry.call`).
        """
        index = self._next
        self._next += 1
        result = await self.registry.call(
            tool,
            arguments,
            task_id=self.task_id,
            step=self.step,
            call_index=index,
            agent=self.agent,
            pseudonymise=pseudonymise,
        )
        self._data_class = (
            result.data_class if self._data_class is None else result.raises(self._data_class)
        )
        return result

    async def list(self, server: str | None = None) -> list[ToolInfo]:
        """The configured tools with their input schemas (connects the servers):
        :meth:`ToolRegistry.list_tools`.

        Args:
            server: one configured server's name, to list only its tools (and start
                only that server); ``None``: every configured server's.

        Returns:
            The tools, by server in configuration order, then by name.

        Raises:
            UnknownTool: ``server`` is not configured.
            ToolUnavailable: a server could not be reached or listed (names it).
            ToolReplayMiss: a strict replay (listings are not recorded, and no server
                is started).
        """
        return await self.registry.list_tools(server)

    async def describe(self, tool: str) -> ToolInfo:
        """One tool's description and input schema (e.g. for a model's function
        calling): :meth:`ToolRegistry.describe`.

        Raises:
            UnknownTool: no such server or tool.
            ToolUnavailable: its server could not be reached.
            ToolReplayMiss: a strict replay (no server is started).
        """
        return await self.registry.describe(tool)
