"""Label sets: named collections of labelled examples and the tenants they serve.

Two are bundled (``sitemesh/triage/data/``, see each folder's ``SOURCE.md``):

* ``banking77``: label = the intent (``card_arrival``, 77 of them), urgency from our
  rule table (:data:`URGENCY_RULES`); tenants ``bank*``;
* ``endava``: label = ``category_<code>`` of the ``category`` column (9 codes),
  urgency from a model of the ``urgency`` column; tenants ``it*``, ``helpdesk*``,
  ``endava*``.

A site publishes its own with ``sitemesh triage train --publish`` (artifact
``triage/<name>``, see :func:`published_label_set`); those take precedence.
"""

from __future__ import annotations

import csv
import fnmatch
import functools
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final, Literal

from ._examples import Example, ExamplesError, parse_examples_jsonl
from ._text import held_out, ticket_text

DATA_DIR: Final = Path(__file__).parent / "data"
"""The bundled examples (``banking77/``, ``endava/``)."""

ARTIFACT_KIND: Final = "triage"
"""Kind of the site artifacts that hold published examples (``triage/<name>``)."""

NAME_PATTERN: Final = re.compile(r"^[a-z0-9][a-z0-9_]{0,63}$")
"""What a label set's name may be: a token that may leave the site in an incident
(``$.triage.label_set``, see ``docs/privacy.md``), an object name and a cache key part."""

LabelSetSource = Literal["bundled", "published"]


@dataclass(frozen=True)
class LabelSet:
    """A named set of labelled examples and the tenants whose tickets it classifies.

    Attributes:
        name: ``banking77``; see :data:`NAME_PATTERN`.
        tenants: glob patterns (:func:`fnmatch.fnmatchcase`, matched lower-case) of the
            tenants it serves, e.g. ``("bank*",)``; empty: none (only by name).
        examples: every example, held-out ones included.
        source: ``bundled`` (shipped in the wheel) or ``published`` (a site artifact).
        exclude_held_out: train without the :func:`held_out` examples (the bundled
            sets, so their held-out part stays unseen for the benchmark and the demo);
            published sets train on all their examples.
        description: one line for ``sitemesh triage models``.
        digest: the artifact's digest (published sets), to notice a change.
    """

    name: str
    tenants: tuple[str, ...]
    examples: tuple[Example, ...] = field(repr=False)
    source: LabelSetSource = "bundled"
    exclude_held_out: bool = False
    description: str = ""
    digest: str = ""

    @functools.cached_property
    def training_examples(self) -> tuple[Example, ...]:
        """The examples a model is trained on."""
        if not self.exclude_held_out:
            return self.examples
        return tuple(e for e in self.examples if not held_out(e.text))

    @functools.cached_property
    def held_out_examples(self) -> tuple[Example, ...]:
        """The :func:`held_out` examples (empty unless :attr:`exclude_held_out`)."""
        if not self.exclude_held_out:
            return ()
        return tuple(e for e in self.examples if held_out(e.text))

    @property
    def labels(self) -> tuple[str, ...]:
        """The distinct labels of the training examples, sorted."""
        return tuple(sorted({e.label for e in self.training_examples}))

    @property
    def has_urgency(self) -> bool:
        """Whether an urgency model is trained: the training examples carry at least two
        distinct urgency values."""
        return len({e.urgency for e in self.training_examples if e.urgency is not None}) >= 2

    def matches(self, tenant: str) -> bool:
        """Whether one of :attr:`tenants` matches ``tenant`` (case-insensitive)."""
        lowered = tenant.lower()
        return any(fnmatch.fnmatchcase(lowered, g.lower()) for g in self.tenants)


def check_name(name: str) -> str:
    """``name`` if it is a valid label set name (:data:`NAME_PATTERN`).

    Raises:
        ExamplesError: it is not.
    """
    if not NAME_PATTERN.match(name):
        raise ExamplesError(
            name or "''", "a label set name is 1-64 of a-z, 0-9 and '_', starting with a "
            "letter or digit",
        )  # fmt: skip
    return name


def parse_tenants(value: str) -> tuple[str, ...]:
    """``"bank*, fin*"`` -> ``("bank*", "fin*")`` (the ``tenants`` artifact metadata)."""
    return tuple(t.strip() for t in value.split(",") if t.strip())


def artifact_name(name: str) -> str:
    """The site artifact that holds label set ``name``'s examples: ``triage/<name>``."""
    return f"{ARTIFACT_KIND}/{check_name(name)}"


def artifact_meta(label_set: LabelSet, *, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The string metadata stored with a published label set: ``tenants`` (comma-separated
    globs), ``examples``, ``labels`` (counts) and ``urgency`` (``yes``/``no``)."""
    meta = {
        "tenants": ",".join(label_set.tenants),
        "examples": str(len(label_set.examples)),
        "labels": str(len(label_set.labels)),
        "urgency": "yes" if label_set.has_urgency else "no",
    }
    meta.update(extra or {})
    return meta


def published_label_set(
    name: str, data: bytes, meta: Mapping[str, str], *, digest: str = ""
) -> LabelSet:
    """The label set of a ``triage/<name>`` artifact.

    Args:
        name: the part after ``triage/``.
        data: its content, JSONL (see :func:`parse_examples_jsonl`).
        meta: its metadata; ``tenants`` holds comma-separated globs.
        digest: its digest (to notice a change later).

    Raises:
        ExamplesError: a bad name or a line that is not an example.
    """
    return LabelSet(
        name=check_name(name),
        tenants=parse_tenants(meta.get("tenants", "")),
        examples=parse_examples_jsonl(data, source=f"{ARTIFACT_KIND}/{name}"),
        source="published",
        description=f"published at the site ({meta.get('examples', '?')} examples)",
        digest=digest,
    )


def _read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8", newline="") as fh:
        return list(csv.DictReader(fh))


def banking77_examples() -> tuple[Example, ...]:
    """The bundled BANKING77 examples (``data/banking77/train.csv``, 10 003 rows; CC BY
    4.0, Casanueva et al. 2020): text -> intent, no urgency."""
    return tuple(
        Example(text=r["text"].strip(), label=r["category"].strip())
        for r in _read_csv(DATA_DIR / "banking77" / "train.csv")
    )


def endava_examples() -> tuple[Example, ...]:
    """The bundled Endava IT help-desk examples (``data/endava/all_tickets_dev.csv``,
    4 345 rows): :func:`ticket_text` of title and body -> ``category_<code>``, with the
    ``urgency`` column (0..3)."""
    return tuple(
        Example(
            text=ticket_text(r["title"].strip(), r["body"].strip()),
            label=f"category_{r['category'].strip()}",
            urgency=int(r["urgency"]),
        )
        for r in _read_csv(DATA_DIR / "endava" / "all_tickets_dev.csv")
    )


@functools.cache
def bundled_label_sets() -> tuple[LabelSet, ...]:
    """The bundled label sets, in routing order: ``banking77``, then ``endava``.

    Both train without their :func:`held_out` examples. Read once per process.
    """
    return (
        LabelSet(
            name="banking77",
            tenants=("bank*",),
            examples=banking77_examples(),
            exclude_held_out=True,
            description="BANKING77 online-banking intents (Casanueva et al. 2020, CC BY 4.0)",
        ),
        LabelSet(
            name="endava",
            tenants=("it*", "helpdesk*", "endava*"),
            examples=endava_examples(),
            exclude_held_out=True,
            description="Endava IT help-desk categories and urgency (MIT / Kaggle CC0)",
        ),
    )
