"""Short runs of the fault suite (``bench/chaos.py``): one real site (``sitemesh edge``
as a subprocess on a pinned ``nats-server``) under hostile input, worker SIGKILLs and a
``nats-server`` SIGKILL and restart; nothing lost, no answer twice, every hostile
message dead-lettered with a reason.

The full-length runs are ``python bench/chaos.py`` (docs/development.md, "Fault suite").
"""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

BENCH = Path(__file__).resolve().parent.parent / "bench"
sys.path.insert(0, str(BENCH))
import chaos  # noqa: E402  (bench/chaos.py, run as a script elsewhere)

pytestmark = [pytest.mark.slow, pytest.mark.chaos, pytest.mark.timeout(900)]


@pytest.fixture(scope="module")
def args() -> Any:
    """Short versions of the bench's scenarios; 3 s ack wait for quick redeliveries."""
    ns = chaos.parser().parse_args(
        ["--rate", "20", "--kill-for", "10", "--nats-for", "10", "--down-s", "3",
         "--fuzz-n", "500", "--ack-wait-s", "3", "--drain-s", "240"]
    )  # fmt: skip
    ns.db_url = None
    return ns


@pytest.fixture(scope="module")
def texts() -> chaos.Texts:
    return chaos.Texts()


@pytest.fixture(scope="module")
async def site(tmp_path_factory: pytest.TempPathFactory, args: Any) -> AsyncIterator[Any]:
    tmp = tmp_path_factory.mktemp("chaos")
    async with chaos.local_site(tmp, None, **chaos.site_extra("kills", args)) as s:
        yield s


async def test_fuzz_dead_letters_every_hostile_message(site: Any, args: Any, texts: Any) -> None:
    fig = await chaos.scenario_fuzz(site, args, texts)
    print(fig.report())
    assert fig.published >= 50, "positive control: valid tickets interleaved"
    assert fig.counts["hostile"] >= 450, fig.report()
    assert fig.counts["dead_lettered"] == fig.counts["hostile"], fig.report()
    assert (fig.counts["no_reason"], fig.counts["crashes"]) == (0, 0), fig.report()
    assert fig.answered == fig.published, fig.report()
    assert fig.ok, fig.report()


async def test_worker_kills_lose_nothing(site: Any, args: Any, texts: Any) -> None:
    fig = await chaos.scenario_kills(site, args, texts)
    print(fig.report())
    assert fig.counts["kills"] >= 3, fig.report()
    assert fig.counts["restarts"] > 0, "positive control: the supervisor restarted them"
    assert (fig.lost, fig.duplicates, fig.problems) == (0, 0, []), fig.report()
    assert fig.recorded == fig.published, fig.report()


async def test_nats_restart_loses_nothing(site: Any, args: Any, texts: Any) -> None:
    fig = await chaos.scenario_nats(site, args, texts)
    print(fig.report())
    assert (fig.lost, fig.duplicates, fig.problems) == (0, 0, []), fig.report()
    assert fig.answered + fig.failed == fig.published == 200, fig.report()
    assert fig.recorded == fig.published, fig.report()


async def test_kills_of_a_colocated_agents_process_lose_nothing(
    tmp_path: Path, args: Any, texts: Any
) -> None:
    """``edge --colocate``: SIGKILLs land mid-chain in the process of every agent role;
    the input of a chain is acked only once the whole chain published, so its
    redelivery finishes it and the duplicates are dropped."""
    async with chaos.local_site(
        tmp_path, None, colocate=True, **chaos.site_extra("kills", args)
    ) as s:
        assert any("+" in role for role in chaos.worker_pids(s.edge.pid).values())
        fig = await chaos.scenario_kills(s, args, texts)
    print(fig.report())
    assert fig.counts["kills"] >= 3, fig.report()
    assert fig.counts["restarts"] > 0, "positive control: the supervisor restarted them"
    assert (fig.lost, fig.duplicates, fig.problems) == (0, 0, []), fig.report()
    assert fig.recorded == fig.published, fig.report()
