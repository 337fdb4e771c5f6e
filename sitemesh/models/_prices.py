"""The price table: what one model call costs, from its token counts.

Prices are per million tokens (``input_per_mtok`` for prompt tokens,
``output_per_mtok`` for completion tokens), kept as :class:`~decimal.Decimal` from
the TOML text on (``tomllib`` with ``parse_float=Decimal``), so ``0.15`` is exactly
0.15 and sums never drift. The table is read from a TOML file::

    [models."openai/gpt-4o-mini"]
    input_per_mtok = 0.15      # per 1M input (prompt) tokens
    output_per_mtok = 0.6      # per 1M output (completion) tokens
    currency = "USD"           # optional, "USD" by default

A key with ``*`` is a pattern (:func:`fnmatch.fnmatchcase`), e.g. ``"vllm/*"`` for
every model of a self-hosted server; an exact key wins over a pattern, and of
several matching patterns the longest wins.

The bundled ``sitemesh/models/prices.toml`` holds *example* prices; the operator
sets the real ones (see the note at the top of that file). Every model of one
table must use the same currency, the currency budgets are counted in.

The same file may hold a ``[budgets]`` table, read by
:meth:`sitemesh.models._budget.BudgetPolicy.from_toml`.
"""

from __future__ import annotations

import fnmatch
import tomllib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from decimal import ROUND_CEILING, Decimal
from pathlib import Path
from typing import Any, Final

from ..errors import ConfigError, UnknownModelPrice

__all__ = [
    "DEFAULT_PRICES_FILE",
    "MTOK",
    "NANOS_PER_UNIT",
    "ModelPrice",
    "PriceTable",
    "from_nanos",
    "to_nanos",
]

DEFAULT_PRICES_FILE: Final = Path(__file__).with_name("prices.toml")
"""The bundled price table (example prices; the operator sets real ones)."""

MTOK: Final = 1_000_000
"""Prices are per this many tokens (one million)."""

NANOS_PER_UNIT: Final = 1_000_000_000
"""Costs are stored and summed as integer nano-units of the currency (1e-9 USD)."""

_NANO: Final = Decimal(1) / NANOS_PER_UNIT


def to_nanos(amount: Decimal) -> int:
    """``amount`` (currency units) as whole nano-units, rounded up.

    Rounding up means a stored charge is never below the exact cost, so a budget is
    never overrun by rounding.

    Args:
        amount: a non-negative amount, e.g. ``Decimal("0.00015")`` USD.

    Returns:
        The amount in nano-units (``150_000`` for 0.00015 USD).
    """
    return int((amount / _NANO).to_integral_value(rounding=ROUND_CEILING))


def from_nanos(nanos: int) -> Decimal:
    """Whole nano-units back to an exact :class:`Decimal` amount of currency units."""
    return Decimal(nanos) / NANOS_PER_UNIT


@dataclass(frozen=True, slots=True)
class ModelPrice:
    """The price of one model.

    Attributes:
        model: model id as callers name it, e.g. ``"openai/gpt-4o-mini"``.
        input_per_mtok: price of one million input (prompt) tokens.
        output_per_mtok: price of one million output (completion) tokens.
        currency: ISO 4217 code of both prices, e.g. ``"USD"``.
    """

    model: str
    input_per_mtok: Decimal
    output_per_mtok: Decimal
    currency: str = "USD"

    def cost(self, tokens_in: int, tokens_out: int) -> Decimal:
        """The exact cost of a call, in :attr:`currency`.

        ``(tokens_in * input_per_mtok + tokens_out * output_per_mtok) / 1_000_000``.

        Args:
            tokens_in: input (prompt) tokens, ``>= 0``.
            tokens_out: output (completion) tokens, ``>= 0``.

        Returns:
            The cost as an exact ``Decimal`` (not rounded).

        Raises:
            ValueError: a token count is negative.
        """
        if tokens_in < 0 or tokens_out < 0:
            raise ValueError(f"token counts must be >= 0, got in={tokens_in} out={tokens_out}")
        return (tokens_in * self.input_per_mtok + tokens_out * self.output_per_mtok) / MTOK


def _price(value: Any, key: str) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, int | Decimal | str):
        raise ConfigError(key, f"expected a number, got {value!r}")
    try:
        price = Decimal(value)
    except ArithmeticError:
        raise ConfigError(key, f"expected a number, got {value!r}") from None
    if not price.is_finite() or price < 0:
        raise ConfigError(key, f"expected a price >= 0, got {value!r}")
    return price


class PriceTable(Mapping[str, ModelPrice]):
    """Prices of the models sitemesh may call; a read-only mapping model id → price.

    Args:
        prices: the prices, one per model.
        source: where they came from (shown in errors), e.g. the file path.

    Raises:
        ConfigError: two currencies in one table.
    """

    def __init__(self, prices: Mapping[str, ModelPrice] | None = None, *, source: str = "") -> None:
        self._prices: dict[str, ModelPrice] = dict(prices or {})
        self.source = source
        currencies = {p.currency for p in self._prices.values()}
        if len(currencies) > 1:
            raise ConfigError(
                "models.*.currency",
                f"one currency per price table, got {sorted(currencies)} in {source or 'table'}",
            )
        self.currency: str = currencies.pop() if currencies else "USD"
        """The currency of every price (and of every cost budget)."""

    # -- construction ------------------------------------------------------------------
    @classmethod
    def from_mapping(cls, data: Mapping[str, Any], *, source: str = "") -> PriceTable:
        """A table from parsed TOML (the ``models`` table is read; others are ignored).

        Args:
            data: the whole document, e.g. ``{"models": {"m": {"input_per_mtok": ...}}}``.
            source: shown in errors.

        Returns:
            The table.

        Raises:
            ConfigError: a price is missing, not a number, or negative (names the key).
        """
        models = data.get("models", {})
        if not isinstance(models, Mapping):
            raise ConfigError("models", f"expected a table of models in {source or 'prices'}")
        prices: dict[str, ModelPrice] = {}
        for model, entry in models.items():
            key = f'models."{model}"'
            if not isinstance(entry, Mapping):
                raise ConfigError(key, "expected a table with input_per_mtok and output_per_mtok")
            unknown = set(entry) - {"input_per_mtok", "output_per_mtok", "currency"}
            if unknown:
                raise ConfigError(f"{key}.{sorted(unknown)[0]}", "unknown key")
            for field in ("input_per_mtok", "output_per_mtok"):
                if field not in entry:
                    raise ConfigError(f"{key}.{field}", "missing")
            currency = entry.get("currency", "USD")
            if not isinstance(currency, str) or not currency.isalpha() or len(currency) != 3:
                raise ConfigError(f"{key}.currency", f"expected an ISO 4217 code, got {currency!r}")
            prices[model] = ModelPrice(
                model=model,
                input_per_mtok=_price(entry["input_per_mtok"], f"{key}.input_per_mtok"),
                output_per_mtok=_price(entry["output_per_mtok"], f"{key}.output_per_mtok"),
                currency=currency.upper(),
            )
        return cls(prices, source=source)

    @classmethod
    def from_toml(cls, path: Path | str | None = None) -> PriceTable:
        """Load the table from a TOML file.

        Args:
            path: the file; ``None``: the bundled :data:`DEFAULT_PRICES_FILE`.

        Returns:
            The table.

        Raises:
            ConfigError: the file is missing, not valid TOML, or has a bad entry.
        """
        file = Path(path) if path is not None else DEFAULT_PRICES_FILE
        try:
            with file.open("rb") as fh:
                data = tomllib.load(fh, parse_float=Decimal)
        except OSError as exc:
            raise ConfigError("prices", f"cannot read {file}: {exc.strerror}") from exc
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError("prices", f"{file} is not valid TOML: {exc}") from exc
        return cls.from_mapping(data, source=str(file))

    # -- queries -----------------------------------------------------------------------
    def price(self, model: str) -> ModelPrice:
        """The price of ``model``: its own entry, else the longest matching pattern.

        Raises:
            UnknownModelPrice: the table has no entry for ``model`` (names it).
        """
        exact = self._prices.get(model)
        if exact is not None:
            return exact
        patterns = [k for k in self._prices if "*" in k and fnmatch.fnmatchcase(model, k)]
        if patterns:
            return self._prices[max(patterns, key=lambda k: (len(k), k))]
        raise UnknownModelPrice(
            model, source=self.source or None, known=tuple(sorted(self._prices))
        )

    def cost(self, model: str, tokens_in: int, tokens_out: int) -> Decimal:
        """The exact cost of a call to ``model``, in :attr:`currency`.

        Args:
            model: the model id.
            tokens_in: input (prompt) tokens.
            tokens_out: output (completion) tokens.

        Returns:
            ``(tokens_in * input_per_mtok + tokens_out * output_per_mtok) / 1e6``.

        Raises:
            UnknownModelPrice: ``model`` is not in the table.
            ValueError: a token count is negative.
        """
        return self.price(model).cost(tokens_in, tokens_out)

    def __getitem__(self, model: str) -> ModelPrice:
        return self._prices[model]

    def __iter__(self) -> Iterator[str]:
        return iter(self._prices)

    def __len__(self) -> int:
        return len(self._prices)

    def __repr__(self) -> str:
        return f"PriceTable({len(self)} models, {self.currency}, source={self.source!r})"
