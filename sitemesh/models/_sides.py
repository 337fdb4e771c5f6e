"""Which model endpoints each side may name: the hub's chain never reaches a site.

A **site endpoint** is, concretely:

1. a model of an on-prem provider (:data:`SITE_PROVIDERS`, today ``vllm``): any
   ``vllm/...`` chain entry, and the ``vllm`` backend itself (``vllm_base_url``,
   ``vllm_launch``) — by definition a server on a site, which may see site-pinned
   data; or
2. a URL listed as one of the sites' model servers (``hub.site_endpoints``; ``sitemesh
   up`` lists the sites' own ``vllm`` URLs): a cloud provider's ``*_base_url`` on the
   same host and port is that server under another name.

The hub (the cloud node) may name neither; :func:`check_hub_models` is run when it
starts. Without it, a hub given the sites' settings falls back to a site's vLLM
whenever its cloud breaker opens (and sends the site anonymised prompts it never asked
for).
"""

from __future__ import annotations

from collections.abc import Iterable
from urllib.parse import urlsplit

from ..bus import redact_url
from ..config import ModelsSettings
from ..errors import ConfigError
from ._routing import PROVIDERS, ModelRef
from ._types import SITE_PROVIDERS

_LOOPBACK = frozenset({"localhost", "127.0.0.1", "::1", "0.0.0.0", "::"})  # noqa: S104  # names, not a bind
_DEFAULT_PORTS = {"http": 80, "https": 443}


def site_endpoints(models: ModelsSettings) -> list[str]:
    """The model servers of a site with these settings (its ``vllm`` backend's URL).

    Args:
        models: a site's ``models`` group.

    Returns:
        ``[vllm_base_url]``, or ``["http://<vllm_host>:<vllm_port>/v1"]`` when the site
        launches vLLM itself, or ``[]``: the list for the hub's ``hub.site_endpoints``.
    """
    if models.vllm_base_url:
        return [models.vllm_base_url]
    if models.vllm_launch:
        return [f"http://{models.vllm_host}:{models.vllm_port}/v1"]
    return []


def check_hub_models(
    models: ModelsSettings, *, site_endpoints: Iterable[str] = (), key: str = "hub_models"
) -> None:
    """Refuse hub model settings that name a site endpoint (see the module docstring).

    Args:
        models: the hub's model settings (``settings.hub_models``).
        site_endpoints: base URLs of the sites' model servers (``hub.site_endpoints``);
            compared by host and port, loopback names counting as one host.
        key: the settings group ``models`` came from, for the error's key.

    Raises:
        ConfigError: whose ``key`` names the first offending setting
            (``hub_models.site_chain``, ``hub_models.cloud_chain``,
            ``hub_models.vllm_base_url``, ``hub_models.vllm_launch``,
            ``hub_models.openai_base_url``, ``hub_models.anthropic_base_url``), or a
            chain entry is malformed. URLs in the message are shown without
            credentials.
    """
    providers = ", ".join(sorted(PROVIDERS - SITE_PROVIDERS))
    if models.site_chain:
        raise ConfigError(
            f"{key}.site_chain",
            f"the hub has no site models, but names {models.site_chain}: a site's models "
            f"are the site's own (SITEMESH_MODELS_SITE_CHAIN of its processes); the hub's "
            f"chain is cloud_chain, with providers {providers}",
        )
    for entry in models.cloud_chain:
        ref = ModelRef.parse(entry, key=f"{key}.cloud_chain")
        if ref.provider in SITE_PROVIDERS:
            raise ConfigError(
                f"{key}.cloud_chain",
                f"{ref} is a site model (provider {ref.provider!r} runs on a site); the "
                f"hub's chain may name only {providers}",
            )
    if models.vllm_base_url or models.vllm_launch:
        field = "vllm_base_url" if models.vllm_base_url else "vllm_launch"
        raise ConfigError(
            f"{key}.{field}",
            "the hub has no vllm backend: a vllm server is a site endpoint "
            "(set it in the sites' SITEMESH_MODELS_VLLM_*)",
        )
    sites = {_host_port(url): url for url in site_endpoints}
    for field in ("openai_base_url", "anthropic_base_url"):
        url = getattr(models, field)
        if url and _host_port(url) in sites:
            raise ConfigError(
                f"{key}.{field}",
                f"{redact_url(url)} is a site's model server "
                f"({redact_url(sites[_host_port(url)])} in hub.site_endpoints); the hub "
                "never calls a site endpoint",
            )


def _host_port(url: str) -> tuple[str, int | None]:
    """``(host, port)`` of ``url`` (default port of its scheme; ``http://`` assumed)."""
    parts = urlsplit(url if "://" in url else f"http://{url}")
    host = (parts.hostname or "").lower()
    try:
        port = parts.port
    except ValueError:  # not a number: compare the host alone
        port = None
    if port is None:
        port = _DEFAULT_PORTS.get(parts.scheme.lower())
    return ("loopback" if host in _LOOPBACK else host, port)
