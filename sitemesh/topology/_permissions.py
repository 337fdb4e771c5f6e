"""Least-privilege NATS permissions per role, derived from the one subject map.

Every process gets an identity whose permissions allow exactly the subjects its
role uses (DESIGN section 9, "Least privilege"), spelled only through
:class:`sitemesh.bus.Subjects`. JetStream is reached through its subject API
(nats-server docs, "JetStream wire API reference"), so a worker needs, besides
its data subjects:

* ``$JS.API.CONSUMER.INFO.<stream>.<durable>`` (the worker checks its consumer),
* ``$JS.API.CONSUMER.MSG.NEXT.<stream>.<durable>`` (pull requests),
* ``$JS.ACK.<stream>.<durable>.>`` (ack, nak, term, in-progress), and
* subscribe on its own reply inbox ``_INBOX.<role>.>``: each identity connects
  with ``inbox_prefix="_INBOX.<role>"`` (:func:`inbox_prefix`), so one role can
  never read another role's pull deliveries or API replies, which a shared
  ``_INBOX.>`` would allow.

Least privilege *by message*: a role publishes events only on its own event subjects
(``sm.v1.event.<site>.*.<role>``, :meth:`Subjects.events_by`), and only the final roles
(:data:`FINAL_ROLES`) may publish a final answer (``sm.v1.event.<site>.*.final.*``,
:meth:`Subjects.answer`). Answers are published create-only, without a
``Nats-Msg-Id`` (:attr:`sitemesh.bus.Outbound.create_only`), so no other role can
have the real answer dropped as a "duplicate" by publishing its msg id first.

No worker role may create, update, delete or purge streams or consumers:
that is the ``provisioner``'s job (``sitemesh.bus.provision`` at deploy time).
The only consumers a worker creates are the ordered ones that watch a KV bucket or
the artifact store (``KV_*``, ``OBJ_*``), named per role below; the escalation role
binds the durable on ``INBOX_<site>`` that :func:`sitemesh.topology.provision_inbox`
creates.

Per tenant: a tenant with a client identity of its own (:func:`tenant_client`,
``client-<tenant>``) may publish tasks only on ``sm.v1.task.<site>.<tenant>.*`` (the
router refuses a body naming another tenant) and read only its tenant's answers
(``sm.v1.event.<site>.*.final.<tenant>``), live or by a direct get of one answer. The
all-tenant ``client`` identity is for a gateway that serves every tenant.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Final

from ..bus import (
    ALL_IN,
    ANSWER_TAIL,
    CLOUD_IN,
    DEADLETTER,
    PREFIX,
    RECORDER,
    REPLAY_PREFIX,
    Subjects,
    installed_roles,
    is_tenant_token,
    knowledge_bucket,
)

JS_API: Final = "$JS.API"
"""The local JetStream API prefix (clients reach their own server's domain)."""

SERVICE_IDENTITIES: Final[tuple[str, ...]] = ("recorder", "client", "operator", "provisioner")
"""Identities of a site's ``SITE`` account besides the router and the agent roles: the
state recorder, task submitters (``client``), operators (the CLI) and the provisioner."""

SITE_IDENTITIES: Final[tuple[str, ...]] = (*installed_roles(), *SERVICE_IDENTITIES)
"""Identities of a site's ``SITE`` account: the router, every installed agent role
(the ``sitemesh.agents`` entry points), then :data:`SERVICE_IDENTITIES`. A role added by
import path gets its identity with ``sitemesh creds --role NAME``."""

TENANT_CLIENT_PREFIX: Final = "client-"
"""Identities named ``client-<tenant>`` are tenant-scoped clients
(:func:`tenant_client`); no agent role may be named so."""


def tenant_client(tenant: str) -> str:
    """The name of ``tenant``'s own client identity: ``client-<tenant>``.

    Raises:
        ValueError: ``tenant`` is not 1-64 characters of ``[A-Za-z0-9_-]`` starting
            with a letter, digit or ``-`` (:func:`sitemesh.bus.is_tenant_token`): it
            must be its own subject token, or two tenants could share one.
    """
    if not is_tenant_token(tenant):
        raise ValueError(
            f"tenant {tenant[:64]!r} cannot have a client identity: expected 1-64 "
            "characters of [A-Za-z0-9_-], not starting with '_'"
        )
    return TENANT_CLIENT_PREFIX + tenant


def client_tenant(role: str) -> str | None:
    """The tenant of a tenant client identity (``client-acme`` -> ``acme``), else
    ``None``."""
    if role.startswith(TENANT_CLIENT_PREFIX):
        return role[len(TENANT_CLIENT_PREFIX) :]
    return None


EGRESS_IDENTITIES: Final[tuple[str, ...]] = ("relay",)
"""Identities of a site's ``EGRESS`` account: the inbox relay."""

HUB_IDENTITIES: Final[tuple[str, ...]] = ("synthesiser", "operator", "provisioner")
"""Identities of the hub's ``CLOUD`` account."""

POLICY_BUCKET: Final = "sitemesh_policy"
"""Mirror of :data:`sitemesh.policy.POLICY_BUCKET` (the policy package imports the bus)."""

INBOX_DURABLE: Final = "inbox"
"""Mirror of :data:`sitemesh.runtime.INBOX_DURABLE` (escalation's inbox consumer)."""

RELAY_DURABLE: Final = "relay"
"""Mirror of :data:`sitemesh.topology.RELAY` (the inbox relay's consumer)."""

WORKERS_BUCKET_PREFIX: Final = "sitemesh_workers_"
"""Mirror of :data:`sitemesh.runtime.WORKERS_BUCKET_PREFIX` (the worker registry of a
site, ``sitemesh_workers_<site>``; the runtime imports the topology)."""

TOOLS_BUCKET_PREFIX: Final = "sitemesh_tools_"
"""Mirror of :data:`sitemesh.runtime.TOOLS_BUCKET_PREFIX` (the tool health of a site's
processes, ``sitemesh_tools_<site>``)."""

FINAL_ROLES: Final[tuple[str, ...]] = ("escalation",)
"""Roles that may publish a task's final answer (the last step of every workflow)."""

HUB_SITE: Final = "hub"
"""Site token of the hub's own subjects (``sm.v1.dlq.hub.synthesiser``)."""


@dataclass(frozen=True, slots=True)
class Permissions:
    """Subjects one identity may publish and subscribe to (nats-server ``permissions``).

    Attributes:
        publish: allowed publish subjects (wildcards ``*`` and ``>``).
        subscribe: allowed subscribe subjects.
        deny_publish: publish subjects denied even if an allow matches.
    """

    publish: tuple[str, ...]
    subscribe: tuple[str, ...]
    deny_publish: tuple[str, ...] = ()

    def to_conf(self) -> dict[str, object]:
        """The ``permissions`` block of a nats-server user."""
        pub: dict[str, object] = {"allow": list(self.publish)}
        if self.deny_publish:
            pub["deny"] = list(self.deny_publish)
        return {"publish": pub, "subscribe": {"allow": list(self.subscribe)}}


def inbox_prefix(role: str) -> str:
    """The reply-inbox prefix identity ``role`` must connect with (``_INBOX.<role>``).

    Pass it as nats-py's ``connect(inbox_prefix=...)``; the identity may subscribe
    only below it.
    """
    return f"_INBOX.{role}"


def _consume(stream: str, durable: str) -> list[str]:
    """Publish subjects to pull from and settle messages of one durable consumer."""
    return [
        f"{JS_API}.CONSUMER.INFO.{stream}.{durable}",
        f"{JS_API}.CONSUMER.MSG.NEXT.{stream}.{durable}",
        f"$JS.ACK.{stream}.{durable}.>",
    ]


def _kv(bucket: str, *, write: bool, create: bool) -> list[str]:
    """JetStream API (and ``$KV`` writes) for using KV bucket ``bucket``.

    Reads are ``DIRECT.GET``/``STREAM.MSG.GET``; watching (the live policy) is an
    ordered push consumer, created and deleted on the bucket's stream only, with
    flow-control replies on ``$JS.FC.>``.
    """
    stream = f"KV_{bucket}"
    out = [
        f"{JS_API}.STREAM.INFO.{stream}",
        f"{JS_API}.DIRECT.GET.{stream}",
        f"{JS_API}.DIRECT.GET.{stream}.>",
        f"{JS_API}.STREAM.MSG.GET.{stream}",
        f"{JS_API}.CONSUMER.CREATE.{stream}",
        f"{JS_API}.CONSUMER.CREATE.{stream}.>",
        f"{JS_API}.CONSUMER.DELETE.{stream}.*",
        f"{JS_API}.CONSUMER.INFO.{stream}.*",
        "$JS.FC.>",
    ]
    if write:
        out.append(f"$KV.{bucket}.>")
    if create:
        out.append(f"{JS_API}.STREAM.CREATE.{stream}")
    return out


def _artifacts_read(site: str) -> list[str]:
    """Read and watch the site's artifact bucket (``sitemesh_knowledge_<site>``: the
    knowledge bases and triage examples, see :class:`sitemesh.bus.SiteArtifacts`):
    stream info, message gets and ordered consumers on its ``OBJ_`` stream, and
    ``STREAM.NAMES`` (nats-py's object-store ``list``/``watch`` looks the stream up by
    subject; the reply holds stream names only, no content)."""
    stream = f"OBJ_{knowledge_bucket(site)}"
    return [
        f"{JS_API}.STREAM.NAMES",
        f"{JS_API}.STREAM.INFO.{stream}",
        *_get_msg(stream),
        f"{JS_API}.CONSUMER.CREATE.{stream}",
        f"{JS_API}.CONSUMER.CREATE.{stream}.>",
        f"{JS_API}.CONSUMER.DELETE.{stream}.*",
        "$JS.FC.>",
    ]


def _presence(site: str, role: str) -> list[str]:
    """Register in site ``site``'s worker registry as ``role``: put, read and delete
    the keys ``<role>.*`` of ``sitemesh_workers_<site>`` (the provisioner creates it)."""
    return _own_keys(f"{WORKERS_BUCKET_PREFIX}{site}", role)


def _tool_health(site: str, role: str) -> list[str]:
    """Publish ``role``'s tool health in site ``site``'s ``sitemesh_tools_<site>``: put,
    read and delete the keys ``<role>.*`` (the provisioner or operator creates it)."""
    return _own_keys(f"{TOOLS_BUCKET_PREFIX}{site}", role)


def _own_keys(bucket: str, role: str) -> list[str]:
    """Bucket info, and put, delete and direct gets of the keys ``<role>.*`` only."""
    stream = f"KV_{bucket}"
    return [
        f"{JS_API}.STREAM.INFO.{stream}",
        f"{JS_API}.DIRECT.GET.{stream}.$KV.{bucket}.{role}.>",
        f"$KV.{bucket}.{role}.>",
    ]


def _get_msg(stream: str) -> list[str]:
    return [
        f"{JS_API}.STREAM.MSG.GET.{stream}",
        f"{JS_API}.DIRECT.GET.{stream}",
        f"{JS_API}.DIRECT.GET.{stream}.>",
    ]


def site_permissions(site: str, role: str) -> Permissions:
    """Permissions of identity ``role`` in site ``site``'s ``SITE`` account.

    Args:
        site: the site name.
        role: one of :data:`SITE_IDENTITIES`, a tenant client (:func:`tenant_client`),
            or any other agent role name.

    Returns:
        The role's permissions, spelled through ``Subjects(site)``.

    Raises:
        KeyError: unknown role.
        ValueError: ``role`` is the reserved answer token (``final``), or a tenant
            client of a tenant that is not a subject token.
    """
    if role == ANSWER_TAIL:
        raise ValueError(f"{role!r} cannot be a role: its events would be the answers")
    s = Subjects(site)
    inbox = f"{inbox_prefix(role)}.>"
    if (tenant := client_tenant(role)) is not None:
        tenant_client(tenant)  # a valid tenant token, or ValueError
        # its own tenant's task subjects, and its own tenant's answers: live, or one
        # answer by a direct get (last message of the answer subject); no other
        # JetStream API, so no stream or consumer of any kind
        answers = s.answers_of(tenant)
        return Permissions(
            (s.tasks_of(tenant), f"{JS_API}.DIRECT.GET.{s.events_stream}.{answers}"),
            (inbox, answers),
        )
    if role not in SERVICE_IDENTITIES:  # the router or an agent role
        stream, durable, _ = s.consumer_for(role)
        # the next step comes from the task's workflow, so any role's work subject;
        # events only as itself
        pub = [*_consume(stream, durable), s.events_by(role), s.dlq(role), s.all_work]
        if role in FINAL_ROLES:
            pub.append(s.all_answers)
        pub += _presence(site, role)
        if role != "router":
            pub += _artifacts_read(site)
            pub += _tool_health(site, role)
        if role == "router":
            # MaxDeliveriesSweeper: reads the advisories, fetches the exhausted
            # message and dead-letters it on behalf of its role
            pub += _consume(s.advisories_stream, DEADLETTER)
            pub += [*_get_msg(s.tasks_stream), *_get_msg(s.work_stream), s.all_dlq]
            # AdmissionGate: the work stream's fill (info only, no message content)
            pub.append(f"{JS_API}.STREAM.INFO.{s.work_stream}")
            pub.append(s.events_by(DEADLETTER))  # the sweeper's task_failed events
            pub += _kv(POLICY_BUCKET, write=True, create=False)  # `provision` creates it
            # the task-id registry (sitemesh.edge_node.task_registry_bucket; created by
            # the provisioner) and a resubmitted task's events, to report where it stands
            pub += [*_kv(f"sitemesh_tasks_{site}", write=True, create=False)]
            pub += _get_msg(s.events_stream)
        if role == "escalation":
            pending = f"sm_pending_{site}"
            pub += [
                s.out("escalation"),
                *_consume(s.inbox_stream, INBOX_DURABLE),  # provision_inbox creates it
                *_kv(pending, write=True, create=False),  # the site's provisioning creates it
            ]
        return Permissions(tuple(pub), (inbox,))
    if role == "recorder":
        pub = [*_consume(s.events_stream, RECORDER), *_consume(s.dlq_stream, RECORDER)]
        pub += _presence(site, role)
        return Permissions(tuple(pub), (inbox,))
    if role == "client":
        # submit tasks and read the answers; no JetStream API at all (so no stream or
        # consumer can be created, changed or deleted), no other event
        return Permissions((s.all_tasks,), (inbox, s.all_answers))
    if role == "operator":
        # the CLI: everything inside the site (publish, approve, redrive, replay,
        # inspect), but never the outbox (only the privacy path may publish there) nor
        # a final answer (only the final roles write those).
        # Nor may it subscribe to the outbox subjects: a subscription there would give
        # a push consumer it creates (deliver_subject sm.v1.out.<site>...) the interest
        # it needs to deliver, i.e. to copy any stream into the outbox.
        return Permissions(
            (
                f"{PREFIX}.*.{site}.>",
                f"{REPLAY_PREFIX}.>",
                f"{JS_API}.>",
                "$JS.ACK.>",
                "$KV.>",
                f"$O.{knowledge_bucket(site)}.>",
                "$JS.FC.>",
            ),
            (
                inbox,
                s.all_tasks,
                s.all_work,
                s.all_events,
                s.all_dlq,
                s.all_in,
                f"{REPLAY_PREFIX}.>",
            ),
            deny_publish=(s.all_out, s.all_answers),
        )
    if role == "provisioner":
        # create/update streams and consumers; no data subjects at all
        return Permissions(
            (
                f"{JS_API}.INFO",
                f"{JS_API}.STREAM.CREATE.*",
                f"{JS_API}.STREAM.UPDATE.*",
                f"{JS_API}.STREAM.INFO.*",
                f"{JS_API}.STREAM.NAMES",
                f"{JS_API}.STREAM.LIST",
                f"{JS_API}.CONSUMER.CREATE.>",
                f"{JS_API}.CONSUMER.DURABLE.CREATE.>",
                f"{JS_API}.CONSUMER.INFO.>",
            ),
            (inbox,),
        )
    raise KeyError(f"unknown site identity {role!r}; expected one of {SITE_IDENTITIES}")


def egress_permissions(site: str, role: str) -> Permissions:
    """Permissions of identity ``role`` in site ``site``'s ``EGRESS`` account.

    The inbox relay pulls ``INBOX_LANDING_<site>``, republishes into SITE's inbox
    (``sm.v1.in.<site>.>``, the service import) and restarts the landing stream's
    stalled source (``STREAM.INFO``/``STREAM.UPDATE`` of that one stream).

    Raises:
        KeyError: unknown role.
    """
    if role != "relay":
        raise KeyError(f"unknown egress identity {role!r}; expected one of {EGRESS_IDENTITIES}")
    s = Subjects(site)
    landing = s.inbox_landing_stream
    return Permissions(
        (
            *_consume(landing, RELAY_DURABLE),
            s.all_in,
            f"{JS_API}.STREAM.INFO.{landing}",
            f"{JS_API}.STREAM.UPDATE.{landing}",
        ),
        (f"{inbox_prefix(role)}.>",),
    )


def hub_permissions(role: str) -> Permissions:
    """Permissions of identity ``role`` in the hub's ``CLOUD`` account.

    The synthesiser pulls its durable on ``CLOUD_IN``, answers on ``sm.v1.in.>``
    (stored by ``CLOUD_OUT`` for every site), writes the hub's events and its dead
    letters, and restarts stalled ``CLOUD_IN`` sources (``STREAM.INFO`` /
    ``STREAM.UPDATE`` of ``CLOUD_IN`` only).

    Raises:
        KeyError: unknown role.
    """
    hub = Subjects(HUB_SITE)
    inbox = f"{inbox_prefix(role)}.>"
    if role == "synthesiser":
        return Permissions(
            (
                *_consume(CLOUD_IN, "synthesiser"),
                ALL_IN,
                hub.all_events,
                hub.dlq("synthesiser"),
                f"{JS_API}.STREAM.INFO.{CLOUD_IN}",
                f"{JS_API}.STREAM.UPDATE.{CLOUD_IN}",
                *_presence(HUB_SITE, role),
            ),
            (inbox,),
        )
    if role == "operator":
        return Permissions(
            (f"{PREFIX}.>", f"{JS_API}.>", "$JS.ACK.>", "$JS.FC.>"),
            (inbox, f"{PREFIX}.>"),
        )
    if role == "provisioner":
        return site_permissions(HUB_SITE, "provisioner")
    raise KeyError(f"unknown hub identity {role!r}; expected one of {HUB_IDENTITIES}")


def permission_table(site: str, roles: Iterable[str] = ()) -> Mapping[str, Permissions]:
    """Every identity of site ``site`` (``SITE`` and ``EGRESS``) and of the hub.

    Keys are ``<account>/<role>``, e.g. ``"SITE/retriever"``, ``"CLOUD/synthesiser"``.

    Args:
        site: the site name.
        roles: ``SITE`` identities besides :data:`SITE_IDENTITIES` (roles added by
            import path, tenant clients ``client-<tenant>``).
    """
    out: dict[str, Permissions] = {}
    for role in dict.fromkeys((*SITE_IDENTITIES, *roles)):
        out[f"SITE/{role}"] = site_permissions(site, role)
    for role in EGRESS_IDENTITIES:
        out[f"EGRESS/{role}"] = egress_permissions(site, role)
    for role in HUB_IDENTITIES:
        out[f"CLOUD/{role}"] = hub_permissions(role)
    return out
