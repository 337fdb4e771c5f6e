"""What runs in the cloud hub: agents that only ever see anonymised incidents."""

from ._synthesiser import (
    COMPOSED_LABEL,
    ComposingSynthesiser,
    SynthesisBackend,
    Synthesiser,
)

__all__ = ["COMPOSED_LABEL", "ComposingSynthesiser", "SynthesisBackend", "Synthesiser"]
