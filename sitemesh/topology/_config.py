"""nats-server configuration for the hub and the sites (text, deterministic).

Design (DESIGN section 2; nats-server docs "Leaf Nodes", "Configuring Leaf Nodes",
"Multi Tenancy using Accounts", "JetStream > Configuring JetStream > Domains"):

* **Site server** (JetStream domain ``<site>``) has two accounts.
  ``SITE`` holds every site stream (TASKS, WORK, EVENTS, DLQ, ADVISORIES, INBOX)
  and all workers. ``EGRESS`` holds only ``OUTBOX_<site>`` and
  ``INBOX_LANDING_<site>`` and is the only account the leaf remote binds
  (``leafnodes.remotes[].account``), so the hub's view of the site's JetStream
  (``$JS.<site>.API``) is EGRESS's, never SITE's.
* The accounts meet only through two *service* exports/imports (services, not
  streams, so that a JetStream publish gets its PubAck back across the
  accounts): EGRESS exports ``sm.v1.out.<site>.>`` to SITE (workers publish
  outbox events, OUTBOX stores them and acks), and SITE exports
  ``sm.v1.in.<site>.>`` to EGRESS (the inbox relay publishes answers, SITE's
  INBOX stores them and acks). Each export names its one importing account.
* **Hub server** (JetStream domain ``hub``) has the account ``CLOUD`` (cloud
  agents, CLOUD_IN, CLOUD_OUT). Leaf connections log in as per-site users of
  ``CLOUD`` whose permissions are the leaf filter (for a leaf connection,
  "publish" is what the site may send to the hub and "subscribe" what the hub
  may send to the site): only that site's outbox subjects, the per-stream
  JetStream API calls that sourcing makes (consumers on ``OUTBOX_<site>`` and on
  the site's slice of ``CLOUD_OUT``), and the reply, delivery and flow-control
  subjects sourcing uses (:func:`leaf_permissions`). ``allowed_connection_types``
  keeps those users off the client port.
* Defence in depth on the site side too: the remote's ``deny_imports`` /
  ``deny_exports`` stop raw ``sm.v1.in.>`` from crossing in either direction
  (answers come only through the sourced, deduplicated stream) and raw
  ``sm.v1.out.>`` from coming back in.

Strings are rendered as JSON strings (the config lexer reads the same escapes:
``\\"``, ``\\\\``, ``\\uXXXX``), so any password is safe; leaf URLs carry
percent-encoded credentials.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Final, TypeAlias
from urllib.parse import quote

from ..bus import CLOUD_OUT, PREFIX, Subjects
from ._creds import CredsBundle, Security
from ._model import HUB_DOMAIN, Credentials, HubSpec, SiteSpec, TopologySpec

SITE_ACCOUNT: Final = "SITE"
"""Site account of workers and operators: every site stream."""

EGRESS_ACCOUNT: Final = "EGRESS"
"""Site account bound by the leaf remote: OUTBOX and INBOX_LANDING only."""

CLOUD_ACCOUNT: Final = "CLOUD"
"""Hub account of cloud agents and of the sites' leaf connections."""

SYSTEM_ACCOUNT: Final = "SYS"
"""System account of each server (monitoring via the server, never bridged)."""

Value: TypeAlias = "str | int | bool | Path | Sequence[Value] | Mapping[str, Value]"


class _Raw(str):
    """A value rendered without quotes (keywords like ``enabled``)."""


def _render(value: Value, indent: int) -> str:
    pad = "  " * indent
    if isinstance(value, _Raw):
        return str(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str | Path):
        return json.dumps(str(value), ensure_ascii=True)
    if isinstance(value, Mapping):
        if not value:
            return "{}"
        lines = [f"{pad}  {k}: {_render(v, indent + 1)}" for k, v in value.items()]
        return "{\n" + "\n".join(lines) + f"\n{pad}}}"
    items = list(value)
    if not items:
        return "[]"
    lines = [f"{pad}  {_render(v, indent + 1)}" for v in items]
    return "[\n" + ",\n".join(lines) + f"\n{pad}]"


def render(conf: Mapping[str, Value], *, header: str = "") -> str:
    """Render ``conf`` as nats-server configuration text (stable key order).

    Args:
        conf: keys in output order; values are strings (quoted, JSON escapes),
            ints, bools, lists and nested mappings.
        header: comment lines put on top.
    """
    out = [f"# {line}".rstrip() for line in header.splitlines()]
    out += [f"{k}: {_render(v, 0)}" for k, v in conf.items()]
    return "\n".join(out) + "\n"


def _user(c: Credentials, **extra: Value) -> dict[str, Value]:
    return {"user": c.user, "password": c.password.get_secret_value(), **extra}


def _need(c: Credentials | None, what: str) -> Credentials:
    if c is None:
        raise ValueError(f"{what} has no credentials; render a resolved spec (spec.resolve())")
    return c


def leaf_permissions(site: str) -> dict[str, Value]:
    """Permissions of site ``site``'s leaf user on the hub (the leaf filter).

    From the hub's view of a leaf connection, ``publish`` is what the site may send
    into the hub and ``subscribe`` what the hub may deliver to the site (nats-server
    docs, "Leaf Nodes": subjects the user may publish are exported to the hub,
    subjects it may subscribe to are imported into the leaf).

    Beyond the site's outbox subjects, only the JetStream API calls stream sourcing
    makes are allowed, per stream (observed with nats-server 2.15: the sourcing
    server creates an ephemeral push consumer with
    ``CONSUMER.CREATE.<stream>[.<name>.<filter>]``, answered on ``$JSC.R.*``,
    delivered on ``$JS.S.*`` with flow control on ``$JS.FC.*``), plus
    ``STREAM.INFO`` of the outbox and ``_INBOX.*`` replies to it for operators.
    So the hub can neither purge the outbox nor touch other EGRESS streams, and a
    site can read only its own slice of ``CLOUD_OUT``.

    Args:
        site: site name (JetStream domain).

    Returns:
        ``{"publish": {"allow": [...]}, "subscribe": {"allow": [...]}}``.
    """
    s = Subjects(site)
    site_api = f"$JS.{site}.API"
    hub_api = f"$JS.{HUB_DOMAIN}.API"
    outbox = s.outbox_stream
    plumbing: list[Value] = ["$JSC.R.>", "$JS.S.>", "$JS.FC.>"]
    return {
        "publish": {
            "allow": [
                s.all_out,
                f"{hub_api}.CONSUMER.CREATE.{CLOUD_OUT}.*.{s.all_in}",
                f"{hub_api}.CONSUMER.DELETE.{CLOUD_OUT}.*",
                *plumbing,
                "_INBOX.>",
            ]
        },
        "subscribe": {
            "allow": [
                f"{site_api}.CONSUMER.CREATE.{outbox}",
                f"{site_api}.CONSUMER.CREATE.{outbox}.>",
                f"{site_api}.CONSUMER.DELETE.{outbox}.*",
                f"{site_api}.STREAM.INFO.{outbox}",
                *plumbing,
            ]
        },
    }


def _identities(security: Security | None, server: str, account: str) -> list[Value]:
    if security is None or security.creds is None:
        return []
    return [i.user_block() for i in security.creds.of(server, account)]  # type: ignore[misc]


def _tls(security: Security | None, server: str) -> dict[str, Value]:
    if security is None or server not in security.server_tls:
        return {}
    block = security.server_tls[server].server_block(verify=security.verify_clients)
    return {"tls": block}  # type: ignore[dict-item]


def render_hub_config(
    spec: TopologySpec, *, leaf_filter: bool = True, security: Security | None = None
) -> str:
    """The hub's nats-server configuration.

    Args:
        spec: a resolved topology (:meth:`TopologySpec.resolve`).
        leaf_filter: give the sites' leaf users :func:`leaf_permissions`. ``False``
            only to show that the account split alone keeps SITE's JetStream
            unreachable (tests); never in a deployment.
        security: per-role NKey users of ``CLOUD`` (:data:`HUB_IDENTITIES`
            permissions) and TLS on the client and leafnode ports (mutual TLS when
            ``security.verify_clients``). ``None``: the shared users only, no TLS.

    Returns:
        Config text; the same spec always gives the same text.

    Raises:
        ValueError: the spec is not resolved (missing credentials or store dir).
    """
    hub: HubSpec = spec.hub
    if hub.store_dir is None:
        raise ValueError("hub has no store_dir; render a resolved spec (spec.resolve())")
    users: list[Value] = [_user(_need(hub.cloud, "hub.cloud"))]
    for site in spec.sites:
        leaf = _user(_need(site.leaf, f"site {site.name} leaf"))
        if leaf_filter:
            leaf["permissions"] = leaf_permissions(site.name)
        leaf["allowed_connection_types"] = ["LEAFNODE"]
        users.append(leaf)
    users += _identities(security, HUB_DOMAIN, CLOUD_ACCOUNT)
    leafnodes: dict[str, Value] = {"host": hub.host, "port": hub.leafnode_port}
    leafnodes.update(_tls(security, HUB_DOMAIN))
    conf: dict[str, Value] = {
        "server_name": hub.name,
        "host": hub.host,
        "port": hub.client_port,
        "http": f"{hub.host}:{hub.monitor_port}",
        **_tls(security, HUB_DOMAIN),
        "jetstream": {"domain": hub.domain},
        "accounts": {
            CLOUD_ACCOUNT: {"jetstream": _Raw("enabled"), "users": users},
            SYSTEM_ACCOUNT: {},
        },
        "system_account": SYSTEM_ACCOUNT,
        "leafnodes": leafnodes,
    }
    return render(conf, header=f"sitemesh hub {hub.name!r} (generated; do not edit)")


def leaf_remote_url(hub: HubSpec, leaf: Credentials) -> str:
    """``nats-leaf://user:password@host:port`` with percent-encoded credentials."""
    user = quote(leaf.user, safe="")
    password = quote(leaf.password.get_secret_value(), safe="")
    return f"nats-leaf://{user}:{password}@{hub.host}:{hub.leafnode_port}"


def render_site_config(
    spec: TopologySpec, site: str, *, leaf: bool = True, security: Security | None = None
) -> str:
    """Site ``site``'s nats-server configuration (JetStream domain ``site``).

    Args:
        spec: a resolved topology (:meth:`TopologySpec.resolve`).
        site: the site's name.
        leaf: render the leaf remote to the hub (``False``: a standalone site,
            e.g. while the hub is unknown).
        security: per-role NKey users in ``SITE`` and ``EGRESS``, TLS on the client
            port and on the leaf remote (``security.leaf_tls[site]``: the client
            certificate the site presents to the hub). ``None``: as before.

    Returns:
        Config text; the same arguments always give the same text.

    Raises:
        KeyError: no such site.
        ValueError: the spec is not resolved.
    """
    s: SiteSpec = spec.site(site)
    if s.store_dir is None:
        raise ValueError(f"site {site} has no store_dir; render a resolved spec")
    subj = Subjects(site)
    conf: dict[str, Value] = {
        "server_name": f"site-{site}",
        "host": s.host,
        "port": s.client_port,
        "http": f"{s.host}:{s.monitor_port}",
        **_tls(security, site),
        "jetstream": {"domain": s.domain},
        "accounts": {
            SITE_ACCOUNT: {
                "jetstream": _Raw("enabled"),
                "users": [
                    _user(_need(s.site, f"site {site} site")),
                    *_identities(security, site, SITE_ACCOUNT),
                ],
                "exports": [{"service": subj.all_in, "accounts": [EGRESS_ACCOUNT]}],
                "imports": [{"service": {"account": EGRESS_ACCOUNT, "subject": subj.all_out}}],
            },
            EGRESS_ACCOUNT: {
                "jetstream": _Raw("enabled"),
                "users": [
                    _user(_need(s.egress, f"site {site} egress")),
                    *_identities(security, site, EGRESS_ACCOUNT),
                ],
                "exports": [{"service": subj.all_out, "accounts": [SITE_ACCOUNT]}],
                "imports": [{"service": {"account": SITE_ACCOUNT, "subject": subj.all_in}}],
            },
            SYSTEM_ACCOUNT: {},
        },
        "system_account": SYSTEM_ACCOUNT,
    }
    if leaf:
        remote: dict[str, Value] = {
            "url": leaf_remote_url(spec.hub, _need(s.leaf, f"site {site} leaf")),
            "account": EGRESS_ACCOUNT,
            # raw answers never cross: they arrive only via the sourced stream
            "deny_imports": [f"{PREFIX}.in.>", f"{PREFIX}.out.>"],
            "deny_exports": [f"{PREFIX}.in.>"],
        }
        if security is not None and site in security.leaf_tls:
            remote["tls"] = security.leaf_tls[site].remote_block()  # type: ignore[assignment]
        conf["leafnodes"] = {"reconnect": "1s", "remotes": [remote]}
    return render(conf, header=f"sitemesh site {site!r} (generated; do not edit)")


def render_embedded_config(creds: CredsBundle) -> str:
    """The embedded one-box server's configuration (``sitemesh edge``, ``sitemesh demo``).

    One account, ``SITE``, with JetStream and exactly the per-role NKey users of every
    site in ``creds`` (their :func:`~sitemesh.topology.site_permissions`), so there is
    no anonymous access: a connection without one of those identities is refused
    (``Authorization Violation``). Host, port and store directory are given on the
    command line by :class:`sitemesh.bus.EmbeddedNats`.

    Args:
        creds: the identities (:func:`~sitemesh.topology.ensure_site_creds`).

    Returns:
        Config text holding public keys and permissions only (no secret).

    Raises:
        ValueError: ``creds`` has no site identity.
    """
    users: list[Value] = [i.user_block() for i in creds.identities if i.account == SITE_ACCOUNT]  # type: ignore[misc]
    if not users:
        raise ValueError(f"no site identities in {creds.directory}; run `sitemesh creds`")
    conf: dict[str, Value] = {
        "accounts": {
            SITE_ACCOUNT: {"jetstream": _Raw("enabled"), "users": users},
            SYSTEM_ACCOUNT: {},
        },
        "system_account": SYSTEM_ACCOUNT,
    }
    return render(conf, header="sitemesh embedded server (generated; do not edit)")
