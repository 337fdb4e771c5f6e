"""``sitemesh edge --local-model`` keeps every other ``edge`` option: ``--console`` and
``--colocate`` reach the site it runs (they were dropped without a word)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest
from typer.testing import CliRunner

from sitemesh.cli import app
from sitemesh.config import Settings


@dataclass
class _Local:
    settings: Settings


def test_local_model_edge_passes_console_and_colocate_on(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    import sitemesh.cli._local_model as local
    import sitemesh.cli._run as run

    seen: dict[str, Any] = {}

    @contextlib.asynccontextmanager
    async def fake_local_model(settings: Settings, console: Any = None) -> AsyncIterator[_Local]:
        seen["local_model"] = True
        yield _Local(settings)

    async def fake_run_edge(settings: Settings, console: Any, **kwargs: Any) -> int:
        seen.update(kwargs)
        return 0

    monkeypatch.setattr(local, "local_model", fake_local_model)
    monkeypatch.setattr(run, "run_edge", fake_run_edge)
    monkeypatch.setenv("SITEMESH_STATE_DIR", str(tmp_path))
    result = CliRunner().invoke(
        app, ["edge", "--local-model", "--colocate", "--console", "8471", "--replicas", "2"]
    )
    assert result.exit_code == 0, result.output
    assert seen["local_model"]
    assert (seen["console_port"], seen["colocate"], seen["replicas"]) == (8471, True, 2)
