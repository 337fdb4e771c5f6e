"""The model client of a process, when models are configured (else ``None``: agents
use their deterministic fallbacks and say so)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..config import Settings

if TYPE_CHECKING:
    from ..models import Budget, CallRecorder, ModelClient


def build_model_client(settings: Settings) -> ModelClient | None:
    """A :class:`~sitemesh.models.ModelClient` from ``settings.models``, recording every
    call and charging budgets in the site's database; ``None`` if no backend is set.

    Raises:
        ConfigError: a chain entry or key is malformed (names the key).
    """
    from ..models import ModelClient

    recorder, budget = _accounting(settings)
    client = ModelClient.from_settings(settings.models, recorder=recorder, budget=budget)
    return client if client.configured else None


def _accounting(settings: Settings) -> tuple[CallRecorder, Budget]:
    """The call recorder and budget ledger on the site's database (prices and budgets
    from ``<state_dir>/prices.toml``, else the bundled example table)."""
    from ..models import ledger_for_settings

    recorder, budget = ledger_for_settings(settings)
    return recorder, budget
