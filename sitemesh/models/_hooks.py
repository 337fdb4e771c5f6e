"""The budget hook: token/cost reservations around each model call.

The client calls, per model it tries::

    reservation = await budget.reserve(call_key, tenant, agent, task_id,
                                       est_tokens_in, est_tokens_out, model)
    ...call...
    cost_usd = await budget.settle(reservation, usage)   # on success
    await budget.release(reservation)                   # on failure

``reserve`` refuses a model by raising any :class:`sitemesh.errors.SitemeshError`
(e.g. a ``BudgetExceeded``): the client records ``budget_denied`` and moves to the
next model of the chain (typically a cheaper site model). ``call_key`` is
deterministic per (task, agent, prompt, model) and is recorded with the call; the
ledger (``sitemesh.models._budget``) gives every reservation its own id, so two
concurrent identical calls are each held and charged, and a crashed caller's hold
expires (``hold_ttl``) rather than being reused.
"""

from __future__ import annotations

from typing import Any, Protocol

from ._types import Usage


class Budget(Protocol):
    """Token/cost budgets per tenant, agent and task."""

    async def reserve(
        self,
        call_key: str,
        tenant: str,
        agent: str,
        task_id: str,
        est_tokens_in: int,
        est_tokens_out: int,
        model: str,
    ) -> Any:
        """Reserve the estimated tokens of one call before it is made.

        Args:
            call_key: deterministic key of (task, agent, prompt, model), 32 hex digits.
            tenant: the task's tenant.
            agent: the calling role.
            task_id: the task.
            est_tokens_in: estimated prompt tokens (characters / 4, rounded up).
            est_tokens_out: the call's output cap in tokens.
            model: ``<provider>/<model>``.

        Returns:
            An opaque reservation handed back to :meth:`settle` / :meth:`release`.

        Raises:
            sitemesh.errors.SitemeshError: the budget refuses this model.
        """
        ...

    async def settle(self, reservation: Any, usage: Usage) -> float | None:
        """Replace the reservation by the actual usage; return the cost in USD if known."""
        ...

    async def release(self, reservation: Any) -> None:
        """Drop a reservation whose call failed."""
        ...


class NoBudget:
    """The default hook: no limits, no prices."""

    async def reserve(
        self,
        call_key: str,
        tenant: str,
        agent: str,
        task_id: str,
        est_tokens_in: int,
        est_tokens_out: int,
        model: str,
    ) -> Any:
        """Return ``call_key`` as the reservation."""
        return call_key

    async def settle(self, reservation: Any, usage: Usage) -> float | None:
        """No prices: ``None``."""
        return None

    async def release(self, reservation: Any) -> None:
        """Nothing to release."""
