"""Base class and shared types of every wire message."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Literal

import msgspec

DataClass = Literal["public", "internal", "confidential", "restricted"]
"""Sensitivity of a task's content, from least to most sensitive."""

DATA_CLASS_ORDER: tuple[DataClass, ...] = ("public", "internal", "confidential", "restricted")
"""Data classes in increasing sensitivity; compare with ``DATA_CLASS_ORDER.index``."""

Zone = Literal["edge", "cloud"]
"""Where a step runs: on the site (edge / on-prem) or in the cloud hub."""

Role = Literal["router", "retriever", "diagnostics", "planner", "validator", "escalation"]
"""A site worker role. ``router`` is the ingress (policy) role."""

TaskId = Annotated[str, msgspec.Meta(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9._:-]+$")]
"""A task id: 1-128 characters of ``[A-Za-z0-9._:-]`` (safe as a subject token
once ``.`` and ``:`` are mapped, see ``sitemesh.bus.subjects``)."""

Site = Annotated[str, msgspec.Meta(pattern=r"^[a-z][a-z0-9]{0,15}$")]
"""A site name: lower-case letter then up to 15 lower-case letters or digits."""


def utcnow() -> datetime:
    """The current time, timezone-aware UTC."""
    return datetime.now(UTC)


class Message(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True, tag_field="type"):
    """Base of every top-level wire message.

    Subclasses set ``tag="<type>.v<N>"``; the tag is carried in the JSON field
    ``type`` and in the ``sm-schema`` header. New fields always get defaults; a
    breaking change is a new version on a new subject (msgspec schema evolution).
    """
