"""The policy in a NATS KV bucket: one version for every router, updated live.

Layout of the bucket :data:`POLICY_BUCKET` (``sitemesh_policy``, history
:data:`POLICY_HISTORY` revisions per key):

* ``rules``: the TOML rules file every site applies;
* ``rules.<site>``: an optional override for one site (it replaces ``rules``
  there; it is not merged with it).

(The workflows live in the same bucket, see :mod:`sitemesh.workflows`.) Values are
the TOML text exactly as published, so ``nats kv get`` shows the file with its
comments. :meth:`PolicyStore.publish` validates before it stores (an invalid file
never reaches the bucket through sitemesh); a value written around it (``nats kv
put``) is still validated by every reader, and a :class:`LivePolicy` keeps the last
valid policy when it sees an invalid one. The machinery is
:class:`sitemesh.bus.DocumentStore`.

```python
store = PolicyStore(js)
version = await store.publish(Path("rules.toml").read_text())
live = await store.live(site="eu1").start()       # seeds the bundled default if empty
router = PolicyRouter(live.policy, scanner, policy_source=live)
...
await live.shutdown()
```
"""

from __future__ import annotations

from importlib import resources
from typing import Final

from nats.js import JetStreamContext

from ..bus import CONFIG_BUCKET, CONFIG_HISTORY, DocumentStore, LiveDocument, Revision
from ._rules import BUNDLED_RULES, Policy

__all__ = [
    "POLICY_BUCKET",
    "POLICY_HISTORY",
    "POLICY_KEY",
    "LivePolicy",
    "PolicyRevision",
    "PolicyStore",
    "policy_key",
]

POLICY_BUCKET: Final = CONFIG_BUCKET
"""The KV bucket holding the rules files."""

POLICY_KEY: Final = "rules"
"""The key of the rules file every site applies."""

POLICY_HISTORY: Final = CONFIG_HISTORY
"""Revisions kept per key (``nats kv history sitemesh_policy rules``); at least 5."""

PolicyRevision = Revision
"""One stored revision of a rules key (``version`` is the policy hash)."""


def policy_key(site: str | None = None) -> str:
    """The KV key of the rules file for ``site`` (``rules.<site>``), or ``rules``."""
    return POLICY_KEY if site is None else f"{POLICY_KEY}.{site}"


def _bundled_text() -> str:
    ref = resources.files(__package__ or "sitemesh.policy") / BUNDLED_RULES
    return ref.read_text(encoding="utf-8")


def _parse(text: str, source: str) -> Policy:
    return Policy.from_toml(text, source=source)


class PolicyStore(DocumentStore[Policy]):
    """Publishes and reads the rules files in the ``sitemesh_policy`` KV bucket.

    Args:
        js: a JetStream context.
        bucket: the bucket name (tests use a unique one).
        history: revisions kept per key, 5-64.

    Raises:
        ValueError: ``history`` is outside 5-64.
    """

    def __init__(
        self, js: JetStreamContext, *, bucket: str = POLICY_BUCKET, history: int = POLICY_HISTORY
    ) -> None:
        super().__init__(
            js,
            key=POLICY_KEY,
            parse=_parse,
            bundled=_bundled_text(),
            bucket=bucket,
            history=history,
        )

    async def publish(self, policy_text: str, *, site: str | None = None) -> str:  # type: ignore[override]
        """Validate a rules file and store it; every :class:`LivePolicy` picks it up.

        Args:
            policy_text: the TOML rules file.
            site: store it as the override of this site (``rules.<site>``);
                ``None``: the policy of every site (``rules``).

        Returns:
            The stored policy's :attr:`Policy.version`.

        Raises:
            PolicyError: the file is invalid; nothing is stored. The message names
                the rule index and id and the field (see :meth:`Policy.from_toml`).
        """
        return (await super().publish(policy_text, site=site)).version

    def live(self, site: str | None = None) -> LivePolicy:
        """A :class:`LivePolicy` following this bucket for ``site`` (not started)."""
        return LivePolicy(self, site=site)


class LivePolicy(LiveDocument[Policy]):
    """The policy in force, kept current by a KV watcher; call it for a snapshot.

    ``live()`` (or :attr:`policy`) returns the current :class:`Policy`; pass the
    object as ``PolicyRouter(..., policy_source=live)``. A new revision of
    ``rules`` (or of ``rules.<site>``, which takes precedence) applies to the next
    decision without a restart; behaviour on invalid revisions, deletes and watcher
    failures is :class:`sitemesh.bus.LiveDocument`'s (fail closed: the last valid
    policy stays in force).
    """

    @property
    def policy(self) -> Policy:
        """The policy in force.

        Raises:
            RuntimeError: :meth:`start` has not completed yet.
        """
        return self.document
