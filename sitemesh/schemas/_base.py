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

_NAME = msgspec.Meta(min_length=1, max_length=32, pattern=r"^[a-z][a-z0-9_]{0,31}$")

Role = Annotated[str, _NAME]
"""A worker role name: a lower-case letter, then up to 31 of ``[a-z0-9_]`` (one subject
token). Which roles exist is the agent registry's business (``sitemesh agents``)."""

StepName = Annotated[str, _NAME]
"""A workflow step name, spelled like a role (``retrieve``, ``triage``)."""

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
