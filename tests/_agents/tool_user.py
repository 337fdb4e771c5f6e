"""An agent that uses tools, written the way a user writes one (``ctx.tools`` only).

Registered by import path (``tests._agents.tool_user:NoteAgent``) in the tool replay
tests, with the stdio test server configured as tool server ``t``
(``tests._mcp.stdio_server``): per ticket it echoes the title (a read), creates a
note for the tenant (a side effect, once per idempotency key at the server) and
answers with both. A ticket whose body says ``flaky`` fails its first delivery
*after* the two calls (a transient error), so the step is redelivered and makes the
same calls again.
"""

from __future__ import annotations

from sitemesh.agents import Agent, AgentContext
from sitemesh.errors import PermanentError, TransientError
from sitemesh.schemas import FinalAnswer, SupportTicket, WorkItem

ROLE = "noter"


class NoteAgent(Agent):
    """Echoes the ticket's title through a tool, notes the ticket (a side effect), answers."""

    role = ROLE
    output = FinalAnswer
    accepts = (SupportTicket,)

    async def handle(self, item: WorkItem, ctx: AgentContext) -> FinalAnswer:
        assert isinstance(item.task, SupportTicket)
        tools = ctx.tools
        if tools is None:
            raise PermanentError("no tool server is configured")
        ticket = item.task
        echoed = await tools.call("t.echo", {"text": ticket.title or "untitled"})
        note = await tools.call(
            "t.create_note", {"customer": ticket.tenant or "unknown", "text": "called back"}
        )
        if "flaky" in ticket.body and ctx.num_delivered == 1:
            raise TransientError("the first delivery of a flaky ticket fails after its calls")
        env = item.envelope
        return FinalAnswer(
            task_id=env.task_id,
            site=ctx.site,
            outcome="resolved",
            customer_message=f"{echoed.text}; {note.text}",
            reasons=[f"{tools.calls} tool calls"],
            data_class=env.data_class,
            submitted_at=env.submitted_at,
        )

    def summarize(self, output: FinalAnswer) -> str:
        return f"answered after {output.reasons[0]}"
