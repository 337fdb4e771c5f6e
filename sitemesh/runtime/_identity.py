"""The NATS identity of a process, from settings (secrets from env or files only)."""

from __future__ import annotations

from typing import Any

from ..config import NatsSettings
from ..errors import ConfigError


def nats_options(nats: NatsSettings, role: str) -> dict[str, Any]:
    """nats-py ``connect`` options for a process of ``role``: its NKey seed, the
    ``_INBOX.<role>`` reply prefix its permissions allow, and mutual-TLS material.

    Returns ``{}`` when no identity or TLS is configured (development).

    Raises:
        ConfigError: TLS is half configured, or the seed is unreadable; names the key
            (never the value).
    """
    tls_keys = {
        "nats.tls_ca_file": nats.tls_ca_file,
        "nats.tls_cert_file": nats.tls_cert_file,
        "nats.tls_key_file": nats.tls_key_file,
    }
    given = {k for k, v in tls_keys.items() if v is not None}
    if given and given != set(tls_keys):
        missing = sorted(set(tls_keys) - given)[0]
        raise ConfigError(missing, f"TLS needs all of {sorted(tls_keys)}; {missing} is not set")
    if not given and not nats.has_identity:
        return {}
    from ..topology import TlsFiles, client_options

    ca, cert, key = nats.tls_ca_file, nats.tls_cert_file, nats.tls_key_file
    tls = None
    if ca is not None and cert is not None and key is not None:
        tls = TlsFiles(ca_file=ca, cert_file=cert, key_file=key)
    return client_options(
        role=role if nats.has_identity else None,
        seed=nats.nkey_seed,
        seed_file=nats.nkey_seed_file,
        tls=tls,
    )
