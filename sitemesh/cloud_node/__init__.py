"""What runs in the cloud hub: agents that only ever see anonymised incidents."""

from ._run import run_cloud
from ._synthesiser import (
    COMPOSED_LABEL,
    ComposingSynthesiser,
    SynthesisBackend,
    Synthesiser,
)

__all__ = [
    "COMPOSED_LABEL",
    "ComposingSynthesiser",
    "SynthesisBackend",
    "Synthesiser",
    "run_cloud",
]
