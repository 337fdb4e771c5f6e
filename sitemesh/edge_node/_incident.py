"""The incident an escalated task becomes at the boundary: structured fields only.

:func:`build_incident` turns a work item and the escalation agent's answer into a
:class:`~sitemesh.schemas.CloudIncident` (``cloud_incident.v2``) that holds no text a
person, a ticket or a site model wrote: action names, ids the site can vouch for,
reason codes, tokens and placeholders. :func:`pseudonymized_texts` lists the texts the
forwarder pseudonymises first, to learn which identifiers the task holds (their
placeholders cross; the texts do not). See docs/privacy.md, "What leaves".
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping
from typing import Any, Final, Protocol, get_type_hints

import msgspec

from ..agents import ALLOWED_ACTIONS
from ..errors import EgressBlocked
from ..schemas import (
    CloudIncident,
    Diagnosis,
    FinalAnswer,
    IncidentFinding,
    IncidentResolution,
    IncidentStep,
    IncidentTriage,
    Passage,
    Plan,
    RetrievalResult,
    SupportTicket,
    Triage,
    WorkItem,
    reason_codes,
)

ACTION_NOT_ALLOWED: Final = "ACTION_NOT_ALLOWED"
"""Entity type of the :class:`~sitemesh.errors.EgressBlocked` raised for a plan step
whose action is not in :data:`sitemesh.agents.ALLOWED_ACTIONS` (the validator should
have stopped it; nothing leaves)."""

_PLACEHOLDER: Final = re.compile(r"<[A-Z][A-Z0-9_]*?_[1-9][0-9]*>")
"""``sitemesh.policy.PLACEHOLDER_RE`` (not imported: the policy package loads Presidio)."""

_DIAGNOSIS_REF: Final = re.compile(r"diagnosis#([1-9][0-9]{0,3})")


class References(Protocol):
    """What forwarding needs from ``sitemesh.policy.BoundaryRefs``."""

    def ref(self, site: str, task_id: str) -> str: ...


def pseudonymized_texts(item: WorkItem) -> dict[str, str]:
    """The texts ``CloudForwarder`` pseudonymises, to learn which identifiers the
    task holds (none of them is sent): ``text`` (the ticket's title and body, or the
    alert's summary), ``customer``, ``step.<i>`` (the plan's step texts, by position)
    and ``device.<i>`` / ``interface.<i>`` (the diagnosis' findings, by position).

    Args:
        item: the work item at the escalation step.

    Returns:
        Key -> text; the keys :func:`build_incident` reads.
    """
    texts: dict[str, str] = {}
    task = item.task
    if isinstance(task, SupportTicket):
        if task.customer:
            texts["customer"] = task.customer
        texts["text"] = "\n".join(p for p in (task.title, task.body) if p)
    else:
        texts["text"] = task.summary or f"{task.metric} on {task.device}"
    plan, diagnosis = item.output(Plan), item.output(Diagnosis)
    for i, step in enumerate(plan.steps if plan else []):
        texts[f"step.{i}"] = step.description
    for i, f in enumerate(diagnosis.findings if diagnosis else []):
        texts[f"device.{i}"] = f.device
        if f.interface:
            texts[f"interface.{i}"] = f.interface
    return texts


_HINTS: Final[dict[type[msgspec.Struct], dict[str, Any]]] = {
    cls: get_type_hints(cls, include_extras=True)
    for cls in (CloudIncident, IncidentStep, IncidentFinding, IncidentTriage, IncidentResolution)
}


def _fits(cls: type[msgspec.Struct], name: str, value: object) -> bool:
    """Whether ``value`` is valid for field ``name`` of ``cls`` (its schema pattern)."""
    hint = _HINTS[cls][name]
    try:
        msgspec.convert(value, hint)
    except msgspec.ValidationError:
        return False
    return not (isinstance(value, str) and "\n" in value)


def _placeholders_in(text: str | None, known: Collection[str]) -> list[str]:
    found = _PLACEHOLDER.findall(text or "")
    return [p for p in dict.fromkeys(found) if p in known]


class _Ids:
    """Which ids of the work item may cross, and as what."""

    def __init__(self, item: WorkItem, refs: References) -> None:
        self._site = item.envelope.site
        self._refs = refs
        retrieval, diagnosis = item.output(RetrievalResult), item.output(Diagnosis)
        passages = retrieval.passages if retrieval else []
        self.passages: dict[str, Passage] = {p.passage_id: p for p in passages}
        self.cases: dict[str, Passage] = {p.passage_id: p for p in passages if p.doc_kind == "case"}
        """Past cases' passages by id: an id a case shares with another document is a case's."""
        self.findings = len(diagnosis.findings) if diagnosis else 0

    def case(self, namespace: str, kb: str, local_id: str) -> str:
        """An opaque, site-keyed reference for a past case's id (``case#r...``)."""
        return "case#" + self._refs.ref(self._site, f"{namespace}\x00{kb}\x00{local_id}")

    def grounding(self, gid: str) -> str | None:
        """``gid`` as it may cross, or ``None``: a finding of the diagnosis as is, a
        retrieved runbook/article/FAQ passage as is, a retrieved past case's passage as
        an opaque reference; anything else (not retrieved, odd format) not at all."""
        m = _DIAGNOSIS_REF.fullmatch(gid)
        if m is not None:
            return gid if int(m.group(1)) <= self.findings else None
        case = self.cases.get(gid)
        if case is not None:
            return self.case("passage", case.kb, gid)
        if gid not in self.passages:
            return None
        return gid if _fits(IncidentStep, "grounding", [gid]) else None

    def runbook(self, doc_id: str | None) -> str | None:
        """The plan's runbook if it is a retrieved document other than a past case."""
        if not doc_id or not _fits(CloudIncident, "runbook", doc_id):
            return None
        kinds = {p.doc_kind for p in self.passages.values() if p.doc_id == doc_id}
        return doc_id if kinds and "case" not in kinds else None


def _device(value: str | None, anon: str | None) -> str | None:
    """A device/interface name as it may cross: as is when it fits the device format and
    nothing was detected in it; the placeholder when it was detected whole; else ``None``."""
    if value is None:
        return None
    if anon == value and _fits(IncidentFinding, "device", value) and not _PLACEHOLDER.search(value):
        return value
    if anon is not None and _PLACEHOLDER.fullmatch(anon.strip()):
        return anon.strip()
    return None


def _triage(item: WorkItem, answer: FinalAnswer) -> IncidentTriage | None:
    triage = item.output(Triage) or answer.triage
    if triage is None or not _fits(IncidentTriage, "label", triage.label):
        return None
    label_set = triage.label_set if _fits(IncidentTriage, "label", triage.label_set) else None
    language = triage.language if _fits(IncidentTriage, "language", triage.language) else "und"
    urgency = triage.urgency if _fits(IncidentTriage, "urgency", triage.urgency) else 3
    return IncidentTriage(
        label=triage.label, label_set=label_set, urgency=urgency, language=language
    )


def _resolution(answer: FinalAnswer, ids: _Ids) -> IncidentResolution | None:
    res = answer.resolution
    if res is None or not _fits(IncidentResolution, "kb", res.kb):
        return None
    if res.doc_kind == "case":
        doc: str | None = ids.case("doc", res.kb, res.doc_id)
    else:
        doc = res.doc_id if _fits(IncidentResolution, "doc", res.doc_id) else None
    if doc is None:
        return None
    intent = res.intent if res.intent and _fits(IncidentResolution, "intent", res.intent) else None
    return IncidentResolution(kb=res.kb, doc_kind=res.doc_kind, doc=doc, intent=intent)


def build_incident(
    item: WorkItem,
    answer: FinalAnswer,
    *,
    ref: str,
    refs: References,
    anon: Mapping[str, str],
    placeholders: Collection[str],
) -> CloudIncident:
    """The structured incident of an escalated task: no prose, every field a token.

    What crosses, field by field (docs/privacy.md, "What leaves"): the reference, site,
    kind, data class and the rule that allowed it; per plan step its position, action
    and the grounding ids the site can vouch for (:meth:`_Ids.grounding`), and the
    placeholders its text held; per finding its kind, severity, time, and device and
    interface names when they fit the device format (else their placeholder, else
    nothing); the runbook when it is a retrieved document; the reasons as codes
    (:func:`sitemesh.schemas.reason_codes`: unknown phrasing -> ``other``); the triage
    label, label set, urgency and language when they are tokens; the knowledge-base
    document the reply was drafted from (a past case only as ``case#<reference>``).
    The step texts, the finding evidence, the reasons' wording, the plan's rationale and
    customer message, and every passage text stay on the site.

    Args:
        item: the work item at the escalation step.
        answer: the escalation agent's answer (reasons, resolution, triage).
        ref: the task's boundary reference.
        refs: the site's reference function, for past cases' opaque references.
        anon: :func:`pseudonymized_texts` after pseudonymisation (same keys).
        placeholders: the task's placeholders (the vault mapping's keys); others are
            not forwarded even if a text happens to spell one.

    Returns:
        The incident (not yet checked by the egress guard).

    Raises:
        EgressBlocked: a step's action is not in :data:`sitemesh.agents.ALLOWED_ACTIONS`
            (entity type :data:`ACTION_NOT_ALLOWED`).
    """
    env = item.envelope
    plan, diagnosis = item.output(Plan), item.output(Diagnosis)
    ids = _Ids(item, refs)
    bad = [
        (f"$.steps[{i}].action", ACTION_NOT_ALLOWED)
        for i, s in enumerate(plan.steps if plan else [])
        if s.action not in ALLOWED_ACTIONS
    ]
    if bad:
        raise EgressBlocked(bad)
    steps = [
        IncidentStep(
            n=i,
            action=s.action,
            grounding=list(dict.fromkeys(g for g in map(ids.grounding, s.grounding) if g)),
            placeholders=_placeholders_in(anon.get(f"step.{i - 1}"), placeholders),
        )
        for i, s in enumerate(plan.steps if plan else [], start=1)
    ]
    findings = [
        IncidentFinding(
            kind=f.kind,
            severity=f.severity,
            device=_device(f.device, anon.get(f"device.{i}")),
            interface=_device(f.interface, anon.get(f"interface.{i}")),
            at=f.at,
        )
        for i, f in enumerate(diagnosis.findings if diagnosis else [])
    ]
    present = _placeholders_in(
        "\n".join([anon.get("text", ""), anon.get("customer", "")]), placeholders
    )
    present += [p for s in steps for p in s.placeholders]
    present += [p for f in findings for p in (f.device, f.interface) if p and p in placeholders]
    return CloudIncident(
        task_id=ref,
        site=env.site,
        kind=env.kind,
        data_class=env.data_class,
        policy_version=item.decision.policy_version,
        rule_id=item.decision.rule_id,
        placeholders=sorted(set(present)),
        steps=steps,
        findings=findings,
        runbook=ids.runbook(plan.runbook if plan else None),
        reasons=reason_codes(answer.reasons),
        triage=_triage(item, answer),
        resolution=_resolution(answer, ids),
    )
