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

from ..bus._subjects import ALL_IN, ALL_OUT, CLOUD_IN, CLOUD_OUT
from ._config import (
    CLOUD_ACCOUNT,
    EGRESS_ACCOUNT,
    SITE_ACCOUNT,
    SYSTEM_ACCOUNT,
    leaf_permissions,
    leaf_remote_url,
    render_hub_config,
    render_site_config,
)
from ._egress import (
    RELAY,
    InboxRelay,
    hub_stream_configs,
    js_api,
    provision_hub,
    provision_site_egress,
    restart_stalled_sources,
    site_egress_stream_configs,
)
from ._model import HUB_DOMAIN, Credentials, HubSpec, SiteSpec, TopologySpec
from ._up import Topology, connect_as, credentials_url, run_up

__all__ = [
    "ALL_IN",
    "ALL_OUT",
    "CLOUD_ACCOUNT",
    "CLOUD_IN",
    "CLOUD_OUT",
    "EGRESS_ACCOUNT",
    "HUB_DOMAIN",
    "RELAY",
    "SITE_ACCOUNT",
    "SYSTEM_ACCOUNT",
    "Credentials",
    "HubSpec",
    "InboxRelay",
    "SiteSpec",
    "Topology",
    "TopologySpec",
    "connect_as",
    "credentials_url",
    "hub_stream_configs",
    "js_api",
    "leaf_permissions",
    "leaf_remote_url",
    "provision_hub",
    "provision_site_egress",
    "render_hub_config",
    "render_site_config",
    "restart_stalled_sources",
    "run_up",
    "site_egress_stream_configs",
]
