"""Workflow steps as they travel inside a work item, and earlier steps' outputs.

The router resolves a task's workflow from the live ``workflows`` document (see
:mod:`sitemesh.workflows`) when it accepts the task and embeds it in the
:class:`~sitemesh.schemas.WorkItem`, so a task finishes on the version it started
with, and every worker can compute the next step without reading KV.
"""

from __future__ import annotations

from typing import Annotated

import msgspec

from ._base import Role, StepName, Zone

Condition = Annotated[str, msgspec.Meta(min_length=1, max_length=512)]
"""A condition over the task and earlier outputs, e.g. ``triage.confidence >= 0.9``
(grammar: :mod:`sitemesh.workflows`)."""


class Jump(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """After its step: when ``when`` holds, continue at step ``to`` (a later step)."""

    when: Condition
    to: StepName


class WorkflowStep(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """One step of a workflow."""

    name: StepName
    """Unique within the workflow; earlier outputs are keyed by it."""
    role: Role
    """The agent role that runs the step (``sitemesh agents`` lists them)."""
    zone: Zone = "edge"
    """Where the step may send the task's content. ``cloud`` steps run only for
    tasks the policy lets leave the site; others skip them with the reason."""
    when: Condition | None = None
    """Run the step only when this holds; otherwise it is skipped (an event says so)."""
    jumps: list[Jump] = []
    """Tried in order after the step; the first that holds picks the next step."""


class WorkflowSpec(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A workflow: the ordered steps for some task kinds."""

    name: StepName
    kinds: list[str]
    """Subject kind tokens (``support_ticket``) the workflow serves."""
    steps: list[WorkflowStep]
    description: str = ""
    version: str = ""
    """Hash of the ``workflows`` document it came from (set when it is loaded)."""


class StepOutput(msgspec.Struct, frozen=True, kw_only=True):
    """What one earlier step produced, kept as JSON so that any agent's output type
    travels without the runtime knowing it."""

    role: Role
    type: str
    """The output's ``<type>.v<N>`` tag."""
    output: msgspec.Raw
    """The output message, JSON-encoded (decode it with ``WorkItem.output``)."""
