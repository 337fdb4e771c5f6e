"""Hub and sites: leaf-node topology, server configs and store-and-forward across it.

```python
spec = TopologySpec.for_sites(["eu1", "us1"], state_dir / "topology")
async with Topology(spec) as topo:            # hub + one leaf server per site, provisioned
    cloud = await connect(topo.hub_url, name="cloud-planner")        # CLOUD_IN / CLOUD_OUT
    workers = await connect(topo.site_url("eu1"), name="planner")   # SITE account
```

A site server has two accounts: ``SITE`` (workers, every site stream) and
``EGRESS`` (outbox and inbox landing only), and its leaf remote binds ``EGRESS``,
so the hub never sees SITE's subjects or JetStream. The hub's ``CLOUD_IN``
sources every ``OUTBOX_<site>``; each site's ``INBOX_LANDING_<site>`` sources its
slice of ``CLOUD_OUT``, and :class:`InboxRelay` moves it into SITE's
``INBOX_<site>``. See ``docs/topology.md``.
"""

from ..bus import ALL_IN, ALL_OUT, CLOUD_IN, CLOUD_OUT
from ._config import (
    CLOUD_ACCOUNT,
    EGRESS_ACCOUNT,
    SITE_ACCOUNT,
    SYSTEM_ACCOUNT,
    leaf_permissions,
    leaf_remote_url,
    render_embedded_config,
    render_hub_config,
    render_site_config,
)
from ._creds import (
    CredsBundle,
    Identity,
    Security,
    client_options,
    ensure_dev_certs,
    ensure_site_creds,
    generate_creds,
    generate_dev_certs,
    load_creds,
    read_seed,
)
from ._egress import (
    RELAY,
    InboxRelay,
    hub_stream_configs,
    js_api,
    provision_egress,
    provision_hub,
    provision_inbox,
    provision_site_egress,
    restart_stalled_sources,
    site_egress_stream_configs,
)
from ._model import HUB_DOMAIN, Credentials, HubSpec, SiteSpec, TopologySpec
from ._permissions import (
    EGRESS_IDENTITIES,
    FINAL_ROLES,
    HUB_IDENTITIES,
    SITE_IDENTITIES,
    TENANT_CLIENT_PREFIX,
    Permissions,
    client_tenant,
    egress_permissions,
    hub_permissions,
    inbox_prefix,
    permission_table,
    site_permissions,
    tenant_client,
)
from ._tls import DevPki, TlsFiles, generate_dev_pki
from ._up import Topology, connect_as, credentials_url, run_up

__all__ = [
    "ALL_IN",
    "ALL_OUT",
    "CLOUD_ACCOUNT",
    "CLOUD_IN",
    "CLOUD_OUT",
    "EGRESS_ACCOUNT",
    "EGRESS_IDENTITIES",
    "FINAL_ROLES",
    "HUB_DOMAIN",
    "HUB_IDENTITIES",
    "RELAY",
    "SITE_ACCOUNT",
    "SITE_IDENTITIES",
    "SYSTEM_ACCOUNT",
    "TENANT_CLIENT_PREFIX",
    "Credentials",
    "CredsBundle",
    "DevPki",
    "HubSpec",
    "Identity",
    "InboxRelay",
    "Permissions",
    "Security",
    "SiteSpec",
    "TlsFiles",
    "Topology",
    "TopologySpec",
    "client_options",
    "client_tenant",
    "connect_as",
    "credentials_url",
    "egress_permissions",
    "ensure_dev_certs",
    "ensure_site_creds",
    "generate_creds",
    "generate_dev_certs",
    "generate_dev_pki",
    "hub_permissions",
    "hub_stream_configs",
    "inbox_prefix",
    "js_api",
    "leaf_permissions",
    "leaf_remote_url",
    "load_creds",
    "permission_table",
    "provision_egress",
    "provision_hub",
    "provision_inbox",
    "provision_site_egress",
    "read_seed",
    "render_embedded_config",
    "render_hub_config",
    "render_site_config",
    "restart_stalled_sources",
    "run_up",
    "site_egress_stream_configs",
    "site_permissions",
    "tenant_client",
]
