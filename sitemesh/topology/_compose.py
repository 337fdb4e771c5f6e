"""Deployment files rendered from a topology: the NATS configs of ``compose/``.

The docker compose deployment (``compose/docker-compose.yml``) and the Kubernetes
manifests (``compose/k8s/``) run the official ``nats`` image with configs rendered
by the *same* functions the tests and ``sitemesh up`` start servers with
(:func:`render_hub_config`, :func:`render_site_config`), from a topology TOML
(``compose/topology.toml``, ``compose/k8s/topology.toml``) whose ports and host
names are the containers'.

Secrets are never rendered. Every password in a rendered file is a placeholder
``__NATS_<SERVER>_<USER>_PASSWORD__`` (:func:`placeholder`), e.g.
``__NATS_EU1_LEAF_PASSWORD__``; at container start ``compose/nats/entrypoint.sh``
replaces each one with the environment variable of the same name
(``NATS_EU1_LEAF_PASSWORD``, from ``compose/.env`` or a Kubernetes Secret) and
refuses to start while any is left. Placeholders use only ``[A-Z0-9_]``, so they
survive both the config's JSON string quoting and the percent-encoding of the leaf
remote URL unchanged, and the real passwords must be URL-safe
(``secrets.token_urlsafe``; the entrypoint checks).

nats-server's own ``$VAR`` substitution is no help here: it applies to unquoted
values only, and the renderer quotes every string (and a leaf URL embeds the
password).

Run ``python compose/generate.py`` to rewrite the files and ``--check`` to verify
them (``tests/test_deploy_compose.py`` does the same).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Final

from pydantic import SecretStr

from ._config import render_hub_config, render_site_config
from ._model import Credentials, TopologySpec

PLACEHOLDER: Final = re.compile(r"__NATS_[A-Z0-9_]+_PASSWORD__")
"""What every password placeholder looks like (the entrypoint greps for it)."""

ENTRYPOINT: Final = "entrypoint.sh"
"""Name of the script that fills placeholders and execs ``nats-server``."""


def placeholder(server: str, user: str) -> str:
    """The password placeholder of ``user`` on ``server``.

    Args:
        server: ``hub`` or a site name.
        user: the role of the user: ``cloud``, ``site``, ``egress`` or ``leaf``.

    Returns:
        ``__NATS_<SERVER>_<USER>_PASSWORD__``, upper case; the environment variable
        holding the real password is the same name without the underscores around it.
    """
    return f"__{env_name(server, user)}__"


def env_name(server: str, user: str) -> str:
    """The environment variable holding ``user``'s password on ``server``
    (``NATS_EU1_LEAF_PASSWORD``)."""
    return f"NATS_{server.upper()}_{user.upper()}_PASSWORD"


def _creds(user: str, server: str, role: str) -> Credentials:
    return Credentials(user=user, password=SecretStr(placeholder(server, role)))


def with_placeholders(spec: TopologySpec) -> TopologySpec:
    """``spec`` with every user given a placeholder password (user names kept or
    defaulted as :meth:`TopologySpec.resolve` would), then resolved.

    Passwords written in the topology are replaced too: a deployment file never
    holds a real one.

    Raises:
        ValueError: a port is ``0`` (deployment files need fixed ports; resolving
            would pick a free port on this machine).
    """
    if 0 in spec._ports():
        raise ValueError("deployment topologies need explicit ports (no 0)")
    hub = spec.hub.model_copy(
        update={"cloud": _creds(spec.hub.cloud.user if spec.hub.cloud else "cloud", "hub", "cloud")}
    )
    sites = tuple(
        s.model_copy(
            update={
                "site": _creds(s.site.user if s.site else "site", s.name, "site"),
                "egress": _creds(s.egress.user if s.egress else "egress", s.name, "egress"),
                "leaf": _creds(s.leaf.user if s.leaf else f"leaf-{s.name}", s.name, "leaf"),
            }
        )
        for s in spec.sites
    )
    return spec.model_copy(update={"hub": hub, "sites": sites}).resolve()


def password_env_names(spec: TopologySpec) -> list[str]:
    """Every password variable the rendered configs of ``spec`` need, sorted."""
    names = {env_name("hub", "cloud")}
    for s in spec.sites:
        names |= {env_name(s.name, role) for role in ("site", "egress", "leaf")}
    return sorted(names)


def render_configs(spec: TopologySpec, *, hub: bool = True) -> dict[str, str]:
    """The NATS configs of ``spec`` with placeholder passwords, by file name.

    Args:
        spec: a deployment topology (fixed ports, store dirs, host names).
        hub: include ``hub.conf`` (``False`` for a site-only deployment such as
            one Kubernetes site).

    Returns:
        ``{"hub.conf": ..., "site-<name>.conf": ...}``; the text is exactly what
        :func:`render_hub_config` / :func:`render_site_config` return.
    """
    resolved = with_placeholders(spec)
    files: dict[str, str] = {}
    if hub:
        files["hub.conf"] = render_hub_config(resolved)
    for s in resolved.sites:
        files[f"site-{s.name}.conf"] = render_site_config(resolved, s.name)
    return files


def stale_files(expected: dict[Path, str]) -> list[Path]:
    """The paths whose content differs from ``expected`` (or that are missing)."""
    return [
        path
        for path, text in expected.items()
        if not path.is_file() or path.read_text(encoding="utf-8") != text
    ]


def write_files(expected: dict[Path, str]) -> list[Path]:
    """Write ``expected`` where it differs; return the paths written."""
    written = []
    for path in stale_files(expected):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(expected[path], encoding="utf-8")
        written.append(path)
    return written


def _block(text: str, indent: int) -> str:
    pad = " " * indent
    return "\n".join(pad + line if line else "" for line in text.splitlines())


def k8s_config_map(spec: TopologySpec, site: str, entrypoint: str) -> str:
    """A Kubernetes ConfigMap ``sitemesh-nats`` holding site ``site``'s rendered
    config (``nats.conf``, placeholder passwords) and the entrypoint script.

    The NATS Helm chart's container mounts it at ``/etc/sitemesh`` and runs the
    entrypoint (``compose/k8s/nats-values.yaml``); the passwords come from the
    site's Secret as environment variables.

    Args:
        spec: the Kubernetes topology (``compose/k8s/topology.toml``).
        site: the site deployed.
        entrypoint: the text of ``compose/nats/entrypoint.sh``.

    Returns:
        YAML text (one document), deterministic.
    """
    conf = render_site_config(with_placeholders(spec), site)
    return (
        "# Generated by `python compose/generate.py` from compose/k8s/topology.toml\n"
        "# and compose/nats/entrypoint.sh; do not edit. Placeholder passwords only:\n"
        f"# the real ones come from the Secret sitemesh-{site} at container start.\n"
        "apiVersion: v1\n"
        "kind: ConfigMap\n"
        "metadata:\n"
        "  name: sitemesh-nats\n"
        f"  namespace: sitemesh-{site}\n"
        "  labels:\n"
        "    app.kubernetes.io/part-of: sitemesh\n"
        f"    sitemesh.io/site: {site}\n"
        "data:\n"
        "  nats.conf: |\n"
        f"{_block(conf, 4)}\n"
        f"  {ENTRYPOINT}: |\n"
        f"{_block(entrypoint, 4)}\n"
    )


def deployment_files(compose_dir: Path) -> dict[Path, str]:
    """Every generated file under ``compose_dir`` (the repository's ``compose/``)
    with its expected content.

    * ``nats/hub.conf``, ``nats/site-<name>.conf``: from ``topology.toml``.
    * ``k8s/nats-config.yaml``: the ConfigMap of the site in ``k8s/topology.toml``.

    Raises:
        OSError, tomllib.TOMLDecodeError, pydantic.ValidationError: a bad topology.
    """
    spec = TopologySpec.from_toml(compose_dir / "topology.toml")
    out = {compose_dir / "nats" / name: text for name, text in render_configs(spec).items()}
    k8s = TopologySpec.from_toml(compose_dir / "k8s" / "topology.toml")
    entrypoint = (compose_dir / "nats" / ENTRYPOINT).read_text(encoding="utf-8")
    for s in k8s.sites:
        name = "nats-config.yaml" if len(k8s.sites) == 1 else f"nats-config-{s.name}.yaml"
        out[compose_dir / "k8s" / name] = k8s_config_map(k8s, s.name, entrypoint)
    return out


SECRET_KEYS: Final = re.compile(
    r"^(NATS_[A-Z0-9_]+_PASSWORD|POSTGRES_[A-Z0-9_]+_PASSWORD|VAULT_KEY_[A-Z0-9]+)$"
)
"""Keys of ``compose/.env.example`` that :func:`fill_env` gives a random value."""


def fill_env(example: str) -> str:
    """``example`` (the text of ``.env.example``) with every empty secret filled in.

    NATS and PostgreSQL passwords are ``secrets.token_urlsafe(32)`` (URL-safe, as
    the entrypoint requires); vault keys come from
    :func:`sitemesh.policy.generate_vault_key`. Other lines are kept as they are.
    """
    import secrets

    from ..policy import generate_vault_key

    out = []
    for line in example.splitlines():
        key, sep, value = line.partition("=")
        if sep and not value and SECRET_KEYS.match(key):
            secret = generate_vault_key() if key.startswith("VAULT_KEY_") else None
            line = f"{key}={secret or secrets.token_urlsafe(32)}"
        out.append(line)
    return "\n".join(out) + "\n"
