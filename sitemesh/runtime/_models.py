"""The model client of a process, when models are configured (else ``None``: agents
use their deterministic fallbacks and say so).

Each side has its own model settings: a site process reads ``models``
(``SITEMESH_MODELS_*``), the hub's cloud node ``hub_models``
(``SITEMESH_HUB_MODELS_*``); :func:`models_for` picks the group and refuses the other
side's (docs/models.md, "Site and hub").
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final, Literal

from ..config import ModelsSettings, Settings
from ..errors import ConfigError

if TYPE_CHECKING:
    from ..models import Budget, CallRecorder, ModelClient

Side = Literal["site", "hub"]
"""Where a process runs: on a site (its workers) or on the hub (the cloud node)."""

_GROUPS: Final[dict[str, tuple[str, str]]] = {
    "site": ("models", "SITEMESH_MODELS_"),
    "hub": ("hub_models", "SITEMESH_HUB_MODELS_"),
}
_DEFAULT: Final = ModelsSettings()


def models_for(settings: Settings, side: Side) -> ModelsSettings:
    """The model settings of a process on ``side``, checked before it starts.

    A site process takes ``settings.models``, the hub's ``settings.hub_models``. A
    process given the *other* side's group is refused rather than silently ignoring
    it (a hub with ``SITEMESH_MODELS_*`` would otherwise be running with the sites'
    chain in mind, and a site holding the hub's API keys has keys it never needs).
    On the hub, :func:`sitemesh.models.check_hub_models` also refuses any site endpoint
    (``vllm`` models or backend, a URL of ``hub.site_endpoints``).

    Args:
        settings: the process settings.
        side: ``"site"`` or ``"hub"``.

    Returns:
        The group this side builds its model client from.

    Raises:
        ConfigError: the other side's group differs from the defaults (``key`` names
            its first such setting, e.g. ``models.site_chain``), or the hub's names a
            site endpoint.
    """
    own, own_env = _GROUPS[side]
    other_side: Side = "hub" if side == "site" else "site"
    other, other_env = _GROUPS[other_side]
    changed = _changed(getattr(settings, other))
    if changed:
        names = ", ".join(f"{other_env}{name.upper()}" for name in changed)
        raise ConfigError(
            f"{other}.{changed[0]}",
            f"a {side} process takes its models from {own_env}* only; {other_env}* are "
            f"the {other_side}'s settings and must not be given to it (set: {names})",
        )
    models: ModelsSettings = getattr(settings, own)
    if side == "hub":
        from ..models import check_hub_models

        check_hub_models(models, site_endpoints=settings.hub.site_endpoints, key=own)
    return models


def _changed(models: ModelsSettings) -> list[str]:
    """The fields of ``models`` that differ from the defaults, in declaration order."""
    return [
        name
        for name in ModelsSettings.model_fields
        if getattr(models, name) != getattr(_DEFAULT, name)
    ]


def build_model_client(settings: Settings, *, side: Side = "site") -> ModelClient | None:
    """A :class:`~sitemesh.models.ModelClient` from ``side``'s model settings
    (:func:`models_for`), recording every call and charging budgets in the process's
    database; ``None`` if no backend is set.

    Args:
        settings: the process settings.
        side: ``"site"`` (``settings.models``) or ``"hub"`` (``settings.hub_models``).

    Raises:
        ConfigError: a chain entry or key is malformed, the other side's settings are
            given, or the hub's chain names a site endpoint (names the key).
    """
    from ..models import ModelClient

    models = models_for(settings, side)
    recorder, budget = _accounting(settings)
    client = ModelClient.from_settings(models, recorder=recorder, budget=budget)
    return client if client.configured else None


def _accounting(settings: Settings) -> tuple[CallRecorder, Budget]:
    """The call recorder and budget ledger on the site's database (prices and budgets
    from ``<state_dir>/prices.toml``, else the bundled example table)."""
    from ..models import ledger_for_settings

    recorder, budget = ledger_for_settings(settings)
    return recorder, budget
