"""The one subject and stream map (DESIGN section 3). Nothing else spells subjects.

| subject                                 | meaning                        | stream            |
|-----------------------------------------|--------------------------------|-------------------|
| ``sm.v1.task.<site>.<kind>``            | a task submitted (ingress)     | ``TASKS_<site>``  |
| ``sm.v1.task.<site>.<tenant>.<kind>``   | a task of one tenant           | ``TASKS_<site>``  |
| ``sm.v1.work.<site>.<role>``            | work for an agent role         | ``WORK_<site>``   |
| ``sm.v1.event.<site>.<task>.<r>``       | events published by ``<r>``    | ``EVENTS_<site>`` |
| ``sm.v1.event.<site>.<task>.final.<t>`` | the final answer (create-only) | ``EVENTS_<site>`` |
| ``sm.v1.dlq.<site>.<role>``             | dead letters, with the reason  | ``DLQ_<site>``    |
| ``sm.v1.out.<site>.<role>``             | anonymised, leaving the site   | ``OUTBOX_<site>`` |
| ``sm.v1.in.<site>.<task>``              | cloud answers coming back      | ``INBOX_<site>``  |

``<t>`` is the task's tenant (:func:`tenant_token`).

Across the site boundary (``sitemesh.topology``): the site's ``EGRESS`` account holds
``OUTBOX_<site>`` and ``INBOX_LANDING_<site>``; the hub holds ``CLOUD_IN`` (sources every
outbox) and ``CLOUD_OUT`` (``sm.v1.in.>``, cloud answers for every site).

A replay sandbox (``sitemesh replay``) uses the same map under the prefix
``sm.replay.<id>`` with stream names ``<STREAM>_<site>_R<id>``:
``Subjects.sandbox(site, id)``.

The last token of an event subject names its producer (``router``, an agent role,
``operator``...), so a role's NATS permissions can allow it exactly its own events
(``sm.v1.event.<site>.*.<role>``). The final answer has a token of its own,
:data:`ANSWER_TAIL`, that only the final role (``escalation``) may publish, and it is
published *create-only* (``Nats-Expected-Last-Subject-Sequence: 0``, no
``Nats-Msg-Id``): JetStream's stream-wide duplicate check cannot be used by another
role to have the real answer dropped, and a task has at most one stored answer.

The task's tenant (:func:`tenant_token`) is the answer subject's last token, so a
tenant's client identity can be allowed its own tenant's answers and no other
(``sm.v1.event.<site>.*.final.<tenant>``, ``docs/security.md``). The same identity
publishes its tasks on ``sm.v1.task.<site>.<tenant>.<kind>``; the router refuses a
task whose ``tenant`` is not the subject's.

Max-deliveries advisories of the site's consumers are captured in
``ADVISORIES_<site>`` so that a message nobody could process is dead-lettered even
when no process was listening at the time.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

PREFIX: Final = "sm.v1"
"""Version prefix of every sitemesh subject."""

REPLAY_PREFIX: Final = "sm.replay"
"""Prefix of replay sandboxes: ``sm.replay.<replay id>`` replaces :data:`PREFIX`."""

HDR_MSG_ID: Final = "Nats-Msg-Id"
HDR_SCHEMA: Final = "sm-schema"
HDR_TASK_ID: Final = "sm-task-id"
HDR_CAUSATION: Final = "sm-causation-id"
HDR_DATA_CLASS: Final = "sm-data-class"
HDR_TRACEPARENT: Final = "traceparent"
HDR_TRACESTATE: Final = "tracestate"
HDR_EXPECTED_LAST_SUBJECT_SEQ: Final = "Nats-Expected-Last-Subject-Sequence"
HDR_LOGICAL_ID: Final = "sm-msg-id"
"""The logical message id of a create-only publish (the final answer), which carries
no ``Nats-Msg-Id``: for traces and causation only, never for deduplication."""


def message_id(headers: Mapping[str, str]) -> str | None:
    """A message's id: its ``Nats-Msg-Id``, else its :data:`HDR_LOGICAL_ID` (a
    create-only publish), else ``None``."""
    return headers.get(HDR_MSG_ID) or headers.get(HDR_LOGICAL_ID)


"""JetStream stores the message only if the subject's last sequence is this value
(``"0"``: the subject holds no message yet; otherwise "wrong last sequence")."""

ANSWER_TAIL: Final = "final"
"""Producer token of a task's final-answer subject
(``sm.v1.event.<site>.<task>.final.<tenant>``). Reserved: no role may be named so (its
event permission would cover the answers)."""

CLOUD_IN: Final = "CLOUD_IN"
"""Hub stream sourcing every site's ``OUTBOX_<site>`` (no subjects of its own)."""

CLOUD_OUT: Final = "CLOUD_OUT"
"""Hub stream of cloud answers, subjects :data:`ALL_IN`; each site sources its part."""

ALL_OUT: Final = f"{PREFIX}.out.>"
"""Every site's outbox subjects."""

ALL_IN: Final = f"{PREFIX}.in.>"
"""Every site's inbox subjects."""

_TOKEN = re.compile(r"[^A-Za-z0-9_-]")


def token(value: str) -> str:
    """Make ``value`` a single subject token: ``.``, ``:``, spaces, wildcards -> ``_``."""
    return _TOKEN.sub("_", value)


_TENANT: Final = re.compile(r"[A-Za-z0-9-][A-Za-z0-9_-]{0,63}")


def tenant_token(tenant: str) -> str:
    """The subject token of ``tenant``: the name itself when it is 1-64 characters of
    ``[A-Za-z0-9_-]`` not starting with ``_``, else ``_`` and 16 hex of its SHA-256.

    Distinct tenants get distinct tokens: :func:`token` would map ``a.b`` and ``a_b``
    to one token, and so give one tenant's client the other's answers. A tenant that
    has a client identity of its own must be spelled as a token (see
    :func:`is_tenant_token`).
    """
    if is_tenant_token(tenant):
        return tenant
    return "_" + hashlib.sha256(tenant.encode()).hexdigest()[:16]


def is_tenant_token(tenant: str) -> bool:
    """Whether ``tenant`` is its own subject token (:func:`tenant_token`)."""
    return _TENANT.fullmatch(tenant) is not None


def msg_id(task_id: str, step: str, role: str) -> str:
    """The ``Nats-Msg-Id`` for what ``role`` publishes at ``step`` of ``task_id``.

    Derived, never random, so a retried step cannot be published twice within the
    stream's duplicate window (JetStream message deduplication).
    """
    return f"{task_id}:{step}:{role}"


def _stream_suffix(prefix: str) -> str:
    """Stream-name suffix of a subject prefix: ``""`` for :data:`PREFIX`, ``_R<id>`` for
    ``sm.replay.<id>``, ``_X<prefix as a token>`` for any other prefix."""
    if prefix == PREFIX:
        return ""
    if prefix.startswith(REPLAY_PREFIX + "."):
        return "_R" + token(prefix[len(REPLAY_PREFIX) + 1 :])
    return "_X" + token(prefix)


@dataclass(frozen=True, slots=True)
class Subjects:
    """Subjects and stream names of one site. Build with ``Subjects(site)``.

    ``Subjects(site, prefix="sm.replay.<id>")`` (or :meth:`sandbox`) is the same map
    in an isolated namespace: every subject starts with ``prefix`` instead of
    :data:`PREFIX` and every stream name gets the suffix ``_R<id>``
    (``TASKS_<site>_R<id>``), so a replay sandbox never shares a subject or a
    stream with the live site. The default map is unchanged.

    Attributes:
        site: the site name.
        prefix: the subject prefix; :data:`PREFIX` for the live site.
    """

    site: str
    prefix: str = PREFIX

    @classmethod
    def sandbox(cls, site: str, replay_id: str) -> Subjects:
        """The sandbox map of ``site`` for replay ``replay_id`` (``sm.replay.<id>``).

        Args:
            site: the site whose tasks are replayed.
            replay_id: a short id, one subject token (``[A-Za-z0-9_-]``).

        Raises:
            ValueError: ``replay_id`` is empty or not a single subject token.
        """
        if not replay_id or token(replay_id) != replay_id:
            raise ValueError(f"replay id {replay_id!r} must be 1+ characters of [A-Za-z0-9_-]")
        return cls(site, prefix=f"{REPLAY_PREFIX}.{replay_id}")

    @property
    def is_sandbox(self) -> bool:
        """``True`` unless this is the live map (prefix :data:`PREFIX`)."""
        return self.prefix != PREFIX

    @property
    def stream_suffix(self) -> str:
        """Appended to every stream name: ``""`` live, ``_R<id>`` in a replay sandbox."""
        return _stream_suffix(self.prefix)

    @property
    def redrive_bucket(self) -> str:
        """KV bucket recording ``sitemesh dlq redrive`` of the site's dead letters."""
        return f"sitemesh_redrive_{self.site}{self.stream_suffix}"

    # -- subjects -----------------------------------------------------------------
    def task(self, kind: str, tenant: str | None = None) -> str:
        """Subject of a task of ``kind``: ``sm.v1.task.<site>.<kind>``, or with a
        ``tenant`` ``sm.v1.task.<site>.<tenant>.<kind>`` (what a tenant's client
        identity may publish). The kind is always the last token."""
        if tenant is None:
            return f"{self.prefix}.task.{self.site}.{kind}"
        return f"{self.prefix}.task.{self.site}.{tenant_token(tenant)}.{kind}"

    def tasks_of(self, tenant: str) -> str:
        """Every task subject of ``tenant`` (``sm.v1.task.<site>.<tenant>.*``)."""
        return f"{self.prefix}.task.{self.site}.{tenant_token(tenant)}.*"

    def work(self, role: str) -> str:
        return f"{self.prefix}.work.{self.site}.{role}"

    def event(self, task_id: str, producer: str) -> str:
        """Subject of a progress event of ``task_id`` published by ``producer`` (a role,
        ``operator``...): ``sm.v1.event.<site>.<task>.<producer>``.

        Raises:
            ValueError: ``producer`` is :data:`ANSWER_TAIL` (use :meth:`answer`).
        """
        if producer == ANSWER_TAIL:
            raise ValueError(f"{ANSWER_TAIL!r} is reserved for answers; use Subjects.answer")
        return f"{self.prefix}.event.{self.site}.{token(task_id)}.{token(producer)}"

    def answer(self, task_id: str, tenant: str) -> str:
        """Subject of the final answer of ``task_id``, a task of ``tenant``:
        ``sm.v1.event.<site>.<task>.final.<tenant>`` (:func:`tenant_token`)."""
        return (
            f"{self.prefix}.event.{self.site}.{token(task_id)}.{ANSWER_TAIL}."
            f"{tenant_token(tenant)}"
        )

    def task_answer(self, task_id: str) -> str:
        """The final answer of ``task_id`` whatever its tenant (a filter subject:
        ``sm.v1.event.<site>.<task>.final.*``)."""
        return f"{self.prefix}.event.{self.site}.{token(task_id)}.{ANSWER_TAIL}.*"

    def answers_of(self, tenant: str) -> str:
        """Every final answer of ``tenant`` (``sm.v1.event.<site>.*.final.<tenant>``)."""
        return f"{self.prefix}.event.{self.site}.*.{ANSWER_TAIL}.{tenant_token(tenant)}"

    def task_events(self, task_id: str) -> str:
        """Every event of ``task_id``, answer included (a filter subject)."""
        return f"{self.prefix}.event.{self.site}.{token(task_id)}.>"

    def events_by(self, producer: str) -> str:
        """Every event ``producer`` may publish (``sm.v1.event.<site>.*.<producer>``)."""
        return f"{self.prefix}.event.{self.site}.*.{token(producer)}"

    def dlq(self, role: str) -> str:
        return f"{self.prefix}.dlq.{self.site}.{role}"

    def out(self, role: str) -> str:
        return f"{self.prefix}.out.{self.site}.{role}"

    def inbox(self, task_id: str) -> str:
        return f"{self.prefix}.in.{self.site}.{token(task_id)}"

    @property
    def all_tasks(self) -> str:
        return f"{self.prefix}.task.{self.site}.>"

    @property
    def all_work(self) -> str:
        return f"{self.prefix}.work.{self.site}.>"

    @property
    def all_events(self) -> str:
        return f"{self.prefix}.event.{self.site}.>"

    @property
    def all_answers(self) -> str:
        """Every task's final answer (``sm.v1.event.<site>.*.final.*``)."""
        return f"{self.prefix}.event.{self.site}.*.{ANSWER_TAIL}.*"

    @property
    def all_dlq(self) -> str:
        return f"{self.prefix}.dlq.{self.site}.>"

    @property
    def all_out(self) -> str:
        return f"{self.prefix}.out.{self.site}.>"

    @property
    def all_in(self) -> str:
        return f"{self.prefix}.in.{self.site}.>"

    # -- streams ------------------------------------------------------------------
    @property
    def tasks_stream(self) -> str:
        return f"TASKS_{self.site}{self.stream_suffix}"

    @property
    def work_stream(self) -> str:
        return f"WORK_{self.site}{self.stream_suffix}"

    @property
    def events_stream(self) -> str:
        return f"EVENTS_{self.site}{self.stream_suffix}"

    @property
    def dlq_stream(self) -> str:
        return f"DLQ_{self.site}{self.stream_suffix}"

    @property
    def outbox_stream(self) -> str:
        """Outbox, in the site's ``EGRESS`` account; sourced by the hub's ``CLOUD_IN``."""
        return f"OUTBOX_{self.site}{self.stream_suffix}"

    @property
    def inbox_stream(self) -> str:
        """Cloud answers for the site's workers, in the ``SITE`` account."""
        return f"INBOX_{self.site}{self.stream_suffix}"

    @property
    def inbox_landing_stream(self) -> str:
        """Cloud answers as sourced from the hub, in ``EGRESS``; relayed to ``INBOX``."""
        return f"INBOX_LANDING_{self.site}{self.stream_suffix}"

    @property
    def advisories_stream(self) -> str:
        return f"ADVISORIES_{self.site}{self.stream_suffix}"

    def max_deliveries_advisories(self) -> list[str]:
        """Advisory subjects the server publishes when a consumer exhausts ``max_deliver``."""
        base = "$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES"
        return [f"{base}.{self.tasks_stream}.*", f"{base}.{self.work_stream}.*"]

    # -- consumers ----------------------------------------------------------------
    def consumer_for(self, role: str) -> tuple[str, str, str]:
        """``(stream, durable name, filter subject)`` of the pull consumer of ``role``."""
        if role == "router":
            return self.tasks_stream, "router", self.all_tasks
        return self.work_stream, role, self.work(role)

    def role_of_stream_subject(self, stream: str, durable: str) -> str:
        """The role that owns consumer ``durable`` on ``stream`` (for advisories)."""
        del stream
        return durable
