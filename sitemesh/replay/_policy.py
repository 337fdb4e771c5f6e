"""Which rules and workflows a replay applies: a given rules file, else those of the
original run."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Collection
from pathlib import Path

from nats.js import JetStreamContext

from ..policy import Policy, PolicyStore
from ..workflows import Workflows, WorkflowStore

log = logging.getLogger("sitemesh.replay")


async def replay_policy(
    js: JetStreamContext,
    site: str,
    original_versions: Collection[str],
    *,
    rules_file: Path | None = None,
    configured: Path | None = None,
) -> Policy:
    """The policy the sandbox router applies.

    ``rules_file`` when given (to see what a rule change would do). Otherwise the
    policy that decided the original tasks: found by its version among the
    configured file, the bundled rules and the ``sitemesh_policy`` KV history
    (site override first); when the original run used several versions, or none
    is found, the policy in force now.

    Args:
        js: a JetStream context.
        site: the site.
        original_versions: policy versions recorded on the original decisions.
        rules_file: an explicit rules file (``sitemesh replay --rules``).
        configured: ``settings.policy.rules_file``.

    Raises:
        PolicyError: a rules file is invalid.
    """
    if rules_file is not None:
        return Policy.load(rules_file)
    candidates = [Policy.load(configured)] if configured is not None else []
    candidates.append(Policy.load(None))
    wanted = set(original_versions)
    for p in candidates:
        if p.version in wanted and len(wanted) == 1:
            return p
    store = PolicyStore(js)
    if len(wanted) == 1:
        (version,) = wanted
        with contextlib.suppress(Exception):
            if (found := await store.find(version, site)) is not None:
                return found
    with contextlib.suppress(Exception):
        current = await store.current(site)
        log.info("replaying with the policy in force now (%s)", current.version)
        return current
    return candidates[0]


async def replay_workflows(
    js: JetStreamContext, site: str, original_versions: Collection[str]
) -> Workflows:
    """The workflows the sandbox router starts tasks on.

    Those the original tasks ran on: found by version among the bundled workflows and
    the KV history of ``workflows.<site>`` then ``workflows``. When the original run
    used several versions, or none is found, the workflows in force now.

    Args:
        js: a JetStream context.
        site: the site.
        original_versions: workflow versions recorded on the tasks' acceptance
            (``task_accepted.v1`` ``workflow_version``).
    """
    wanted = {v for v in original_versions if v}
    bundled = Workflows.load()
    store = WorkflowStore(js)
    if len(wanted) == 1:
        (version,) = wanted
        if bundled.version == version:
            return bundled
        with contextlib.suppress(Exception):
            if (found := await store.find(version, site)) is not None:
                return found
    with contextlib.suppress(Exception):
        current = await store.current(site)
        log.info("replaying with the workflows in force now (%s)", current.version)
        return current
    return bundled
