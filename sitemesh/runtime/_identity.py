"""The NATS identity of a process, from settings (secrets from env or files only)."""

from __future__ import annotations

from typing import Any

from ..config import NatsSettings
from ..errors import ConfigError


def nats_options(nats: NatsSettings, role: str) -> dict[str, Any]:
    """nats-py ``connect`` options for a process of ``role``: its NKey seed, the
    ``_INBOX.<role>`` reply prefix its permissions allow, and mutual-TLS material.

    Returns ``{}`` when no identity or TLS is configured (development). An identity
    named by ``nats.creds_dir`` must have been picked already
    (:func:`~sitemesh.runtime.creds_dir_identity`, which :func:`~sitemesh.runtime.connect`
    runs).

    Raises:
        ConfigError: TLS is half configured, the seed is unreadable, or ``creds_dir`` is
            set but no seed was picked from it; names the key (never the value).
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
    if nats.nkey_seed_file is None and nats.nkey_seed is None and nats.creds_dir is not None:
        raise ConfigError(
            "nats.creds_dir",
            f"no seed picked from {nats.creds_dir} yet: connect with "
            "sitemesh.runtime.connect, or pass the settings through creds_dir_identity first",
        )
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
