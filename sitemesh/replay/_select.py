"""Which recorded tasks a replay re-runs: by task id, time range or sequence range."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import msgspec
from nats.js import JetStreamContext

from ..bus import HDR_MSG_ID, HDR_TASK_ID, Subjects
from ._readback import StreamRecord, read_all


class _TaskIdOnly(msgspec.Struct):
    task_id: str | None = None


_TASK_ID_DECODER = msgspec.json.Decoder(_TaskIdOnly)


@dataclass(frozen=True, slots=True)
class Selection:
    """What to replay. Criteria combine (a task must meet all that are given).

    Attributes:
        task_ids: only these tasks; empty: any.
        since: first stored time (timezone-aware), inclusive.
        until: last stored time (timezone-aware), inclusive.
        seq_from: first sequence of :attr:`stream`, inclusive.
        seq_to: last sequence of :attr:`stream`, inclusive.
        stream: the stream the ranges apply to; ``None``: ``TASKS_<site>``. For
            another stream (``EVENTS_<site>``, ``WORK_<site>``, ``DLQ_<site>``) the
            tasks named by the ``sm-task-id`` headers of its selected messages are
            replayed.
    """

    task_ids: tuple[str, ...] = ()
    since: datetime | None = None
    until: datetime | None = None
    seq_from: int | None = None
    seq_to: int | None = None
    stream: str | None = None


def recorded_task_id(rec: StreamRecord, site: str) -> str:
    """The task id the router gave (or will give) a recorded task message.

    Same order as :class:`sitemesh.edge_node.Ingress`: the task's own ``task_id``,
    the ``sm-task-id`` header, the ``Nats-Msg-Id``, else ``<site>-<seq>``.
    """
    try:
        own = _TASK_ID_DECODER.decode(rec.data).task_id
    except msgspec.MsgspecError:
        own = None
    return own or rec.headers.get(HDR_TASK_ID) or rec.headers.get(HDR_MSG_ID) or f"{site}-{rec.seq}"


async def select_tasks(
    js: JetStreamContext, subjects: Subjects, selection: Selection
) -> list[tuple[str, StreamRecord]]:
    """The recorded task messages ``selection`` picks, in stream order.

    A task submitted more than once (a redrive, a re-submission after the
    duplicate window) is replayed once, from its latest message.

    Args:
        js: a JetStream context.
        subjects: the live site's subject map.
        selection: the criteria.

    Returns:
        ``(task id, task message)`` pairs from ``TASKS_<site>``.
    """
    wanted = set(selection.task_ids)
    bounds = {
        "seq_from": selection.seq_from,
        "seq_to": selection.seq_to,
        "since": selection.since,
        "until": selection.until,
    }
    other = selection.stream not in (None, subjects.tasks_stream)
    if other:
        assert selection.stream is not None
        named = {
            tid
            for rec in await read_all(js, selection.stream, **bounds)
            if (tid := rec.headers.get(HDR_TASK_ID))
        }
        wanted = (wanted & named) if wanted else named
        if not wanted:
            return []
        bounds = {}
    picked: dict[str, StreamRecord] = {}
    for rec in await read_all(js, subjects.tasks_stream, subject=subjects.all_tasks, **bounds):
        tid = recorded_task_id(rec, subjects.site)
        if wanted and tid not in wanted:
            continue
        picked.pop(tid, None)
        picked[tid] = rec
    return sorted(picked.items(), key=lambda kv: kv[1].seq)
