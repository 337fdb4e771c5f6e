"""The site side of the boundary: forward escalations anonymised, finalise answers.

At the escalation step, a task that the escalation agent escalated and whose policy
decision allows the cloud (``allow_cloud``, or ``require_approval`` once approved) is
not answered on the site. Instead :class:`CloudForwarder`:

1. keeps the site's own answer as a draft in the site-local KV bucket
   ``sm_pending_<site>`` (it carries PII and never leaves);
2. pseudonymises every text of the incident (task text, customer, plan steps,
   finding evidence, reasons) with typed placeholders stable within the task —
   the mapping goes encrypted into the site's vault — and then leaves the task's
   free text out altogether (data minimisation: what NER misses in it could not
   be caught); the incident carries the kind, placeholders of the identifiers
   found, the findings, the runbook-derived plan and the reasons;
3. runs the **egress guard** over the finished incident: if anything is still
   detected the message is blocked (``EgressBlocked`` → dead letter + audit), and if
   the analyzer fails nothing leaves either (``PiiAnalyzerError``; fail closed);
4. publishes ``cloud_incident.v1`` on ``sm.v1.out.<site>.escalation`` (OUTBOX).

:class:`InboxFinaliser` handles ``cloud_answer.v1`` from ``INBOX_<site>``: it
re-identifies the placeholders with the vault and publishes the final answer
(``route="cloud"``) on the task's event subject.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import msgspec
from nats.js.client import JetStreamContext
from nats.js.errors import BucketNotFoundError, KeyNotFoundError
from nats.js.kv import KeyValue

from ..bus import MsgContext, Outbound, Subjects, msg_id, token
from ..errors import EgressBlocked, PermanentError
from ..schemas import (
    CloudAnswer,
    CloudIncident,
    Diagnosis,
    FinalAnswer,
    Plan,
    StepCompleted,
    SupportTicket,
    WorkItem,
    utcnow,
)
from ..workflows import cloud_allowed

_DRAFT = msgspec.json.Decoder(FinalAnswer)
_ENC = msgspec.json.Encoder()


class References(Protocol):
    """What forwarding needs from ``sitemesh.policy.BoundaryRefs``."""

    def ref(self, site: str, task_id: str) -> str: ...


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


def pending_bucket(site: str) -> str:
    """Name of the site-local KV bucket of answers waiting for the cloud."""
    return f"sm_pending_{site}"


async def pending_kv(js: JetStreamContext, site: str) -> KeyValue:
    """The pending-answers bucket of ``site`` (created on first use, file storage)."""
    from nats.js.api import KeyValueConfig

    try:
        return await js.key_value(pending_bucket(site))
    except BucketNotFoundError:
        return await js.create_key_value(
            KeyValueConfig(bucket=pending_bucket(site), history=1, description="drafts")
        )


def forwards(item: WorkItem, answer: FinalAnswer) -> bool:
    """Whether the task goes to the cloud: escalated, and the policy allows it
    (``allow_cloud``, or ``require_approval`` after a person approved)."""
    return answer.outcome == "escalate" and cloud_allowed(item.decision)


def _structured_identifiers(item: WorkItem) -> dict[str, list[str]]:
    """Values that identify a person by the field they are in, whatever NER says
    (GDPR Art. 4(1) "online identifier"): the ticket's ``customer`` handle, also
    written ``@handle`` in tweets."""
    task = item.task
    if isinstance(task, SupportTicket) and task.customer and task.customer.strip():
        handle = task.customer.strip()
        return {"CUSTOMER_ID": [f"@{handle}", handle]}
    return {}


def _texts(item: WorkItem, answer: FinalAnswer) -> dict[str, str]:
    texts: dict[str, str] = {}
    task = item.task
    if isinstance(task, SupportTicket):
        if task.customer:
            texts["customer"] = task.customer
        texts["text"] = "\n".join(p for p in (task.title, task.body) if p)
    else:
        texts["text"] = task.summary or f"{task.metric} on {task.device}"
    plan, diagnosis = item.output(Plan), item.output(Diagnosis)
    for step in plan.steps if plan else []:
        texts[f"step.{step.n}"] = step.description
    for i, f in enumerate(diagnosis.findings if diagnosis else []):
        texts[f"finding.{i}"] = f.evidence
    for i, r in enumerate(answer.reasons):
        texts[f"reason.{i}"] = r
    return texts


class CloudForwarder:
    """Turns an escalated, cloud-allowed task into an anonymised outbox message.

    The caller's task id never leaves: the incident, its subject, headers and
    ``Nats-Msg-Id`` carry the task's opaque reference (``refs.ref(site, task_id)``),
    and the draft answer waits in ``pending`` under that reference, which is how
    :class:`InboxFinaliser` maps the cloud's answer back. The dedupe id on the hub,
    ``<site>:<reference>:out:escalation``, is unique per site.

    Args:
        subjects: the site's subjects.
        pseudonymizer: replaces PII with placeholders and stores the mapping.
        guard: re-scans the finished incident (fail closed).
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
            EgressBlocked: the anonymised incident still carries PII (dead-lettered).
            PiiAnalyzerError: the analyzer failed; nothing leaves.
        """
        if not forwards(item, answer):
            return None
        env = item.envelope
        tid = env.task_id
        ref = self._refs.ref(env.site, tid)
        texts = _texts(item, answer)
        known = _structured_identifiers(item)
        done = await self._pseudo.pseudonymize(tid, texts, known=known)
        anon: dict[str, str] = done.texts  # type: ignore[attr-defined]
        mapping: dict[str, str] = done.mapping  # type: ignore[attr-defined]
        plan, diagnosis = item.output(Plan), item.output(Diagnosis)
        steps = [
            msgspec.structs.replace(s, description=anon.get(f"step.{s.n}", s.description))
            for s in (plan.steps if plan else [])
        ]
        findings = [
            msgspec.structs.replace(f, evidence=anon.get(f"finding.{i}", f.evidence))
            for i, f in enumerate(diagnosis.findings if diagnosis else [])
        ]
        # Data minimisation (GDPR Art. 5(1)(c)): the customer's free text never
        # leaves, not even pseudonymised — NER misses what it misses (see
        # docs/privacy.md). The cloud gets the kind, the channel and placeholders of
        # the identifiers that were found, so its answer can address them.
        present = sorted(p for p in mapping if p in "\n".join(anon.values()))
        text = f"{env.kind} received by site {env.site}" + (
            f"; identifiers on file: {', '.join(present)}" if present else ""
        )
        incident = CloudIncident(
            task_id=ref,
            site=env.site,
            kind=env.kind,
            data_class=env.data_class,
            policy_version=item.decision.policy_version,
            rule_id=item.decision.rule_id,
            text=text,
            placeholders=present,
            findings=findings,
            steps=steps,
            runbook=plan.runbook if plan else None,
            reasons=[anon.get(f"reason.{i}", r) for i, r in enumerate(answer.reasons)],
        )
        self._guard.check(incident)  # raises: nothing leaves
        wire = _ENC.encode(incident)
        for entity_type, values in known.items():
            if any(v.encode() in wire for v in values):
                raise EgressBlocked([("$", entity_type)])
        await self._pending.put(token(ref), _ENC.encode(answer))
        step = StepCompleted(
            task_id=tid,
            site=env.site,
            role="escalation",
            summary=(
                f"forwarded to cloud, anonymised: {len(incident.placeholders)} placeholders, "
                f"egress guard passed (rule {item.decision.rule_id})"
            ),
            started_at=ctx.published_at or utcnow(),
            deliveries=ctx.num_delivered,
            worker=ctx.worker,
        )
        dclass = env.data_class
        return [
            Outbound(self._subjects.event(tid), step, msg_id(tid, "forward", "escalation"),
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
        ev, dc = self._subjects.event(tid), draft.data_class
        return [
            Outbound(ev, step, msg_id(tid, "reidentify", "escalation"), tid, dc),
            Outbound(ev, final, msg_id(tid, "final", "escalation"), tid, dc),
        ]
