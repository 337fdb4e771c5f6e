"""Helpers of the tool tests: the stdio server as a spec, its log, scanners, fake time."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from sitemesh.errors import PiiAnalyzerError
from sitemesh.policy import DetectedEntity
from sitemesh.tools import ToolSpec

ROOT = Path(__file__).resolve().parents[2]
"""The checkout (the stdio server runs as ``python -m tests._mcp.stdio_server`` from it)."""


def stdio_spec(calls: Path, **fields: Any) -> ToolSpec:
    """The stdio test server as tool server ``t``, logging executions to ``calls``."""
    base: dict[str, Any] = {
        "name": "t",
        "transport": "stdio",
        "command": "{python}",
        "args": ["-m", "tests._mcp.stdio_server"],
        "cwd": str(ROOT),
        "env": {"SITEMESH_TEST_CALLS": str(calls)},
        "timeout_s": 5.0,
        "retries": 0,
    }
    return ToolSpec(**{**base, **fields})


def executions(calls: Path, tool: str | None = None) -> list[dict[str, Any]]:
    """The executions the stdio server logged (of ``tool``), in order."""
    if not calls.exists():
        return []
    lines = [json.loads(x) for x in calls.read_text("utf-8").splitlines() if x.strip()]
    return [x for x in lines if tool is None or x["tool"] == tool]


class NoPii:
    """A scanner that finds nothing (for tests about transport, not privacy)."""

    def __init__(self) -> None:
        self.texts: list[str] = []

    def scan_many(self, texts: Sequence[str]) -> list[list[DetectedEntity]]:
        self.texts.extend(texts)
        return [[] for _ in texts]


class BrokenScanner:
    """A scanner whose analyzer fails, as Presidio does when spaCy breaks."""

    def __init__(self) -> None:
        self.calls = 0

    def scan_many(self, texts: Sequence[str]) -> list[list[DetectedEntity]]:
        self.calls += 1
        raise PiiAnalyzerError("PII analysis failed (RuntimeError); the task stays on site")


class FakeTime:
    """A monotonic clock and a sleep that advances it (no real waiting)."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds
        await asyncio.sleep(0)
