"""State: the SQL record of tasks, events, policy decisions and dead letters.

SQLAlchemy 2.0 async over SQLite (aiosqlite, the embedded default) or PostgreSQL
(asyncpg); schema managed by Alembic (:func:`migrate`). The :class:`Recorder`
fills the :class:`Store` from a site's ``EVENTS`` and ``DLQ`` streams; the CLI
reads it (``sitemesh status``, ``sitemesh show TASK_ID``). The site's CRM tables
(:class:`CustomerRow`, :class:`AccountRow`, :class:`CustomerNoteRow`) live here too,
served by the bundled ``crm`` tool (``sitemesh.tools.servers``).
"""

# ``_models`` first: it imports the other table modules (approvals, model calls, the
# vault, the CRM, tool calls) at its end, and they import ``Base`` back from it.
from ._models import Base, DeadLetterRow, PolicyDecisionRow, TaskEventRow, TaskRow

# isort: split
from ._approvals import (
    APPROVAL_STATUSES,
    ApprovalAlreadyDecided,
    ApprovalRecord,
    ApprovalRow,
    ApprovalStatus,
    UnknownApproval,
    decide_approval,
    get_approval,
    list_approvals,
    request_approval,
    undo_decision,
)
from ._audit import AUDIT_ACTIONS, AuditEntry, AuditRow, audit, read_audit
from ._crm_models import AccountRow, CustomerNoteRow, CustomerRow
from ._db import alembic_config, create_engine, is_sqlite, migrate, sqlite_path
from ._model_calls import BudgetCounterRow, BudgetHoldRow, ModelCallRow
from ._recorder import RECORDER_DURABLE, Recorder
from ._report import final_answer, left_site, task_report
from ._store import STATUSES, Store
from ._tool_calls import ToolCallRow
from ._vault_models import PseudonymVaultRow
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
    "APPROVAL_STATUSES",
    "AUDIT_ACTIONS",
    "RECORDER_DURABLE",
    "STATUSES",
    "AccountRow",
    "ApprovalAlreadyDecided",
    "ApprovalRecord",
    "ApprovalRow",
    "ApprovalStatus",
    "AuditEntry",
    "AuditRow",
    "Base",
    "BudgetCounterRow",
    "BudgetHoldRow",
    "CustomerNoteRow",
    "CustomerRow",
    "DeadLetterRow",
    "DeadLetterView",
    "DecisionView",
    "EntityCountView",
    "ModelCallRow",
    "PolicyDecisionRow",
    "PseudonymVaultRow",
    "Recorder",
    "StatusCounts",
    "Store",
    "TaskEventRow",
    "TaskEventView",
    "TaskRow",
    "TaskSummary",
    "TaskView",
    "ToolCallRow",
    "UnknownApproval",
    "alembic_config",
    "audit",
    "create_engine",
    "decide_approval",
    "final_answer",
    "get_approval",
    "is_sqlite",
    "left_site",
    "list_approvals",
    "migrate",
    "read_audit",
    "request_approval",
    "sqlite_path",
    "task_report",
    "undo_decision",
]
