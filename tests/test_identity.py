"""A process's NATS identity comes from settings; bad settings fail with the key named."""

from __future__ import annotations

from pathlib import Path

import pytest

from sitemesh.config import NatsSettings
from sitemesh.errors import ConfigError
from sitemesh.runtime import nats_options


def test_no_identity_means_plain_options() -> None:
    assert nats_options(NatsSettings(), "retriever") == {}


def test_half_configured_tls_names_the_missing_key(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as exc:
        nats_options(NatsSettings(tls_ca_file=tmp_path / "ca.pem"), "retriever")
    assert exc.value.key == "nats.tls_cert_file"


def test_unreadable_seed_file_names_the_key_not_the_value(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as exc:
        nats_options(NatsSettings(nkey_seed_file=tmp_path / "missing.nk"), "retriever")
    assert "nats.nkey_seed_file" in str(exc.value)


def test_seed_gives_the_roles_inbox_prefix(tmp_path: Path) -> None:
    from sitemesh.topology import generate_creds

    bundle = generate_creds(tmp_path, ["eu1"])
    seed_file = next(i.seed_file for i in bundle.identities if i.role == "retriever")
    opts = nats_options(NatsSettings(nkey_seed_file=seed_file), "retriever")
    assert opts["inbox_prefix"] == "_INBOX.retriever"
    assert str(opts["nkeys_seed_str"]).startswith("SU")
