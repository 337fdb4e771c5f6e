"""What runs in the cloud hub: agents that only ever see structured incidents."""

from ._run import provision_cloud, run_cloud
from ._synthesiser import (
    COMPOSED_LABEL,
    ComposingSynthesiser,
    SynthesisBackend,
    Synthesiser,
    describe_incident,
)

__all__ = [
    "COMPOSED_LABEL",
    "ComposingSynthesiser",
    "SynthesisBackend",
    "Synthesiser",
    "describe_incident",
    "provision_cloud",
    "run_cloud",
]
