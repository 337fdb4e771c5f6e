"""Routing: call kind + complexity + policy action -> an ordered chain of models.

The rules, in order (docs/models.md, "Routing"):

1. The privacy policy is never overridden: unless the task's action is
   ``allow_cloud`` or an *approved* ``require_approval``, the chain holds site
   models only (``pin_edge``, ``deny``, unapproved ``require_approval``).
2. Small kinds (``classification``, ``extraction`` by default) and tasks below the
   complexity threshold go to the site's models first, then (when allowed) the
   cloud's, as a fallback.
3. Complex tasks that may leave the site go to the cloud chain first (frontier
   models), then to the site models.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import get_args

from ..errors import ConfigError
from ._types import SITE_PROVIDERS, CallContext, Provider

PROVIDERS: frozenset[str] = frozenset(get_args(Provider))
"""Provider prefixes a model reference may use."""


@dataclass(frozen=True, slots=True)
class ModelRef:
    """A ``<provider>/<model>`` reference from the configuration.

    Attributes:
        provider: ``vllm``, ``openai`` or ``anthropic``.
        model: the model name as its server knows it (may contain ``/``, e.g.
            ``vllm/Qwen/Qwen2.5-7B-Instruct``).
    """

    provider: str
    model: str

    @classmethod
    def parse(cls, ref: str, *, key: str = "models") -> ModelRef:
        """Parse ``"<provider>/<model>"``.

        Args:
            ref: the reference, e.g. ``"vllm/qwen2.5-7b-instruct"``.
            key: the settings key it came from, for the error.

        Raises:
            ConfigError: no ``/``, an empty model, or an unknown provider.
        """
        provider, sep, model = ref.partition("/")
        if not sep or not model or provider not in PROVIDERS:
            raise ConfigError(
                key,
                f"{ref!r} is not '<provider>/<model>' with provider one of "
                f"{', '.join(sorted(PROVIDERS))}",
            )
        return cls(provider, model)

    @property
    def on_site(self) -> bool:
        """The model runs on the site (may see data pinned to the site)."""
        return self.provider in SITE_PROVIDERS

    def __str__(self) -> str:
        return f"{self.provider}/{self.model}"


class Router:
    """Chooses the ordered model chain for a call.

    Args:
        site_chain: site models in fallback order (``vllm/...`` only).
        cloud_chain: cloud models in fallback order.
        complexity_threshold: complexity (0..1) from which a call counts as complex.
        small_kinds: call kinds served by the site's small model first.

    Raises:
        ConfigError: a reference is malformed, or a site entry is not a site provider
            (a cloud model listed as "site" would let pinned data leave).
    """

    def __init__(
        self,
        site_chain: Sequence[str | ModelRef] = (),
        cloud_chain: Sequence[str | ModelRef] = (),
        *,
        complexity_threshold: float = 0.5,
        small_kinds: Iterable[str] = ("classification", "extraction"),
    ) -> None:
        self.site = [_ref(r, "models.site_chain") for r in site_chain]
        self.cloud = [_ref(r, "models.cloud_chain") for r in cloud_chain]
        for ref in self.site:
            if not ref.on_site:
                raise ConfigError("models.site_chain", f"{ref} is not a site model")
        self.complexity_threshold = complexity_threshold
        self.small_kinds = frozenset(small_kinds)

    def chain(self, ctx: CallContext) -> list[ModelRef]:
        """The models to try for ``ctx``, in order (see the module docstring).

        Args:
            ctx: kind, complexity and policy action of the call.

        Returns:
            The chain; never contains a cloud model unless ``ctx.cloud_allowed``.
            May be empty (nothing configured): the caller's deterministic fallback.
        """
        if not ctx.cloud_allowed:
            return list(self.site)
        cloud = [r for r in self.cloud if not r.on_site]
        if ctx.kind in self.small_kinds or ctx.complexity < self.complexity_threshold:
            return _dedupe([*self.site, *cloud])
        return _dedupe([*cloud, *self.site])


def _ref(ref: str | ModelRef, key: str) -> ModelRef:
    return ref if isinstance(ref, ModelRef) else ModelRef.parse(ref, key=key)


def _dedupe(refs: list[ModelRef]) -> list[ModelRef]:
    return list(dict.fromkeys(refs))
