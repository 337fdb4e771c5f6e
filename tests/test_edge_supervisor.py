"""The supervisor's restart backoff: doubling while a child crash-loops, starting over
after a stable run. Children are tiny Pythons that exit at once; a fake clock says how
long each one ran, so no test waits for a real stable period."""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from pathlib import Path

import pytest

from sitemesh.edge_node import Supervisor
from tests.conftest import assert_eventually

EXITS: Sequence[str] = (sys.executable, "-c", "import sys; sys.exit(3)")
"""A child program that exits with 3 whatever its ``worker ROLE --site SITE`` arguments."""


class RunLengths:
    """A monotonic clock under which the n-th run of the (one) child lasts ``runs[n]``
    seconds (the last one repeats): read once when it starts, once when it exits."""

    def __init__(self, runs: Sequence[float]) -> None:
        self.runs = list(runs)
        self.now = 1000.0
        self.reads = 0

    def __call__(self) -> float:
        if self.reads % 2:  # an exit: the run that started at the previous read is over
            self.now += self.runs[min(self.reads // 2, len(self.runs) - 1)]
        self.reads += 1
        return self.now


async def restart_delays(tmp_path: Path, runs: Sequence[float], n: int) -> list[float]:
    sup = Supervisor(
        "eu1",
        ["flaky"],
        env=dict(os.environ),
        log_dir=tmp_path / "logs",
        graceful_timeout_s=5,
        restart_delay_s=0.01,
        max_restart_delay_s=0.04,
        stable_after_s=60,
        program=EXITS,
        clock=RunLengths(runs),
    )
    async with sup:
        await assert_eventually(lambda: len(sup.restart_delays["flaky-1"]) >= n, timeout_s=30)
    return sup.restart_delays["flaky-1"][:n]


async def test_a_crash_loop_backs_off_to_the_ceiling(tmp_path: Path) -> None:
    assert await restart_delays(tmp_path, [1.0], 5) == [0.01, 0.02, 0.04, 0.04, 0.04]


async def test_the_backoff_starts_over_after_a_stable_run(tmp_path: Path) -> None:
    # three quick crashes, then a run of 60 s (stable), then quick crashes again
    delays = await restart_delays(tmp_path, [1.0, 1.0, 1.0, 60.0, 1.0], 6)
    assert delays == [0.01, 0.02, 0.04, 0.01, 0.02, 0.04]


async def test_stable_children_always_restart_after_the_first_delay(tmp_path: Path) -> None:
    assert await restart_delays(tmp_path, [3600.0], 4) == [0.01] * 4


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"restart_delay_s": 0}, "restart_delay_s"),
        ({"restart_delay_s": 5, "max_restart_delay_s": 2}, "max_restart_delay_s"),
        ({"stable_after_s": -1}, "stable_after_s"),
    ],
)
def test_bad_backoff_settings_are_refused(
    tmp_path: Path, kwargs: dict[str, float], field: str
) -> None:
    with pytest.raises(ValueError, match=field):
        Supervisor("eu1", ["flaky"], env={}, log_dir=tmp_path, **kwargs)  # type: ignore[arg-type]
