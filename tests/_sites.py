"""Settings of a throwaway site for tests that run worker processes."""

from __future__ import annotations

from pathlib import Path

from sitemesh.config import BusSettings, DbSettings, NatsSettings, Settings
from tests.conftest import TEST_STREAM_BYTES


def process_site_settings(site: str, state_dir: Path, nats_url: str, db_url: str) -> Settings:
    """A site on ``nats_url`` with quick redeliveries (3 s ack wait, 5 deliveries,
    0.1-1 s backoff) and a 15 s graceful stop, for SIGKILL/restart tests."""
    return Settings(
        site=site,
        state_dir=state_dir,
        nats=NatsSettings(url=nats_url),
        db=DbSettings(url=db_url),
        bus=BusSettings(
            ack_wait_s=3,
            max_deliver=5,
            backoff_base_s=0.1,
            backoff_max_s=1,
            graceful_timeout_s=15,
            max_bytes=TEST_STREAM_BYTES,
        ),
    )
