"""The Kubernetes manifests of one site (``compose/k8s/``) validate and are consistent.

Every manifest validates strictly (unknown fields are errors) against the bundled
JSON Schemas of :data:`K8S_VERSION` (``kubernetes-validate``, offline). Beyond the
schemas: one Deployment per worker role, the recorder exactly once, commands the
CLI parses, settings keys that exist, Secret/ConfigMap references that resolve,
and NATS Helm values that run the generated config on the pinned server release.
"""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from sitemesh.agents import Registry
from sitemesh.cli._run import site_roles
from sitemesh.runtime import worker_roles
from sitemesh.topology import TopologySpec
from sitemesh.topology._compose import password_env_names
from tests.test_deploy_compose import (
    ROOT,
    parse_cli,
    pinned_nats_version,
    settings_env_keys,
)

SITE_ROLES = tuple(dict.fromkeys(site_roles(1)))
WORKER_ROLES = worker_roles(Registry.load())

kv = pytest.importorskip("kubernetes_validate", reason="pip install kubernetes-validate")

K8S_VERSION = "1.33.0"
"""Kubernetes release the manifests are checked against (schemas bundled offline)."""

K8S = ROOT / "compose" / "k8s"
SITE = "eu1"
NAMESPACE = f"sitemesh-{SITE}"
SECRET = f"sitemesh-{SITE}"
NOT_MANIFESTS = {"kustomization.yaml", "nats-values.yaml"}


def manifests() -> list[tuple[str, dict[str, Any]]]:
    """``(file name, document)`` of every Kubernetes object under ``compose/k8s``."""
    out = []
    for path in sorted(K8S.glob("*.yaml")):
        if path.name in NOT_MANIFESTS:
            continue
        for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")):
            if doc:
                out.append((path.name, doc))
    return out


def objects(kind: str) -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for _, d in manifests() if d["kind"] == kind}


@pytest.mark.parametrize(
    ("name", "doc"),
    [pytest.param(n, d, id=f"{n}:{d['kind']}/{d['metadata']['name']}") for n, d in manifests()],
)
def test_manifest_validates_against_the_schemas(name: str, doc: dict[str, Any]) -> None:
    kv.validate(doc, K8S_VERSION, strict=True)
    assert doc["metadata"].get("namespace", NAMESPACE) == NAMESPACE or doc["kind"] == "Namespace"


def test_the_validator_does_catch_mistakes() -> None:
    deployment = copy.deepcopy(objects("Deployment")["sitemesh-planner"])
    deployment["spec"]["replicas"] = "two"
    with pytest.raises(kv.ValidationError):
        kv.validate(deployment, K8S_VERSION, strict=True)
    deployment = copy.deepcopy(objects("Deployment")["sitemesh-planner"])
    deployment["spec"]["template"]["spec"]["containers"][0]["envFrom"][0]["configMapRefs"] = {}
    with pytest.raises(kv.ValidationError):
        kv.validate(deployment, K8S_VERSION, strict=True)


def test_kustomization_lists_every_manifest() -> None:
    kust = yaml.safe_load((K8S / "kustomization.yaml").read_text(encoding="utf-8"))
    assert kust["namespace"] == NAMESPACE
    listed = set(kust["resources"])
    files = {p.name for p in K8S.glob("*.yaml")} - NOT_MANIFESTS
    assert listed == files


def test_one_deployment_per_role_and_one_recorder() -> None:
    deployments = objects("Deployment")
    trim = deployments.pop("sitemesh-trim")  # the stream trimmer next to the workers
    (container,) = trim["spec"]["template"]["spec"]["containers"]
    command, params = parse_cli(container["args"])
    assert (command, params["watch"], params["site"]) == ("trim", True, SITE)
    assert trim["spec"]["replicas"] == 1
    assert set(deployments) == {f"sitemesh-{role}" for role in SITE_ROLES}
    recorder = deployments["sitemesh-recorder"]["spec"]
    assert recorder["replicas"] == 1
    assert recorder["strategy"]["type"] == "Recreate"
    for name, dep in deployments.items():
        spec = dep["spec"]
        assert spec["selector"]["matchLabels"].items() <= (
            spec["template"]["metadata"]["labels"].items()
        ), name
        (container,) = spec["template"]["spec"]["containers"]
        command, params = parse_cli(container["args"])
        assert command == "worker"
        assert params["role"] in WORKER_ROLES
        assert name == f"sitemesh-{params['role']}"
        assert params["site"] == SITE


def test_env_names_are_settings_and_refs_resolve() -> None:
    known = settings_env_keys()
    config_maps = objects("ConfigMap")
    docs = (ROOT / "docs" / "deploy.md").read_text(encoding="utf-8")
    for key in config_maps["sitemesh-env"]["data"]:
        assert key in known, f"ConfigMap sitemesh-env: {key} is not a sitemesh setting"
    assert config_maps["sitemesh-env"]["data"]["SITEMESH_SITE"] == SITE
    for name, dep in objects("Deployment").items():
        (container,) = dep["spec"]["template"]["spec"]["containers"]
        for ref in container.get("envFrom", []):
            assert ref["configMapRef"]["name"] in config_maps, name
        defined: set[str] = set()
        for var in container["env"]:
            key = var["name"]
            assert key in known or re.fullmatch(r"NATS_[A-Z0-9]+_[A-Z]+_PASSWORD", key), key
            for used in re.findall(r"\$\(([A-Z0-9_]+)\)", var.get("value", "")):
                assert used in defined, f"{name}: $({used}) used before it is defined"
            secret = var.get("valueFrom", {}).get("secretKeyRef")
            if secret:
                assert secret["name"] == SECRET
                # the operator creates the Secret: docs/deploy.md must name every key
                assert secret["key"] in docs, f"docs/deploy.md does not mention {secret['key']}"
            defined.add(key)


def test_nats_values_run_the_generated_config_on_the_pinned_server() -> None:
    values = yaml.safe_load((K8S / "nats-values.yaml").read_text(encoding="utf-8"))
    container = values["container"]
    assert container["image"] == {"repository": "nats", "tag": f"{pinned_nats_version()}-alpine"}
    spec = TopologySpec.from_toml(K8S / "topology.toml")
    needed = {n for n in password_env_names(spec) if not n.startswith("NATS_HUB_")}
    assert set(container["env"]) == needed
    for env in container["env"].values():
        assert env["valueFrom"]["secretKeyRef"]["name"] == SECRET
    patches = {p["path"]: p["value"] for p in container["patch"]}
    assert patches["/command"] == ["/bin/sh", "/etc/sitemesh/entrypoint.sh"]
    mount = patches["/volumeMounts/-"]
    (volume,) = [p["value"] for p in values["podTemplate"]["patch"]]
    assert volume["name"] == mount["name"]
    config_map = objects("ConfigMap")[volume["configMap"]["name"]]
    assert {"nats.conf", "entrypoint.sh"} <= set(config_map["data"])
    store = patches["/args"][patches["/args"].index("-sd") + 1]
    assert f"{values['config']['jetstream']['fileStore']['dir']}" == store
    assert values["config"]["nats"]["port"] == spec.site(SITE).client_port
    assert values["config"]["monitor"]["port"] == spec.site(SITE).monitor_port


def test_generated_config_map_holds_the_site_config() -> None:
    data = objects("ConfigMap")["sitemesh-nats"]["data"]
    assert data["entrypoint.sh"] == (ROOT / "compose" / "nats" / "entrypoint.sh").read_text()
    assert (
        f'url: "nats-leaf://leaf-{SITE}:__NATS_{SITE.upper()}_LEAF_PASSWORD__@'
        in (data["nats.conf"])
    )


def test_secret_is_never_committed() -> None:
    assert "Secret" not in {d["kind"] for _, d in manifests()}
    assert not any(Path(K8S).glob("*secret*"))
