"""Model calls during a replay: served from the recorded responses, or live.

A replay must not depend on a model's mood: by default every model call of the
sandbox is answered from the response recorded for the same prompt (looked up by
prompt hash in the site's call recorder, ``sitemesh.models.CallRecorder``, the
same lookup as ``ModelClient(replay="strict")``);
``--live-models`` calls the currently configured models instead, to see how a
model change would alter the outcomes. Today's agents are deterministic and call
no model unless one is configured, so the lookup is rarely exercised; this module
is the seam model backends use.
"""

from __future__ import annotations

import importlib
from typing import Any, Literal, Protocol

from ..errors import ReplayMiss


class PromptLookup(Protocol):
    """What the replay needs from a call recorder (``sitemesh.models.CallRecorder``)."""

    async def lookup(self, prompt_hash: str) -> Any | None:
        """The recorded ``ModelCall`` for ``prompt_hash``, or ``None``."""
        ...


class ReplayModels:
    """Where the sandbox's model calls are answered from.

    Args:
        recorder: the recorded calls; ``None`` when none are available.
        live: ``True`` (``--live-models``): never serve recorded responses.
    """

    def __init__(self, recorder: PromptLookup | None, *, live: bool = False) -> None:
        self.recorder = recorder
        self.live = live
        self.hits = 0
        """Calls answered from a recorded response."""
        self.misses = 0
        """Calls with no recorded response."""

    async def recorded(self, prompt_hash: str) -> Any | None:
        """The recorded response for ``prompt_hash``; ``None`` means call the model.

        Raises:
            ReplayMiss: not live and nothing was recorded for it.
        """
        if self.live:
            return None
        call = await self.recorder.lookup(prompt_hash) if self.recorder is not None else None
        if call is None:
            self.misses += 1
            raise ReplayMiss(prompt_hash)
        self.hits += 1
        return call

    @property
    def client_replay_mode(self) -> Literal["strict", "off"]:
        """``ModelClient(replay=...)`` for the sandbox's agents: ``strict`` serves
        recorded responses only (a miss is a ``ReplayMiss``), ``off`` calls live."""
        return "off" if self.live else "strict"

    @property
    def mode(self) -> str:
        """``live`` or ``recorded`` (for the report)."""
        return "live" if self.live else "recorded"


def load_recorder(settings: Any) -> PromptLookup | None:
    """The site's call recorder if ``sitemesh.models`` provides one, else ``None``.

    Uses ``CallRecorder.from_settings(settings)`` when the package and the
    constructor exist, so the replay works before and after model backends land.
    """
    try:
        models = importlib.import_module("sitemesh.models")
    except ImportError:
        return None
    recorder_cls = getattr(models, "CallRecorder", None)
    factory = getattr(recorder_cls, "from_settings", None)
    if factory is None:
        return None
    recorder: PromptLookup = factory(settings)
    return recorder
