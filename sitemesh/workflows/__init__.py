"""Workflows per task kind: ordered steps, conditions, zones; TOML, live in NATS KV.

```python
doc = Workflows.from_toml(Path("workflows.toml").read_text())   # structural checks
check_workflows(doc, registry.specs, policy)                      # roles, zones, fields
await WorkflowStore(js).publish(text)                             # every router picks it up
live = await WorkflowStore(js).live("eu1").start()
spec = live.document.for_kind("support_ticket")
```

The router embeds the task's workflow in its :class:`~sitemesh.schemas.WorkItem`;
:func:`first_step` and :func:`next_step` pick the steps from it. See
``docs/workflows.md``.
"""

from ._advance import (
    Advance,
    Skip,
    cloud_allowed,
    data_class_raised,
    first_step,
    new_item,
    next_step,
    step_names,
    step_of,
)
from ._conditions import Condition, parse_condition
from ._dispatch import dispatch, skipped_events
from ._document import (
    BUNDLED_WORKFLOWS,
    PolicyView,
    RoleInfo,
    Workflows,
    bundled_text,
    check_workflows,
)
from ._store import WORKFLOWS_KEY, LiveWorkflows, WorkflowStore

__all__ = [
    "BUNDLED_WORKFLOWS",
    "WORKFLOWS_KEY",
    "Advance",
    "Condition",
    "LiveWorkflows",
    "PolicyView",
    "RoleInfo",
    "Skip",
    "WorkflowStore",
    "Workflows",
    "bundled_text",
    "check_workflows",
    "cloud_allowed",
    "data_class_raised",
    "dispatch",
    "first_step",
    "new_item",
    "next_step",
    "parse_condition",
    "skipped_events",
    "step_names",
    "step_of",
]
