"""``sitemesh dlq``: a fixed poison message is re-processed exactly once, however
often it is redriven."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import pytest
from nats.js import JetStreamContext
from rich.console import Console

from sitemesh.bus import (
    HDR_MSG_ID,
    HDR_TASK_ID,
    MsgContext,
    NatsServer,
    Outbound,
    Subjects,
    Worker,
    provision,
)
from sitemesh.config import BusSettings, NatsSettings, Settings
from sitemesh.errors import PermanentError
from sitemesh.replay import (
    HDR_REDRIVE_OF,
    DeadLetterNotFound,
    find_dead_letter,
    list_dead_letters,
    redrive,
)
from tests.conftest import assert_eventually

pytestmark = pytest.mark.timeout(60)


class Poisonable:
    """A handler that rejects ``poison`` payloads until fixed, and counts the rest."""

    def __init__(self) -> None:
        self.broken = True
        self.processed: Counter[bytes] = Counter()
        self.headers: dict[bytes, dict[str, str]] = {}

    async def __call__(self, data: bytes, ctx: MsgContext) -> Sequence[Outbound]:
        if self.broken and data.startswith(b"poison"):
            raise PermanentError("the planner cannot read poison (yet)", field="$.body")
        self.processed[data] += 1
        self.headers[data] = dict(ctx.headers)
        return []


async def _send(js: JetStreamContext, subjects: Subjects, data: bytes, task_id: str) -> None:
    await js.publish(
        subjects.work("planner"),
        data,
        headers={HDR_MSG_ID: f"{task_id}:work:planner", HDR_TASK_ID: task_id},
    )


async def test_redrive_reprocesses_a_fixed_poison_message_exactly_once(
    js: JetStreamContext, site: str, bus_settings: BusSettings
) -> None:
    subjects = Subjects(site)
    await provision(js, subjects, bus_settings)
    handler = Poisonable()
    stream, durable, _ = subjects.consumer_for("planner")
    worker = Worker(
        js, site=site, role="planner", stream=stream, durable=durable,
        decoder=bytes, handler=handler, settings=bus_settings,
    )  # fmt: skip
    async with worker:
        await _send(js, subjects, b"poison-1", "t-poison")
        await _send(js, subjects, b"fine-1", "t-fine-1")
        letters = await assert_eventually(lambda: list_dead_letters(js, subjects), timeout_s=10)
        assert [d.letter.task_id for d in letters] == ["t-poison"]
        dlq_seq = letters[0].seq
        assert letters[0].redrive is None
        assert handler.processed == Counter({b"fine-1": 1})
        shown = await find_dead_letter(js, subjects, "t-poison")
        assert shown.seq == dlq_seq
        assert shown.letter.original == b"poison-1"
        assert shown.letter.error_class == "PermanentError"

        handler.broken = False  # the fix is deployed
        first = await redrive(js, subjects, str(dlq_seq))
        second = await redrive(js, subjects, str(dlq_seq))
        by_task = await redrive(js, subjects, "t-poison")
        assert not first.already
        assert second.already
        assert by_task.already
        assert first.msg_id == f"t-poison:work:planner:redrive:{dlq_seq}"
        assert (second.stream, second.seq) == (first.stream, first.seq)

        # even with the redrive record gone, JetStream dedupes the same msg id
        kv = await js.key_value(subjects.redrive_bucket)
        await kv.purge(str(dlq_seq))
        again = await redrive(js, subjects, str(dlq_seq))
        assert again.already
        assert again.seq == first.seq

        await _send(js, subjects, b"fine-2", "t-fine-2")  # processed after the redrives
        await assert_eventually(lambda: handler.processed[b"fine-2"] == 1, timeout_s=10)
        await assert_eventually(lambda: handler.processed[b"poison-1"] == 1, timeout_s=10)
    assert handler.processed == Counter({b"fine-1": 1, b"poison-1": 1, b"fine-2": 1})
    assert handler.headers[b"poison-1"][HDR_REDRIVE_OF] == f"{subjects.dlq_stream}:{dlq_seq}"
    assert handler.headers[b"poison-1"][HDR_TASK_ID] == "t-poison"
    listed = await list_dead_letters(js, subjects, role="planner")
    assert len(listed) == 1
    assert listed[0].redrive is not None
    assert listed[0].redrive.seq == first.seq


async def test_unknown_dead_letter(
    js: JetStreamContext, site: str, bus_settings: BusSettings
) -> None:
    subjects = Subjects(site)
    await provision(js, subjects, bus_settings)
    assert await list_dead_letters(js, subjects) == []
    with pytest.raises(DeadLetterNotFound):
        await redrive(js, subjects, "nope")
    with pytest.raises(DeadLetterNotFound):
        await find_dead_letter(js, subjects, "7")


async def test_cli_dlq_list_show_redrive(
    js: JetStreamContext,
    site: str,
    bus_settings: BusSettings,
    nats_server: NatsServer,
    tmp_path: Path,
) -> None:
    from sitemesh.cli._dlq_cmds import dlq_list, dlq_redrive, dlq_show

    subjects = Subjects(site)
    await provision(js, subjects, bus_settings)
    handler = Poisonable()
    stream, durable, _ = subjects.consumer_for("planner")
    settings = Settings(
        site=site, state_dir=tmp_path, nats=NatsSettings(url=nats_server.client_url),
        bus=bus_settings,
    )  # fmt: skip

    def run() -> Console:
        return Console(record=True, width=250)

    async with Worker(
        js, site=site, role="planner", stream=stream, durable=durable,
        decoder=bytes, handler=handler, settings=bus_settings,
    ):  # fmt: skip
        console = run()
        assert await dlq_list(settings, console) == 0
        assert "no dead letters" in console.export_text()
        await _send(js, subjects, b'poison {"body": "x"}', "t-cli")
        await assert_eventually(lambda: list_dead_letters(js, subjects), timeout_s=10)
        console = run()
        assert await dlq_list(settings, console, role="planner") == 0
        out = console.export_text()
        assert "t-cli" in out
        assert "PermanentError" in out
        narrow = Console(record=True, width=40)
        assert await dlq_list(settings, narrow, as_json=True) == 0
        (letter,) = json.loads(narrow.export_text())["dead_letters"]
        assert (letter["task_id"], letter["error_class"]) == ("t-cli", "PermanentError")
        assert letter["redriven_seq"] is None
        assert "original" not in letter
        console = run()
        assert await dlq_show(settings, console, "t-cli") == 0
        assert "cannot read poison" in console.export_text()
        handler.broken = False
        console = run()
        assert await dlq_redrive(settings, console, "t-cli") == 0
        assert "redriven dead letter" in console.export_text()
        console = run()
        assert await dlq_redrive(settings, console, "t-cli") == 0
        assert "already redriven" in console.export_text()
        await assert_eventually(lambda: handler.processed[b'poison {"body": "x"}'] == 1)
        console = run()
        assert await dlq_show(settings, console, "999") == 1
        assert await dlq_redrive(settings, run(), "nope") == 1
