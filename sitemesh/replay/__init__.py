"""Replay: re-run recorded tasks in an isolated sandbox and diff the outcomes.

```python
tasks = await select_tasks(js, Subjects("eu1"), Selection(seq_from=100, seq_to=180))
report = await replay_tasks(js, Subjects("eu1"), settings.bus, tasks,
                            policy=Policy.load(None), scanner=scanner)
assert report.empty          # every decision and output reproduced
```

* selection (:class:`Selection`, :func:`select_tasks`): task ids, a stored-time
  range or a sequence range of ``TASKS_<site>`` or of any other site stream;
* read-back (:func:`read_stream`): an ephemeral no-ack pull consumer with big
  batches, for replay and for ``bench/replay.py``;
* the sandbox (:func:`replay_tasks`, :class:`InProcessSite`): the production
  router and agents as in-process workers on ``Subjects.sandbox(site, id)``
  (``sm.replay.<id>.*``, streams ``<STREAM>_<site>_R<id>``), deleted afterwards;
* model calls (:class:`ReplayModels`): recorded responses by prompt hash, or live;
* tool calls (:class:`ReplayTools`): recorded responses by call id (tools replay
  ``strict``: no tool server is started, a miss fails its task), or live
  (``--live-tools``: ``off``, a recorded side effect is still not repeated);
  nothing is written to the site's database;
* the diff (:class:`DiffReport`, :class:`TaskDiff`, :class:`Change`): per task,
  the decision, every step output and the final answer or failure, compared
  without volatile fields (:data:`VOLATILE`), differences as JSON paths;
* dead letters (:func:`list_dead_letters`, :func:`find_dead_letter`,
  :func:`redrive`): ``sitemesh dlq list|show|redrive``, a redrive exactly once.
"""

from ._diff import MISSING, Change, DiffReport, TaskDiff, diff_task, diff_values
from ._dlq import (
    HDR_REDRIVE_OF,
    DeadLetterNotFound,
    DeadLetterRecord,
    RedriveMark,
    RedriveResult,
    find_dead_letter,
    list_dead_letters,
    redrive,
    redrive_msg_id,
)
from ._models import PromptLookup, ReplayModels, load_recorder
from ._outcome import VOLATILE, Outcome, OutcomeBuilder, strip_volatile
from ._policy import replay_policy, replay_workflows
from ._readback import DEFAULT_BATCH, StreamRecord, read_all, read_stream
from ._sandbox import (
    Progress,
    Speed,
    delete_sandbox,
    new_replay_id,
    original_outcomes,
    read_outcomes,
    replay_tasks,
)
from ._select import Selection, recorded_task_id, select_tasks
from ._site import InProcessSite, build_agents
from ._tools import ReplayTools

__all__ = [
    "DEFAULT_BATCH",
    "HDR_REDRIVE_OF",
    "MISSING",
    "VOLATILE",
    "Change",
    "DeadLetterNotFound",
    "DeadLetterRecord",
    "DiffReport",
    "InProcessSite",
    "Outcome",
    "OutcomeBuilder",
    "Progress",
    "PromptLookup",
    "RedriveMark",
    "RedriveResult",
    "ReplayModels",
    "ReplayTools",
    "Selection",
    "Speed",
    "StreamRecord",
    "TaskDiff",
    "build_agents",
    "delete_sandbox",
    "diff_task",
    "diff_values",
    "find_dead_letter",
    "list_dead_letters",
    "load_recorder",
    "new_replay_id",
    "original_outcomes",
    "read_all",
    "read_outcomes",
    "read_stream",
    "recorded_task_id",
    "redrive",
    "redrive_msg_id",
    "replay_policy",
    "replay_tasks",
    "replay_workflows",
    "select_tasks",
    "strip_volatile",
]
