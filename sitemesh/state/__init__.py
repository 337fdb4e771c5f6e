"""State: the SQL record of tasks, events, policy decisions and dead letters.

SQLAlchemy 2.0 async over SQLite (aiosqlite, the embedded default) or PostgreSQL
(asyncpg); schema managed by Alembic (:func:`migrate`). The :class:`Recorder`
fills the :class:`Store` from a site's ``EVENTS`` and ``DLQ`` streams; the CLI
reads it (``sitemesh status``, ``sitemesh show TASK_ID``).
"""

from ._db import alembic_config, create_engine, migrate
from ._models import Base, DeadLetterRow, PolicyDecisionRow, TaskEventRow, TaskRow
from ._recorder import RECORDER_DURABLE, Recorder
from ._store import STATUSES, Store
from ._views import (
    DeadLetterView,
    DecisionView,
    EntityCountView,
    StatusCounts,
    TaskEventView,
    TaskSummary,
    TaskView,
)

__all__ = [
    "RECORDER_DURABLE",
    "STATUSES",
    "Base",
    "DeadLetterRow",
    "DeadLetterView",
    "DecisionView",
    "EntityCountView",
    "PolicyDecisionRow",
    "Recorder",
    "StatusCounts",
    "Store",
    "TaskEventRow",
    "TaskEventView",
    "TaskRow",
    "TaskSummary",
    "TaskView",
    "alembic_config",
    "create_engine",
    "migrate",
]
