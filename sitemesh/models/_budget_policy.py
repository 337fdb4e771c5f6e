"""Budget configuration: which limits apply to a call (see :mod:`._budget`).

Budgets come from the ``[budgets]`` table of the price TOML file::

    [budgets.tenant."*"]     # every tenant without its own entry, per UTC day
    max_tokens = 2_000_000
    max_cost = 5.00          # in the price table's currency
    [budgets.tenant."acme"]
    max_cost = 20.00
    [budgets.task."*"]       # every task, over its whole life
    max_tokens = 200_000

A name's own entry wins over ``"*"``; a scope with no applicable entry is not
limited. Periods: ``day`` (UTC calendar day; default for tenants and agents) or
``total`` (never resets; default for tasks).
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any, Final, Literal

from ..errors import ConfigError
from ._prices import DEFAULT_PRICES_FILE, to_nanos

__all__ = [
    "SCOPES",
    "BudgetKey",
    "BudgetLimit",
    "BudgetPolicy",
    "Period",
    "Scope",
    "counter_key",
]

Scope = Literal["tenant", "agent", "task"]
Period = Literal["day", "total"]

SCOPES: Final[tuple[Scope, ...]] = ("tenant", "agent", "task")
"""Budget scopes, checked in this order."""

_DEFAULT_PERIOD: Final[dict[Scope, Period]] = {"tenant": "day", "agent": "day", "task": "total"}


@dataclass(frozen=True, slots=True)
class BudgetLimit:
    """The limits of one budget; ``None`` means that resource is not limited.

    Attributes:
        max_tokens: input + output tokens allowed in the period.
        max_cost: cost allowed in the period, in the price table's currency.
        period: ``"day"`` (resets at 00:00 UTC) or ``"total"`` (never resets);
            ``None``: the scope's default (``day`` for tenants and agents, ``total``
            for tasks).
    """

    max_tokens: int | None = None
    max_cost: Decimal | None = None
    period: Period | None = None

    def period_of(self, scope: Scope, now: datetime) -> str:
        """The counter period of this limit at ``now``: the UTC date, or ``""``."""
        period = self.period or _DEFAULT_PERIOD[scope]
        return now.astimezone(UTC).date().isoformat() if period == "day" else ""


@dataclass(frozen=True, slots=True)
class BudgetKey:
    """Who a call is made for: the budgets it counts against.

    Attributes:
        tenant: the customer account of the task.
        agent: the agent role making the call (``planner``, ``synthesiser``...).
        task_id: the task.
    """

    tenant: str
    agent: str
    task_id: str

    def name(self, scope: Scope) -> str:
        """The name of this key in ``scope`` (the tenant, the agent or the task id)."""
        return {"tenant": self.tenant, "agent": self.agent, "task": self.task_id}[scope]


@dataclass(frozen=True, slots=True)
class _Counter:
    """One budget that applies to a call: its counter key and limits in storage units."""

    key: str
    scope: Scope
    name: str
    period: str
    max_tokens: int | None
    max_nanos: int | None


def counter_key(scope: str, name: str, period: str) -> str:
    """The storage key of a budget counter, ``"<scope>|<period>|<name>"``."""
    return f"{scope}|{period}|{name}"


def _limit(entry: Any, key: str, scope: Scope) -> BudgetLimit:
    if not isinstance(entry, Mapping):
        raise ConfigError(key, "expected a table with max_tokens, max_cost and/or period")
    unknown = set(entry) - {"max_tokens", "max_cost", "period"}
    if unknown:
        raise ConfigError(f"{key}.{sorted(unknown)[0]}", "unknown key")
    max_tokens = entry.get("max_tokens")
    if max_tokens is not None and (
        isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 0
    ):
        raise ConfigError(f"{key}.max_tokens", f"expected an integer >= 0, got {max_tokens!r}")
    raw_cost = entry.get("max_cost")
    max_cost: Decimal | None = None
    if raw_cost is not None:
        if isinstance(raw_cost, bool) or not isinstance(raw_cost, int | Decimal | str):
            raise ConfigError(f"{key}.max_cost", f"expected a number, got {raw_cost!r}")
        try:
            max_cost = Decimal(raw_cost)
        except ArithmeticError:
            raise ConfigError(f"{key}.max_cost", f"expected a number, got {raw_cost!r}") from None
        if not max_cost.is_finite() or max_cost < 0:
            raise ConfigError(f"{key}.max_cost", f"expected a number >= 0, got {raw_cost!r}")
    period = entry.get("period", _DEFAULT_PERIOD[scope])
    if period not in ("day", "total"):
        raise ConfigError(f"{key}.period", f'expected "day" or "total", got {period!r}')
    if max_tokens is None and max_cost is None:
        raise ConfigError(key, "set max_tokens, max_cost or both")
    return BudgetLimit(max_tokens=max_tokens, max_cost=max_cost, period=period)


class BudgetPolicy:
    """The configured budgets: per scope, a name's own limit or the ``"*"`` one.

    Args:
        tenant: limits by tenant name (``"*"``: every tenant without its own).
        agent: limits by agent role (``"*"``: every agent without its own).
        task: limits by task id (``"*"``: every task; usually the only entry).
    """

    def __init__(
        self,
        *,
        tenant: Mapping[str, BudgetLimit] | None = None,
        agent: Mapping[str, BudgetLimit] | None = None,
        task: Mapping[str, BudgetLimit] | None = None,
    ) -> None:
        self._limits: dict[Scope, dict[str, BudgetLimit]] = {
            "tenant": dict(tenant or {}),
            "agent": dict(agent or {}),
            "task": dict(task or {}),
        }

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> BudgetPolicy:
        """Budgets from the parsed TOML document (its ``budgets`` table; others ignored).

        Shape: ``{"budgets": {"tenant": {"*": {"max_cost": 5}}, "task": {...}}}``.

        Raises:
            ConfigError: an unknown scope or key, or a bad limit (names the key).
        """
        budgets = data.get("budgets", {})
        if not isinstance(budgets, Mapping):
            raise ConfigError("budgets", "expected a table")
        limits: dict[Scope, dict[str, BudgetLimit]] = {s: {} for s in SCOPES}
        for scope, entries in budgets.items():
            if scope not in SCOPES:
                raise ConfigError(f"budgets.{scope}", "unknown scope; use tenant, agent or task")
            if not isinstance(entries, Mapping):
                raise ConfigError(f"budgets.{scope}", 'expected tables by name, e.g. ."*"')
            for name, entry in entries.items():
                limits[scope][name] = _limit(entry, f'budgets.{scope}."{name}"', scope)
        return cls(tenant=limits["tenant"], agent=limits["agent"], task=limits["task"])

    @classmethod
    def from_toml(cls, path: Path | str | None = None) -> BudgetPolicy:
        """Budgets from the ``[budgets]`` table of a TOML file (the price file).

        Args:
            path: the file; ``None``: the bundled price file (which sets no budgets).

        Raises:
            ConfigError: unreadable file, invalid TOML or a bad budget.
        """
        file = Path(path) if path is not None else DEFAULT_PRICES_FILE
        try:
            with file.open("rb") as fh:
                data = tomllib.load(fh, parse_float=Decimal)
        except OSError as exc:
            raise ConfigError("budgets", f"cannot read {file}: {exc.strerror}") from exc
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError("budgets", f"{file} is not valid TOML: {exc}") from exc
        return cls.from_mapping(data)

    def limit(self, scope: Scope, name: str) -> BudgetLimit | None:
        """The limit of ``name`` in ``scope``: its own, else ``"*"``, else ``None``."""
        limits = self._limits[scope]
        return limits.get(name, limits.get("*"))

    def counters(self, key: BudgetKey, now: datetime) -> list[_Counter]:
        """The budgets a call for ``key`` at ``now`` counts against, in key order.

        Key order is the lock order of the SQL ledger (no deadlocks between calls
        that share several budgets).
        """
        out: list[_Counter] = []
        for scope in SCOPES:
            lim = self.limit(scope, key.name(scope))
            if lim is None:
                continue
            period = lim.period_of(scope, now)
            name = key.name(scope)
            out.append(
                _Counter(
                    key=counter_key(scope, name, period),
                    scope=scope,
                    name=name,
                    period=period,
                    max_tokens=lim.max_tokens,
                    max_nanos=None if lim.max_cost is None else to_nanos(lim.max_cost),
                )
            )
        return sorted(out, key=lambda c: c.key)

    def __bool__(self) -> bool:
        return any(self._limits.values())
