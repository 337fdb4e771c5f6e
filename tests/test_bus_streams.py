"""Provisioning, publishing and the public API of ``sitemesh.bus``."""

from __future__ import annotations

import asyncio

import msgspec
import pytest
from nats.js import JetStreamContext

import sitemesh.bus as bus
from sitemesh.bus import (
    DEADLETTER,
    RECORDER,
    Outbound,
    Publisher,
    Subjects,
    installed_roles,
    provision,
)
from sitemesh.config import BusSettings
from sitemesh.schemas import TaskFailed

EXPECTED_EXPORTS = {
    "AGENT_ENTRY_POINTS", "ALL_IN", "ALL_OUT", "Action", "CLOUD_IN", "CLOUD_OUT",
    "ArtifactInfo", "ArtifactNotFound", "KNOWLEDGE_BUCKET_PREFIX", "SiteArtifacts",
    "knowledge_bucket",
    "CONFIG_BUCKET", "CONFIG_HISTORY", "DEADLETTER", "Decision", "Document", "DocumentStore",
    "EmbeddedNats", "HDR_CAUSATION", "HDR_DATA_CLASS", "HDR_MSG_ID", "HDR_SCHEMA",
    "ANSWER_TAIL", "HDR_EXPECTED_LAST_SUBJECT_SEQ", "HDR_LOGICAL_ID", "embedded_creds",
    "message_id", "FILL_WARNING", "StreamFill", "stream_fill",
    "HDR_TASK_ID", "HDR_TRACEPARENT", "HDR_TRACESTATE", "Handler", "LiveDocument",
    "MAX_DELIVERIES_EXCEEDED", "MAX_DOCUMENT_BYTES", "MAX_MSG_BYTES", "MaxDeliveriesAdvisory",
    "MaxDeliveriesSweeper", "MsgContext", "NatsServer", "Outbound", "PREFIX",
    "ProcessMiddleware", "PubAck", "PublishMiddlewareFactory", "Publisher", "RECORDER",
    "REPLAY_PREFIX", "Revision", "SendMiddleware", "ServerBinary", "Settle", "Subjects",
    "TaskIdOf", "LocalWorkers", "LOCAL_REPLY_PREFIX", "local_reply", "Worker",
    "WorkerMiddlewareFactory", "ack_metadata",
    "backoff_s", "connect",
    "consumer_config", "consumer_configs", "dead_letter_msg_id", "dead_letter_outbounds",
    "decide", "find_nats_server",
    "free_port", "install_middleware", "installed_roles", "load_toml", "msg_id", "provision",
    "publish_middleware", "redact_url", "run_worker_until_signalled", "stream_config",
    "stream_configs", "token", "worker_middlewares", "tenant_token", "is_tenant_token",
    "DEAD_LETTER_MAX_BYTES", "TRUNCATED_ORIGINAL_BYTES", "as_stream_full", "raw_task_id",
    "TRIM_AT", "TRIM_INTERVAL_S", "Trim", "consumer_filters", "consumer_floor",
    "keep_streams", "trim_processed", "trim_stream", "work_streams", "ADMIT_BELOW",
    "ADMIT_REFRESH_S", "AdmissionGate", "Admit", "config_bucket",
    "pending_bucket", "pending_kv", "open_kv",
}  # fmt: skip


def test_public_api_is_pinned() -> None:
    assert set(bus.__all__) == EXPECTED_EXPORTS
    for name in bus.__all__:
        assert getattr(bus, name) is not None


async def _consumers(js: JetStreamContext, stream: str) -> dict[str, object]:
    return {c.name: c.config for c in await js.consumers_info(stream)}


async def test_provision_is_idempotent_and_concurrent_safe(
    js: JetStreamContext, site: str, bus_settings: BusSettings
) -> None:
    subjects = Subjects(site)
    await provision(js, subjects, bus_settings)
    await provision(js, subjects, bus_settings)
    await asyncio.gather(*(provision(js, subjects, bus_settings) for _ in range(3)))

    work = await js.stream_info(subjects.work_stream)
    assert work.config.subjects == [subjects.all_work]
    assert work.config.duplicate_window == bus_settings.duplicate_window_s
    assert work.config.max_msg_size == bus.MAX_MSG_BYTES
    consumers = await _consumers(js, subjects.work_stream)
    assert set(consumers) == set(installed_roles()) - {"router"}
    assert set(await _consumers(js, subjects.tasks_stream)) == {"router"}
    assert set(await _consumers(js, subjects.events_stream)) == {RECORDER}
    assert set(await _consumers(js, subjects.dlq_stream)) == {RECORDER}
    assert set(await _consumers(js, subjects.advisories_stream)) == {DEADLETTER}
    # the configuration bucket is the provisioning's to create (no worker may)
    assert (await js.stream_info(f"KV_{bus.CONFIG_BUCKET}")).config.name
    info = await js.consumer_info(subjects.work_stream, "planner")
    assert info.config.max_deliver == bus_settings.max_deliver
    assert info.config.ack_wait == bus_settings.ack_wait_s

    # A changed setting is applied as an update, not an error.
    changed = bus_settings.model_copy(update={"max_bytes": 1 << 20, "max_deliver": 4})
    await provision(js, subjects, changed)
    assert (await js.stream_info(subjects.work_stream)).config.max_bytes == 1 << 20
    # the streams of work have no server age limit (their processed history is trimmed);
    # the advisories keep theirs
    for stream in bus.work_streams(subjects):
        assert not (await js.stream_info(stream)).config.max_age
    adv = await js.stream_info(subjects.advisories_stream)
    assert adv.config.max_age == pytest.approx(bus_settings.max_age_s)
    assert (await js.consumer_info(subjects.work_stream, "planner")).config.max_deliver == 4


async def test_publish_dedupes_on_msg_id_and_sets_headers(
    js: JetStreamContext, site: str, bus_settings: BusSettings
) -> None:
    subjects = Subjects(site)
    await provision(js, subjects, bus_settings)
    pub = Publisher(js)
    event = TaskFailed(task_id="t-1", site=site, role="planner", reason="x", error_class="E")
    out = Outbound(
        subject=subjects.event("t-1", "planner"),
        payload=event,
        msg_id="t-1:failed:planner",
        task_id="t-1",
        data_class="internal",
        causation_id="cause-1",
    )
    first = await pub.publish(out)
    second = await pub.publish(out)
    assert not first.duplicate
    assert second.duplicate
    assert second.seq == first.seq
    state = await js.stream_info(subjects.events_stream)
    assert state.state.messages == 1

    raw = await js.get_msg(subjects.events_stream, first.seq)
    assert raw.headers is not None
    assert raw.headers[bus.HDR_MSG_ID] == "t-1:failed:planner"
    assert raw.headers[bus.HDR_SCHEMA] == "task_failed.v1"
    assert raw.headers[bus.HDR_TASK_ID] == "t-1"
    assert raw.headers[bus.HDR_CAUSATION] == "cause-1"
    assert raw.headers[bus.HDR_DATA_CLASS] == "internal"
    assert raw.data is not None
    assert msgspec.json.decode(raw.data, type=TaskFailed) == event


async def test_publish_many_is_pipelined_and_deduped(
    js: JetStreamContext, site: str, bus_settings: BusSettings
) -> None:
    subjects = Subjects(site)
    await provision(js, subjects, bus_settings)
    pub = Publisher(js)
    outs = [
        Outbound(subject=subjects.work("planner"), payload=b"%d" % (i % 50), msg_id=f"m{i % 50}")
        for i in range(100)
    ]
    acks = await pub.publish_many(outs)
    assert len(acks) == 100
    assert sum(bool(a.duplicate) for a in acks) == 50
    assert (await js.stream_info(subjects.work_stream)).state.messages == 50
