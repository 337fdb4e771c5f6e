"""The workflows in NATS KV, next to the policy: ``workflows`` and ``workflows.<site>``."""

from __future__ import annotations

from typing import Final

from nats.js import JetStreamContext

from ..bus import CONFIG_BUCKET, CONFIG_HISTORY, DocumentStore, LiveDocument
from ._document import Workflows, bundled_text

WORKFLOWS_KEY: Final = "workflows"
"""The key of the workflows every site follows; ``workflows.<site>`` overrides it."""


def _parse(text: str, source: str) -> Workflows:
    return Workflows.from_toml(text, source=source)


class WorkflowStore(DocumentStore[Workflows]):
    """Publishes and reads the workflows document in the configuration bucket.

    ``publish`` runs only the structural checks; run :func:`check_workflows` with the
    registry and the policy first (``sitemesh workflows FILE`` does).

    Args:
        js: a JetStream context.
        bucket: the bucket name (tests use a unique one).
        history: revisions kept per key, 5-64.
    """

    def __init__(
        self, js: JetStreamContext, *, bucket: str = CONFIG_BUCKET, history: int = CONFIG_HISTORY
    ) -> None:
        super().__init__(
            js,
            key=WORKFLOWS_KEY,
            parse=_parse,
            bundled=bundled_text(),
            bucket=bucket,
            history=history,
        )

    def live(self, site: str | None = None) -> LiveWorkflows:
        """A :class:`LiveWorkflows` following this bucket for ``site`` (not started)."""
        return LiveWorkflows(self, site=site)


class LiveWorkflows(LiveDocument[Workflows]):
    """The workflows in force, kept current by a KV watcher (see
    :class:`sitemesh.bus.LiveDocument` for the failure behaviour)."""
