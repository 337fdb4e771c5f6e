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


ARGS_AND_PORT: Sequence[str] = (
    sys.executable, "-c",
    "import os, sys, time; print(' '.join(sys.argv[1:]), os.environ.get('SITEMESH_HEALTH_PORT'),"
    " flush=True); time.sleep(60)",
)  # fmt: skip
"""A child program that prints its ``worker ...`` arguments and health port, then waits."""


async def test_each_child_gets_its_own_health_port_and_a_group_its_roles(
    tmp_path: Path,
) -> None:
    """Ports from ``health_port`` in start order (never the environment's own, which
    every child would try to bind); a ``"a+b"`` entry is one process running both roles,
    counted under each role."""
    sup = Supervisor(
        "eu1",
        ["recorder", "triage+planner", "planner"],
        env={**os.environ, "SITEMESH_HEALTH_PORT": "9999"},
        log_dir=tmp_path / "logs",
        graceful_timeout_s=5,
        program=ARGS_AND_PORT,
        health_port=9100,
    )
    assert sup.health_ports == {"recorder-1": 9100, "triage+planner-1": 9101, "planner-1": 9102}
    assert sup.roles == ["recorder", "triage", "planner", "planner"]
    async with sup:

        def printed() -> dict[str, str]:
            out = {}
            for log in (tmp_path / "logs").glob("*.log"):
                text = log.read_text().strip()
                if text:
                    out[log.name] = text
            return out if len(out) == 3 else {}

        lines = await assert_eventually(printed, timeout_s=30)
        pids = sup.pids
    assert lines == {
        "eu1-recorder-1.log": "worker recorder --site eu1 9100",
        "eu1-triage+planner-1.log": "worker triage --with planner --site eu1 9101",
        "eu1-planner-1.log": "worker planner --site eu1 9102",
    }
    assert pids["triage"] == pids["planner"][:1]
    assert len(pids["planner"]) == 2
    bare = Supervisor("eu1", ["recorder"], env={**os.environ, "SITEMESH_HEALTH_PORT": "9999"},
                      log_dir=tmp_path / "logs2", program=ARGS_AND_PORT)  # fmt: skip
    assert bare.health_ports == {}
    assert "SITEMESH_HEALTH_PORT" not in bare._child_env("recorder")
