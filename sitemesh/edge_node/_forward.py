"""The site side of the boundary: forward escalations as structured incidents, finalise answers.

At the escalation step, a task that the escalation agent escalated and whose policy
decision allows the cloud (``allow_cloud``, or ``require_approval`` once approved) is
not answered on the site. Instead :class:`CloudForwarder`:

1. keeps the site's own answer as a draft in the site-local KV bucket
   ``sm_pending_<site>`` (it carries PII and never leaves);
2. pseudonymises the task's text, its customer handle, the plan's step texts and the
   findings' device names with typed placeholders stable within the task (the mapping
   goes encrypted into the site's vault), only to learn which identifiers they hold;
3. builds the incident from structured fields alone (:func:`build_incident`): no text a
   person, a ticket or a site model wrote crosses, not even pseudonymised. Steps are
   action names and grounding ids, findings their kind, severity, time and device,
   reasons codes (:func:`sitemesh.schemas.reason_codes`), plus the triage label and the
   knowledge-base document when there are any; a past case's ids only as opaque
   references. Data minimisation (GDPR Art. 5(1)(c)) instead of detection: NER misses
   ``maria[at]outlook[dot]com`` and lower-case names, so what it misses must not be sent;
4. runs the **egress guard** over the finished incident (every field format-checked,
   ``cloud_incident.v2`` is a closed spec): anything out of format blocks it
   (``EgressBlocked`` -> dead letter + audit), and if the analyzer fails nothing leaves
   either (``PiiAnalyzerError``; fail closed);
5. publishes ``cloud_incident.v2`` on ``sm.v1.out.<site>.escalation`` (OUTBOX).

:class:`InboxFinaliser` handles ``cloud_answer.v1`` from ``INBOX_<site>``: it
re-identifies the placeholders with the vault and publishes the final answer
(``route="cloud"``) on the task's event subject.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import msgspec
from nats.js.errors import KeyNotFoundError
from nats.js.kv import KeyValue

from ..bus import MsgContext, Outbound, Subjects, msg_id, token
from ..errors import EgressBlocked, PermanentError
from ..schemas import (
    CloudAnswer,
    CloudIncident,
    FinalAnswer,
    StepCompleted,
    SupportTicket,
    WorkItem,
    utcnow,
)
from ..workflows import cloud_allowed, data_class_raised
from ._incident import References, build_incident, pseudonymized_texts

_DRAFT = msgspec.json.Decoder(FinalAnswer)
_ENC = msgspec.json.Encoder()
_INCIDENT = msgspec.json.Decoder(CloudIncident)


class Pseudonymizing(Protocol):
    """What forwarding needs from ``sitemesh.policy.Pseudonymizer``."""

    async def pseudonymize(
        self,
        task_id: str,
        texts: dict[str, str],
        *,
        known: dict[str, list[str]] | None = None,
    ) -> object: ...

    async def reidentify(self, task_id: str, text: str) -> str: ...


class Guard(Protocol):
    """What forwarding needs from ``sitemesh.policy.EgressGuard``."""

    def check(self, payload: msgspec.Struct) -> None: ...


def forwards(item: WorkItem, answer: FinalAnswer) -> bool:
    """Whether the task goes to the cloud: escalated, the policy allows it
    (``allow_cloud``, or ``require_approval`` after a person approved), and no step
    raised its data class above the class the policy decided on (a tool response with
    personal data: :func:`sitemesh.workflows.data_class_raised`; fail closed)."""
    return (
        answer.outcome == "escalate"
        and cloud_allowed(item.decision)
        and data_class_raised(item) is None
    )


def _structured_identifiers(item: WorkItem) -> dict[str, list[str]]:
    """Values that identify a person by the field they are in, whatever NER says
    (GDPR Art. 4(1) "online identifier"): the ticket's ``customer`` handle, also
    written ``@handle`` in tweets."""
    task = item.task
    if isinstance(task, SupportTicket) and task.customer and task.customer.strip():
        handle = task.customer.strip()
        return {"CUSTOMER_ID": [f"@{handle}", handle]}
    return {}


class CloudForwarder:
    """Turns an escalated, cloud-allowed task into a structured outbox message.

    The caller's task id never leaves: the incident, its subject, headers and
    ``Nats-Msg-Id`` carry the task's opaque reference (``refs.ref(site, task_id)``),
    and the draft answer waits in ``pending`` under that reference, which is how
    :class:`InboxFinaliser` maps the cloud's answer back. The dedupe id on the hub,
    ``<site>:<reference>:out:escalation``, is unique per site.

    Args:
        subjects: the site's subjects.
        pseudonymizer: replaces PII with placeholders and stores the mapping.
        guard: format-checks (and re-scans) the finished incident (fail closed).
        pending: the site-local bucket for the draft answer.
        refs: the site's reference function (:class:`sitemesh.policy.BoundaryRefs`).
    """

    def __init__(
        self,
        subjects: Subjects,
        pseudonymizer: Pseudonymizing,
        guard: Guard,
        pending: KeyValue,
        refs: References,
    ) -> None:
        self._subjects = subjects
        self._pseudo = pseudonymizer
        self._guard = guard
        self._pending = pending
        self._refs = refs

    async def __call__(
        self, item: WorkItem, answer: FinalAnswer, ctx: MsgContext
    ) -> Sequence[Outbound] | None:
        """Forward ``item`` if :func:`forwards`; ``None`` to answer on the site.

        Raises:
            EgressBlocked: the incident has a field out of format, an action outside
                the allow-list, or a structured identifier in it (dead-lettered).
            PiiAnalyzerError: the analyzer failed; nothing leaves.
        """
        if not forwards(item, answer):
            return None
        env = item.envelope
        tid = env.task_id
        ref = self._refs.ref(env.site, tid)
        known = _structured_identifiers(item)
        done = await self._pseudo.pseudonymize(tid, pseudonymized_texts(item), known=known)
        anon: dict[str, str] = done.texts  # type: ignore[attr-defined]
        mapping: dict[str, str] = done.mapping  # type: ignore[attr-defined]
        incident = build_incident(
            item, answer, ref=ref, refs=self._refs, anon=anon, placeholders=mapping.keys()
        )
        self._guard.check(incident)  # raises: nothing leaves
        wire = _ENC.encode(incident)
        for entity_type, values in known.items():
            if any(v.encode() in wire for v in values):
                raise EgressBlocked([("$", entity_type)])
        try:  # what the hub will decode it with: a value its patterns reject stays here
            _INCIDENT.decode(wire)
        except msgspec.ValidationError as exc:
            raise EgressBlocked([("$", "SCHEMA_INVALID")]) from exc
        await self._pending.put(token(ref), _ENC.encode(answer))
        step = StepCompleted(
            task_id=tid,
            site=env.site,
            role="escalation",
            summary=(
                f"forwarded to cloud, structured: {len(incident.steps)} steps, "
                f"{len(incident.placeholders)} placeholders, reasons "
                f"{', '.join(incident.reasons) or 'none'}; egress guard passed "
                f"(rule {item.decision.rule_id})"
            ),
            started_at=ctx.published_at or utcnow(),
            deliveries=ctx.num_delivered,
            worker=ctx.worker,
            # what left the site, exactly (`sitemesh show` prints it)
            output_type=str(incident.__struct_config__.tag),
            output=msgspec.Raw(wire),
        )
        dclass = env.data_class
        return [
            Outbound(self._subjects.event(tid, "escalation"), step,
                     msg_id(tid, "forward", "escalation"),
                     tid, dclass),
            # the causation id too: the default would be the input's msg id, which
            # starts with the caller's task id
            Outbound(self._subjects.out("escalation"), incident,
                     msg_id(f"{env.site}:{ref}", "out", "escalation"), ref, "internal",
                     causation_id=f"{env.site}:{ref}"),
        ]  # fmt: skip


class InboxFinaliser:
    """Handler of ``cloud_answer.v1`` on the site's ``INBOX_<site>`` stream.

    Args:
        subjects: the site's subjects.
        pseudonymizer: re-identifies placeholders from the vault.
        pending: the bucket holding each forwarded task's draft answer.
    """

    def __init__(
        self, subjects: Subjects, pseudonymizer: Pseudonymizing, pending: KeyValue
    ) -> None:
        self._subjects = subjects
        self._pseudo = pseudonymizer
        self._pending = pending

    async def __call__(self, answer: CloudAnswer, ctx: MsgContext) -> Sequence[Outbound]:
        """Re-identify ``answer`` and publish the task's final answer.

        Raises:
            PermanentError: no draft for the task (not forwarded by this site).
        """
        ref = answer.task_id  # the opaque reference the incident carried
        if answer.site != self._subjects.site:
            raise PermanentError(
                f"answer for site {answer.site!r} reached site {self._subjects.site!r}",
                field="$.site",
            )
        try:
            entry = await self._pending.get(token(ref))
        except KeyNotFoundError as exc:
            raise PermanentError(
                f"no forwarded task with reference {ref!r} at site {self._subjects.site}",
                field="$.task_id",
            ) from exc
        draft = _DRAFT.decode(entry.value or b"")
        tid = draft.task_id
        final = msgspec.structs.replace(
            draft,
            route="cloud",
            customer_message=await self._pseudo.reidentify(tid, answer.customer_message),
            proposal=await self._pseudo.reidentify(tid, answer.proposal),
            answered_at=utcnow(),
        )
        step = StepCompleted(
            task_id=tid,
            site=self._subjects.site,
            role="escalation",
            summary=f"cloud answer ({answer.source}, {answer.agent}) re-identified on site",
            started_at=ctx.published_at or utcnow(),
            deliveries=ctx.num_delivered,
            worker=ctx.worker,
        )
        ev, dc = self._subjects.event(tid, "escalation"), draft.data_class
        return [
            Outbound(ev, step, msg_id(tid, "reidentify", "escalation"), tid, dc),
            # create-only on the answer subject: at most one answer per task
            Outbound(self._subjects.answer(tid, final.tenant), final,
                     msg_id(tid, "final", "escalation"),
                     tid, dc, create_only=True),
        ]  # fmt: skip
