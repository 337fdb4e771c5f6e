"""Routing a ticket to the label set of its tenant, and the ``Triage`` it gets."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from ..schemas import LabelScore, Triage
from ._labelsets import LabelSet, LabelSetSource
from ._language import detect_language
from ._model import TriageModel
from ._urgency import resolve_urgency

ALTERNATIVES = 3
"""Alternatives in a :class:`~sitemesh.schemas.Triage` (the schema allows at most 3)."""


@dataclass(frozen=True, slots=True)
class Route:
    """A trained label set and the tenants it serves.

    Attributes:
        name: the label set's name.
        tenants: its tenant globs (see :meth:`LabelSet.matches`).
        source: ``bundled`` or ``published``.
        model: the trained model.
        label_set: the examples it was trained on.
    """

    name: str
    tenants: tuple[str, ...]
    source: LabelSetSource
    model: TriageModel
    label_set: LabelSet

    @classmethod
    def of(cls, label_set: LabelSet, model: TriageModel) -> Route:
        """The route of ``label_set`` with its trained ``model``."""
        return cls(label_set.name, label_set.tenants, label_set.source, model, label_set)

    def matches(self, tenant: str) -> bool:
        """Whether this route serves ``tenant``."""
        return self.label_set.matches(tenant)


class Triager:
    """Picks a tenant's model and reads a ticket: label, urgency, language.

    A tenant gets the first route whose tenant globs match it: published label sets
    first (by name), then the bundled ones in their order (``banking77``, ``endava``).
    Immutable: :meth:`replaced` returns a new triager, so a reload swaps one reference
    while tickets are being classified.

    Args:
        routes: the trained label sets, in any order.
    """

    def __init__(self, routes: Iterable[Route] = ()) -> None:
        given = list(routes)
        published = sorted((r for r in given if r.source == "published"), key=lambda r: r.name)
        bundled = [r for r in given if r.source != "published"]
        self.routes: tuple[Route, ...] = (*published, *bundled)

    def route(self, tenant: str) -> Route | None:
        """The route for ``tenant``, or ``None`` when no label set serves it."""
        return next((r for r in self.routes if r.matches(tenant)), None)

    def replaced(self, source: LabelSetSource, name: str, route: Route | None = None) -> Triager:
        """A triager without the ``(source, name)`` route, plus ``route`` if given."""
        kept = [r for r in self.routes if (r.source, r.name) != (source, name)]
        return Triager([*kept, *([route] if route is not None else [])])

    def triage(self, *, task_id: str, text: str, tenant: str, urgency: int | None = None) -> Triage:
        """Classify one ticket.

        Args:
            task_id: copied into the result.
            text: title and body (:func:`ticket_text`).
            tenant: the ticket's tenant, for routing.
            urgency: the ticket's own urgency (0..3), if it has one.

        Returns:
            The :class:`~sitemesh.schemas.Triage`; without a route its label, label set
            and model version are empty and its confidence 0 (language and urgency are
            still set). Deterministic for the same routes and input.
        """
        language, language_p = detect_language(text)
        route = self.route(tenant)
        if route is None:
            level, source = resolve_urgency(ticket=urgency, model=None, label_set="", label="")
            return Triage(
                task_id=task_id, urgency=level, urgency_source=source,
                language=language, language_confidence=language_p,
            )  # fmt: skip
        p = route.model.predict(text, k=ALTERNATIVES + 1)
        level, source = resolve_urgency(
            ticket=urgency, model=p.urgency, label_set=route.name, label=p.label
        )
        return Triage(
            task_id=task_id,
            label=p.label,
            label_set=route.name,
            confidence=p.confidence,
            alternatives=[LabelScore(label=lbl, p=prob) for lbl, prob in p.alternatives],
            urgency=level,
            urgency_source=source,
            language=language,
            language_confidence=language_p,
            model_version=route.model.version,
        )
