"""No password, NKey seed or vault key in any process log of a hybrid run.

Runs the real commands as an operator would — ``sitemesh demo --sites eu1,us1`` (hub,
two sites, every worker, 360 tickets across the boundary) and ``sitemesh up --sites
eu1,us1`` until ready — then reads every secret the run generated from where it keeps
them (the rendered server configs, the vault keys, ``up``'s env files) and searches
every file under the state directory and the command's stdout/stderr for them and
for any NKey seed (``SU`` + 56 base32 characters). The only files allowed to hold a
secret are those stores themselves (the per-role seeds under ``topology/creds`` and the
TLS keys under ``topology/certs`` among them), which also serve as the positive
control: the same search finds every password and every seed there. ``up``'s env files
hold paths only (the creds directory, the TLS files), no password and no seed.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import nkeys
import pytest

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

SEED = re.compile(rb"SU[A-Z2-7]{56}")
"""An NKey user seed (nats-server docs, "NKeys": prefix ``SU``, base32)."""
PASSWORD = re.compile(r'password:\s*"([^"]+)"')
"""A password in a rendered server config (JSON-quoted strings)."""
SITES = ["eu1", "us1"]
ROOT = Path(__file__).resolve().parent.parent
DEMO = [sys.executable, "-m", "sitemesh", "demo"]


@dataclass
class Scan:
    """What :func:`scan` searched and found."""

    files: int = 0
    log_files: int = 0
    bytes: int = 0
    log_bytes: int = 0
    hits: dict[str, list[str]] = field(default_factory=dict)
    """File -> the kinds of secret found in it (``password``, ``seed``, ``vault key``)."""


def stored_secrets(state: Path) -> tuple[dict[str, str], list[Path]]:
    """Every secret of the run, by value -> kind, and the files meant to hold them."""
    holders = sorted((state / "topology" / "conf").glob("*.conf"))
    found = {pw: "password" for conf in holders for pw in PASSWORD.findall(conf.read_text())}
    holders += sorted((state / "topology" / "env").glob("*.env"))  # paths only, checked
    for seed in sorted((state / "topology" / "creds").rglob("*.nk")):
        found[seed.read_text().strip()] = "seed"
        holders.append(seed)
    for key in sorted((state / "topology" / "certs").glob("*-key.pem")):
        body = [ln for ln in key.read_text().splitlines() if ln and not ln.startswith("-----")]
        found[body[0]] = "tls key"  # a line of the private key, as a log would show it
        holders.append(key)
    for site in SITES:
        key = state / site / "vault.key"
        if key.is_file():
            found[key.read_text().strip()] = "vault key"
            holders.append(key)
    return found, holders


def scan(paths: list[Path], found: dict[str, str]) -> Scan:
    """Search ``paths`` (files) for every value of ``found`` and for NKey seeds."""
    out = Scan()
    needles = [(value.encode(), kind) for value, kind in found.items()]
    for path in paths:
        data = path.read_bytes()
        out.files += 1
        out.bytes += len(data)
        if path.suffix == ".log" or path.parent.name == "logs":
            out.log_files += 1
            out.log_bytes += len(data)
        kinds = sorted({kind for needle, kind in needles if needle in data})
        if scan_text(data):
            kinds.append("seed")
        if kinds:
            out.hits[str(path)] = kinds
    return out


def scan_text(data: bytes) -> bool:
    """Whether ``data`` holds an NKey seed."""
    return SEED.search(data) is not None


def environment(state: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SITEMESH_")}
    return env | {"SITEMESH_STATE_DIR": str(state), "COLUMNS": "400", "PYTHONUNBUFFERED": "1"}


def check_run(state: Path, outputs: list[Path]) -> Scan:
    """The assertions shared by both runs; returns the scan of everything else."""
    found, holders = stored_secrets(state)
    passwords = [v for v, kind in found.items() if kind == "password"]
    # hub: cloud + one leaf user per site; each site: site + egress (the accounts'
    # administrators, kept for the topology's own provisioning)
    assert len(passwords) == 1 + 3 * len(SITES), sorted(found.values())
    seeds = [p for p in holders if p.suffix == ".nk"]
    assert len(seeds) > 10 * len(SITES), "one identity per role of every server"
    assert {"tls key"} <= set(found.values())
    control = scan(seeds, found)  # the seed search finds every stored seed
    assert set(control.hits) == {str(p) for p in seeds}, control.hits
    env_files = [p for p in holders if p.suffix == ".env"]
    assert scan(env_files, found).hits == {}, "env files hold paths, never a secret"
    # positive control: the same search does find the passwords where they are kept
    confs = [p for p in holders if p.suffix == ".conf"]
    control = scan(confs, found)
    assert set(control.hits) == {str(p) for p in confs}, control.hits
    assert all("password" in kinds for kinds in control.hits.values())
    seed = nkeys.encode_seed(secrets.token_bytes(32), nkeys.PREFIX_BYTE_USER)
    assert SEED.fullmatch(seed), "positive control: the seed pattern matches a real seed"
    assert scan_text(b"x " + seed + b" y")

    everything = [p for p in state.rglob("*") if p.is_file() and p not in holders]
    logs = {
        state / "logs" / "hub-synthesiser-1.log",
        state / "topology" / "hub" / "nats-server.log",
        *(state / "logs" / f"{site}-router-1.log" for site in SITES),
        *(state / "topology" / "sites" / site / "nats-server.log" for site in SITES),
    }
    assert logs <= set(everything), "every worker and server writes its log there"
    result = scan(everything + outputs, found)
    assert result.hits == {}, f"secrets outside their stores: {result.hits}"
    print(
        f"scanned {result.files} files ({result.bytes} bytes), of them {result.log_files} "
        f"log files ({result.log_bytes} bytes) and {len(outputs)} command outputs, for "
        f"{len(found)} secrets and the NKey seed pattern: {len(result.hits)} hits"
    )
    return result


DEMO_TICKETS = 60
"""Tickets of examples/data the hybrid demo runs here: every code path that could log a
secret (hub, leaf links, both sites, approvals, malformed tasks) runs on a few dozen as on
all of them; ``make demo`` runs them all."""


def demo_data(tmp_path: Path) -> Path:
    """examples/data with its first :data:`DEMO_TICKETS` tickets (and their labels)."""
    data = tmp_path / "data"
    shutil.copytree(ROOT / "examples" / "data", data)
    for name in ("tickets.jsonl", "tickets.labels.jsonl"):
        lines = (data / name).read_text("utf-8").splitlines(keepends=True)
        assert len(lines) > DEMO_TICKETS, name
        (data / name).write_text("".join(lines[:DEMO_TICKETS]), "utf-8")
    return data


def test_hybrid_demo_logs_no_secret(tmp_path: Path) -> None:
    state = tmp_path / "state"
    out, err = tmp_path / "demo.stdout", tmp_path / "demo.stderr"
    data = demo_data(tmp_path)
    with out.open("wb") as fo, err.open("wb") as fe:
        done = subprocess.run(
            [*DEMO, "--sites", ",".join(SITES), "--data", str(data)],
            env=environment(state),
            stdout=fo,
            stderr=fe,
            timeout=840,
            check=False,
        )
    text = out.read_text("utf-8", "replace")
    assert done.returncode == 0, text[-3000:] + err.read_text("utf-8", "replace")[-3000:]
    assert "demo OK" in text
    check_run(state, [out, err])


def test_up_prints_no_password_and_says_where_the_identities_are(tmp_path: Path) -> None:
    state = tmp_path / "state"
    out, err = tmp_path / "up.stdout", tmp_path / "up.stderr"
    with out.open("wb") as fo, err.open("wb") as fe:
        proc = subprocess.Popen(
            [sys.executable, "-m", "sitemesh", "up", "--sites", ",".join(SITES)],
            env=environment(state),
            stdout=fo,
            stderr=fe,
        )
        try:
            deadline = time.monotonic() + 300
            while "Ctrl-C to stop" not in out.read_text("utf-8", "replace"):
                assert proc.poll() is None, err.read_text("utf-8", "replace")[-3000:]
                assert time.monotonic() < deadline, "sitemesh up was not ready in 300 s"
                time.sleep(0.5)
        finally:
            proc.send_signal(signal.SIGINT)
            code = proc.wait(timeout=120)
    text = out.read_text("utf-8", "replace")
    assert code == 0, text[-3000:] + err.read_text("utf-8", "replace")[-3000:]
    assert "ready" in text
    env_dir = state / "topology" / "env"
    for server in ["hub", *SITES]:
        path = env_dir / f"{server}.env"
        assert str(path) in text  # where the env files are
        assert path.stat().st_mode & 0o777 == 0o600
    for line in text.splitlines():
        if line.startswith(("hub ", "site ")):
            assert re.search(r"nats://127\.0\.0\.1:\d+ ", line), line  # no userinfo at all
    eu1 = (env_dir / "eu1.env").read_text()
    assert f"SITEMESH_NATS_CREDS_DIR={state / 'topology' / 'creds'}" in eu1
    assert f"SITEMESH_NATS_TLS_CERT_FILE={state / 'topology' / 'certs' / 'client-eu1.pem'}" in eu1
    assert f"identities: {state / 'topology' / 'creds'}" in text
    check_run(state, [out, err])
