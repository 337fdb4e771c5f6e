"""Per-task comparison of an original run with its replay."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from ._outcome import Outcome

MISSING: Final = "<missing>"
"""Shown for a value one side does not have."""


@dataclass(frozen=True, slots=True)
class Change:
    """One difference between the original and the replay.

    Attributes:
        path: JSON path of the value (``$.decision.rule_id``, ``$.steps.plan.steps[2]``).
        original: the original value (``"<missing>"`` if absent).
        replayed: the replayed value (``"<missing>"`` if absent).
    """

    path: str
    original: Any
    replayed: Any


@dataclass(frozen=True, slots=True)
class TaskDiff:
    """How one task's replay compares with its original run.

    Attributes:
        task_id: the task.
        original_status: ``answered``, ``failed``, ``parked`` or ``pending``.
        replayed_status: the same for the replay.
        changes: every difference, in path order; empty when they match.
    """

    task_id: str
    original_status: str
    replayed_status: str
    changes: tuple[Change, ...] = ()

    @property
    def matches(self) -> bool:
        """``True`` when the replay reproduced every compared value."""
        return not self.changes

    @property
    def sections(self) -> tuple[str, ...]:
        """Top-level parts that differ (``decision``, ``steps``, ``final``...)."""
        return tuple(dict.fromkeys(c.path.split(".")[1].split("[")[0] for c in self.changes))


@dataclass(frozen=True, slots=True)
class DiffReport:
    """The result of a replay: one :class:`TaskDiff` per replayed task.

    Attributes:
        tasks: per task, in the order the tasks were recorded.
        replay_id: the sandbox id (``sm.replay.<id>``).
        elapsed_s: wall time of the sandbox run in seconds.
        policy_versions: ``(original, replayed)`` policy versions seen.
    """

    tasks: tuple[TaskDiff, ...]
    replay_id: str = ""
    elapsed_s: float = 0.0
    policy_versions: tuple[frozenset[str], frozenset[str]] = field(
        default=(frozenset(), frozenset())
    )

    @property
    def changed(self) -> tuple[TaskDiff, ...]:
        """Tasks whose replay differs."""
        return tuple(t for t in self.tasks if not t.matches)

    @property
    def empty(self) -> bool:
        """``True`` when every task was reproduced exactly."""
        return not self.changed


def _key(path: str, k: str) -> str:
    return f"{path}.{k}" if k.isidentifier() else f'{path}["{k}"]'


def diff_values(original: Any, replayed: Any, path: str = "$") -> list[Change]:
    """Every leaf where ``original`` and ``replayed`` (JSON-like builtins) differ.

    Dicts are compared key by key, lists index by index (a length change shows as
    ``<missing>`` entries), anything else by equality.

    Args:
        original: the original value.
        replayed: the replayed value.
        path: JSON path of the two values.

    Returns:
        The differences, in path order.
    """
    if isinstance(original, Mapping) and isinstance(replayed, Mapping):
        out: list[Change] = []
        for k in sorted(original.keys() | replayed.keys()):
            sub = _key(path, str(k))
            if k not in replayed:
                out.append(Change(sub, original[k], MISSING))
            elif k not in original:
                out.append(Change(sub, MISSING, replayed[k]))
            else:
                out.extend(diff_values(original[k], replayed[k], sub))
        return out
    if isinstance(original, list) and isinstance(replayed, list):
        out = []
        for i in range(max(len(original), len(replayed))):
            a = original[i] if i < len(original) else MISSING
            b = replayed[i] if i < len(replayed) else MISSING
            out.extend(diff_values(a, b, f"{path}[{i}]"))
        return out
    if original == replayed and type(original) is type(replayed):
        return []
    return [Change(path, original, replayed)]


def diff_task(task_id: str, original: Outcome | None, replayed: Outcome | None) -> TaskDiff:
    """Compare one task's outcomes (``None``: the side has no record of the task)."""
    a = original or {"status": "missing"}
    b = replayed or {"status": "missing"}
    return TaskDiff(
        task_id=task_id,
        original_status=str(a.get("status")),
        replayed_status=str(b.get("status")),
        changes=tuple(diff_values(a, b)),
    )
