"""Machine data on the privacy path: log lines through today's scan and the machine-aware one.

Three measurements, every path through the real :class:`sitemesh.policy.PolicyRouter`
(its decisions, batched with ``decide_many`` as the router role does):

1. **False positives on real logs**: the loghub 2k-line samples (15 systems,
   https://github.com/logpai/loghub, research-only licence: read at run time from
   ``--loghub``, never copied into the repository). Each line is one telemetry alert,
   and the share of lines classed ``confidential`` or ``restricted`` is reported per
   system and overall, with the entity types that caused it, for four paths:

   * ``before``: the line as the alert's ``summary`` under a policy with
     ``machine_kinds = []``: the stock :class:`~sitemesh.policy.PiiScanner` scan,
     exactly what the router did before machine kinds existed (it scanned
     ``summary`` only; the inline ``logs`` were not scanned at all);
   * ``summary``: the line as the ``summary``, default policy (``telemetry_alert`` is a
     machine kind): machine tokens masked, NER, user names;
   * ``logs``: the line as the alert's only inline log line (summary empty): masked,
     pattern recognizers and user names, no NER;
   * ``logs, no allow-list``: the same without device networks.

   Device networks (``--device-networks``) default to the RFC 1918 ranges, standing in
   for the operator's own networks (the loghub clusters use 10.x and 172.x addresses).
   Lines classed ``restricted`` are a subset of the first figure, shown in brackets.
   Not every remaining detection is a false positive: OpenSSH and Linux carry real
   external addresses and user names, the Mac log a real e-mail address.

2. **Real PII in OpenSSH and Linux**: the parameters of each line's loghub template
   (``<System>_2k.log_structured.csv``) that parse as a global IP address, or that
   follow ``user``/``for``/``user=`` in the template (a user name; operating-system
   accounts such as ``root`` counted apart), and how many each path still finds
   (a detection of the type, ``USER_NAME`` or ``PERSON`` for names, overlapping it).

3. **Recall on planted PII**: log lines written from realistic templates (sshd, PAM,
   sudo, postfix, an access log, JSON, log4j, an SMS gateway, Asterisk, billing,
   RADIUS, a CRM sync; two with user-name phrasings the recognizer does not know),
   each with a timestamp, pids and ids, and a generated value (user names, e-mail
   addresses, global client IPv4/IPv6 addresses, phone numbers in E.123, national and
   bare-digit forms, Luhn-valid card numbers; seeded, ``--seed``). Recall per type for
   the same paths; a value is found when a detection of its type overlaps it. The
   templates were written alongside the recognizer: the real OpenSSH/Linux figures
   (2.) are the independent check.

Usage: ``python bench/pii_logs.py [--loghub ../shared/data/logs-loghub] [--per-template
120]``. Takes a few minutes on two cores (the ``before`` path runs spaCy on every line).
"""

from __future__ import annotations

import argparse
import csv
import ipaddress
import random
import re
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sitemesh.policy import (
    SYSTEM_ACCOUNTS,
    USER_NAME,
    DetectedEntity,
    MachineDataScanner,
    PiiScanner,
    Policy,
    PolicyRouter,
    build_analyzer,
    classify,
)
from sitemesh.schemas import LogLine, TelemetryAlert

SYSTEMS = [
    "Android",
    "Apache",
    "HDFS",
    "HPC",
    "Hadoop",
    "HealthApp",
    "Linux",
    "Mac",
    "OpenSSH",
    "OpenStack",
    "Proxifier",
    "Spark",
    "Thunderbird",
    "Windows",
    "Zookeeper",
]
RFC1918 = ["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"]
REAL_PII = ("Linux", "OpenSSH", "Proxifier")
OTHERS = "12 others"
START = datetime(2031, 4, 2, 7, 0, tzinfo=UTC)
BATCH = 64
"""Alerts per ``decide_many`` call (the router's default fetch batch)."""

FOUND_BY = {
    "USER_NAME": {USER_NAME, "PERSON"},
    "EMAIL_ADDRESS": {"EMAIL_ADDRESS"},
    "IP_ADDRESS": {"IP_ADDRESS"},
    "PHONE_NUMBER": {"PHONE_NUMBER"},
    "CREDIT_CARD": {"CREDIT_CARD"},
}
"""Planted type -> detected types that count as finding it."""


Scan = Callable[[Sequence[str]], list[list[DetectedEntity]]]


@dataclass
class Route:
    """One way of putting a line through the router: as an alert's summary or log line."""

    name: str
    router: PolicyRouter
    as_log: bool
    spans: Scan
    """The scanner call the router makes for such a line (for the detections' offsets)."""
    seconds: float = 0.0
    lines: int = 0

    def alert(self, line: str) -> TelemetryAlert:
        return TelemetryAlert(
            device="edge3",
            window_start=START,
            window_end=START + timedelta(minutes=10),
            summary="" if self.as_log else line,
            logs=[LogLine(line=line)] if self.as_log else [],
        )

    def run(self, lines: Sequence[str]) -> list[list[DetectedEntity]]:
        """Per line, the detections behind the router's decision on its alert.

        The decisions come from ``decide_many`` (timed); the detections, with offsets,
        from the same scanner call (cached by then), checked to give the same class.
        """
        classes = []
        for i in range(0, len(lines), BATCH):
            items = [(self.alert(line), f"l{i + k}") for k, line in enumerate(lines[i : i + BATCH])]
            start = time.perf_counter()
            decisions = self.router.decide_many(items)
            self.seconds += time.perf_counter() - start
            classes.extend(d.data_class for d in decisions)
        self.lines += len(lines)
        found = self.spans(lines)
        for cls, entities in zip(classes, found, strict=True):
            assert classify(entities) == cls, (self.name, cls, entities)
        return found


def build_routes(devices: list[str]) -> list[Route]:
    analyzer = build_analyzer()
    stock = PiiScanner(analyzer)
    before = PolicyRouter(Policy.from_toml('version = "before"\nmachine_kinds = []\n'), stock)
    routes = [Route("before", before, as_log=False, spans=stock.scan_many)]
    for name, networks, as_log in (
        ("summary", devices, False),
        ("logs", devices, True),
        ("logs, no allow-list", [], True),
    ):
        scanner = PiiScanner(analyzer)
        ms = MachineDataScanner(scanner, device_networks=networks)
        router = PolicyRouter(Policy.load(), scanner, machine_scanner=ms)
        routes.append(Route(name, router, as_log, ms.scan_lines if as_log else ms.scan_many))
    return routes


# --- 1. false positives on loghub -----------------------------------------------------


@dataclass
class Share:
    n: int = 0
    flagged: int = 0
    restricted: int = 0
    causes: Counter[str] = field(default_factory=Counter)

    def add(self, entities: list[DetectedEntity]) -> None:
        self.n += 1
        cls = classify(entities)
        if cls in ("confidential", "restricted"):
            self.flagged += 1
            self.causes.update({e.entity_type for e in entities})
        if cls == "restricted":
            self.restricted += 1

    def cell(self) -> str:
        return f"{100 * self.flagged / self.n:5.1f} ({100 * self.restricted / self.n:4.1f})"


def loghub_lines(root: Path, system: str) -> list[str]:
    text = (root / system / f"{system}_2k.log").read_text(encoding="utf-8", errors="replace")
    return [line[:2000] for line in text.splitlines()]


def bench_loghub(
    root: Path, routes: list[Route]
) -> dict[str, dict[str, list[list[DetectedEntity]]]]:
    rows = [*SYSTEMS, "overall", OTHERS]
    shares = {p.name: {s: Share() for s in rows} for p in routes}
    kept: dict[str, dict[str, list[list[DetectedEntity]]]] = {}
    for system in SYSTEMS:
        lines = loghub_lines(root, system)
        kept[system] = {}
        for p in routes:
            found = p.run(lines)
            kept[system][p.name] = found
            for entities in found:
                shares[p.name][system].add(entities)
                shares[p.name]["overall"].add(entities)
                if system not in REAL_PII:
                    shares[p.name][OTHERS].add(entities)
    print("1. loghub 2k-line samples: % of lines classed confidential or restricted")
    print("   (restricted alone in brackets); each line one telemetry alert\n")
    print(f"{'system':<12}" + "".join(f"{p.name:>22}" for p in routes))
    for system in rows:
        print(f"{system:<12}" + "".join(f"{shares[p.name][system].cell():>22}" for p in routes))
    print(f"  ({OTHERS}: overall without {', '.join(REAL_PII)}, whose remaining detections are")
    print("   real client addresses, user names and the hosts a user's browser connected to)")
    print("\nentity types in the flagged lines (lines per type)")
    for system in [*SYSTEMS, "overall"]:
        for p in routes:
            if p.name.endswith("allow-list"):
                continue
            causes = shares[p.name][system].causes.most_common(5)
            text = ", ".join(f"{t} {n}" for t, n in causes) or "-"
            print(f"  {system:<12} {p.name:<8} {text}")
    return kept


# --- 2. real PII in OpenSSH and Linux --------------------------------------------------

_USER_BEFORE = re.compile(r"(?:user |user=|password for |none for )$")


def template_params(root: Path, system: str) -> list[tuple[int, str, int, int]]:
    """``(line index, kind, start, end)`` of the IPs and user names of each line."""
    lines = loghub_lines(root, system)
    out: list[tuple[int, str, int, int]] = []
    path = root / system / f"{system}_2k.log_structured.csv"
    with path.open(encoding="utf-8", errors="replace", newline="") as f:
        for i, row in enumerate(csv.DictReader(f)):
            content, template = row["Content"], row["EventTemplate"]
            parts = template.split("<*>")
            pattern = "^" + "(.*?)".join(re.escape(p) for p in parts) + "$"
            m = re.match(pattern, content)
            at = lines[i].rfind(content)
            if m is None or at < 0:
                continue
            for g in range(1, len(parts)):
                value = m.group(g)
                start, end = at + m.start(g), at + m.end(g)
                try:
                    ip = ipaddress.ip_address(value)
                except ValueError:
                    ip = None
                if ip is not None and ip.is_global and not ip.is_multicast:
                    out.append((i, "IP_ADDRESS", start, end))
                elif ip is None and value and _USER_BEFORE.search(parts[g - 1]):
                    system_account = value.lower() in SYSTEM_ACCOUNTS
                    out.append((i, "OS_ACCOUNT" if system_account else "USER_NAME", start, end))
    return out


def bench_real_pii(
    root: Path, routes: list[Route], kept: dict[str, dict[str, list[list[DetectedEntity]]]]
) -> None:
    print("\n2. real PII in loghub OpenSSH and Linux (template parameters): found / total")
    print(f"{'system':<10} {'type':<12}" + "".join(f"{p.name:>22}" for p in routes))
    for system in ("OpenSSH", "Linux"):
        params = template_params(root, system)
        for kind in ("IP_ADDRESS", "USER_NAME", "OS_ACCOUNT"):
            mine = [x for x in params if x[1] == kind]
            if not mine:
                continue
            wanted = FOUND_BY["USER_NAME" if kind == "OS_ACCOUNT" else kind]
            cells = []
            for p in routes:
                found = kept[system][p.name]
                hits = sum(
                    any(e.entity_type in wanted and e.start < b and a < e.end for e in found[i])
                    for i, _, a, b in mine
                )
                cells.append(f"{hits}/{len(mine)}")
            print(f"{system:<10} {kind:<12}" + "".join(f"{c:>22}" for c in cells))
    print("  (OS_ACCOUNT: root and the other operating-system accounts, not reported on purpose)")


# --- 3. recall on planted PII -----------------------------------------------------------

FIRST = [
    "alice",
    "bob",
    "carol",
    "dmitri",
    "erin",
    "farah",
    "grace",
    "hiro",
    "ines",
    "jamal",
    "kofi",
    "lena",
    "maria",
    "noor",
    "olga",
]
LAST = [
    "smith",
    "garcia",
    "kowalski",
    "chen",
    "okafor",
    "mueller",
    "rossi",
    "nakamura",
    "silva",
    "novak",
    "ahmed",
    "dubois",
]
DOMAINS = [
    "example.com",
    "example.org",
    "mail.example.net",
    "gmail.com",
    "outlook.com",
    "web.de",
    "yahoo.co.uk",
]


def _luhn(prefix: str, length: int, rng: random.Random) -> str:
    body = prefix + "".join(rng.choice("0123456789") for _ in range(length - len(prefix) - 1))
    for d in "0123456789":
        total = 0
        for i, c in enumerate(reversed(body + d)):
            x = int(c) * (2 if i % 2 else 1)
            total += x - 9 if x > 9 else x
        if total % 10 == 0:
            return body + d
    raise AssertionError("unreachable")


class Values:
    """Generated personal values of each type (fictional ranges where they exist)."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng

    def user(self) -> str:
        f, last = self.rng.choice(FIRST), self.rng.choice(LAST)
        style = self.rng.randrange(5)
        return [
            f,
            f"{f}.{last}",
            f"{f[0]}{last}",
            f"{f}_{last}",
            f"{f}{self.rng.randrange(10, 99)}",
        ][style]

    def email(self) -> str:
        return f"{self.user()}@{self.rng.choice(DOMAINS)}"

    def ip(self) -> str:
        while True:
            if self.rng.random() < 0.15:
                ip: ipaddress.IPv4Address | ipaddress.IPv6Address = ipaddress.IPv6Address(
                    (0x2A00 << 112) | self.rng.getrandbits(112)
                )
            else:
                ip = ipaddress.IPv4Address(self.rng.getrandbits(32))
            if ip.is_global and not ip.is_multicast:
                return str(ip)

    def phone(self) -> str:
        r = self.rng
        n, m = r.randrange(100), r.randrange(1000)
        return r.choice(
            [
                f"+1 650-555-01{n:02d}",  # NANP fictional range 555-0100..0199
                f"(650) 555-01{n:02d}",
                f"650.555.01{n:02d}",
                f"+16505550{m:03d}",
                f"+44 20 7946 0{m:03d}",  # Ofcom drama numbers
                f"020 7946 0{m:03d}",
                f"+49 30 901820{n:02d}",
                f"6505550{m:03d}",  # bare digits: no "+", no groups
                f"447700900{m:03d}",  # a UK mobile (Ofcom 07700 900xxx) as bare E.164 digits
            ]
        )

    def card(self) -> str:
        r = self.rng
        kind = r.randrange(3)
        if kind == 2:
            number = _luhn("37", 15, r)  # American Express
            return f"{number[:4]} {number[4:10]} {number[10:]}" if r.random() < 0.5 else number
        number = _luhn(r.choice(["4", "51", "55"]), 16, r)
        if r.random() < 0.5:
            return " ".join(number[i : i + 4] for i in range(0, 16, 4))
        return number


TEMPLATES = [
    "{syslog} edge3 sshd[{pid}]: Accepted password for {USER_NAME} from {IP_ADDRESS} "
    "port {port} ssh2",
    "{syslog} edge3 sshd[{pid}]: Invalid user {USER_NAME} from {IP_ADDRESS} port {port}",
    "{syslog} edge3 sshd[{pid}]: Failed password for invalid user {USER_NAME} from {IP_ADDRESS} "
    "port {port} ssh2",
    "{syslog} edge3 sshd[{pid}]: pam_unix(sshd:auth): authentication failure; logname= uid=0 "
    "euid=0 tty=ssh ruser= rhost={IP_ADDRESS}  user={USER_NAME}",
    "{syslog} edge3 sudo:    {USER_NAME} : TTY=pts/{n} ; PWD=/var/tmp ; USER=root ; "
    "COMMAND=/usr/bin/systemctl restart bgpd",
    "{iso} INFO [http-nio-8080-exec-{n}] c.s.portal.AuthService: password reset requested by "
    "{EMAIL_ADDRESS} from {IP_ADDRESS}",
    "{syslog} mx1 postfix/smtp[{pid}]: {qid}: to=<{EMAIL_ADDRESS}>, relay=mx.example.net"
    "[10.0.3.7]:25, delay=0.{n}, status=sent (250 2.0.0 Ok)",
    '{IP_ADDRESS} - {USER_NAME} [{clf}] "GET /portal/account HTTP/1.1" 200 {bytes} "-" "curl/8.5"',
    '{{"ts":"{iso_t}","level":"info","msg":"login ok","user":"{USER_NAME}","client_ip":'
    '"{IP_ADDRESS}","latency_ms":{n}}}',
    "{log4j} WARN [sms-gw-{n}] c.s.notify.SmsSender: delivery to {PHONE_NUMBER} failed, "
    "retry={n} msgid=0x{hex}",
    "{syslog} pbx1 asterisk[{pid}]: NOTICE[{n}]: Call from '{PHONE_NUMBER}' to extension '204' "
    "rejected",
    "{iso} ERROR billing[{pid}]: card {CREDIT_CARD} declined code=51 amount_cents={bytes} "
    "req={hex}",
    "<{pri}>{syslog} bras-{n} radiusd[{pid}]: Login OK: [{USER_NAME}] (from client bras-{n} "
    "port {port} cli {PHONE_NUMBER})",
    "{iso} INFO [crm-sync] contact {EMAIL_ADDRESS} phone={PHONE_NUMBER} synced in {n} ms",
    # phrasings the user-name recognizer does not know (Spark's acls, a free-form message)
    "{log4j} INFO spark.SecurityManager: Changing view acls to: yarn,{USER_NAME}",
    "{iso} WARN [quota] {USER_NAME} exceeded the mailbox quota ({n} MB)",
]

_SLOT = re.compile(r"\{(USER_NAME|EMAIL_ADDRESS|IP_ADDRESS|PHONE_NUMBER|CREDIT_CARD)\}")


def planted(rng: random.Random, per_template: int) -> list[tuple[str, list[tuple[str, int, int]]]]:
    """Lines and their labelled spans ``(type, start, end)``."""
    values = Values(rng)
    make: dict[str, Callable[[], str]] = {
        "USER_NAME": values.user,
        "EMAIL_ADDRESS": values.email,
        "IP_ADDRESS": values.ip,
        "PHONE_NUMBER": values.phone,
        "CREDIT_CARD": values.card,
    }
    out = []
    for template in TEMPLATES:
        for _ in range(per_template):
            at = START + timedelta(
                seconds=rng.randrange(86400 * 30), microseconds=rng.randrange(10**6)
            )
            common = {
                "syslog": f"{at:%b} {at.day:2d} {at:%H:%M:%S}",
                "iso": at.strftime("%Y-%m-%d %H:%M:%S,") + f"{at.microsecond // 1000:03d}",
                "iso_t": at.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
                "log4j": at.strftime("%y/%m/%d %H:%M:%S"),
                "clf": at.strftime("%d/%b/%Y:%H:%M:%S +0000"),
                "pid": rng.randrange(300, 65535),
                "port": rng.randrange(1024, 65535),
                "n": rng.randrange(1, 99),
                "bytes": rng.randrange(100, 10**7),
                "qid": f"{rng.getrandbits(40):010X}",
                "hex": f"{rng.getrandbits(64):016x}",
                "pri": rng.randrange(8, 191),
            }
            pieces, labels, pos = [], [], 0
            for k, chunk in enumerate(_SLOT.split(template)):
                if k % 2 == 1:
                    value = make[chunk]()
                    labels.append((chunk, pos, pos + len(value)))
                else:
                    value = chunk.format(**common)
                pieces.append(value)
                pos += len(value)
            out.append(("".join(pieces), labels))
    return out


def bench_recall(routes: list[Route], rng: random.Random, per_template: int) -> None:
    records = planted(rng, per_template)
    found = {p.name: p.run([line for line, _ in records]) for p in routes}
    total: Counter[str] = Counter()
    hits: dict[str, Counter[str]] = {p.name: Counter() for p in routes}
    for i, (_, labels) in enumerate(records):
        for kind, a, b in labels:
            total[kind] += 1
            for p in routes:
                if any(
                    e.entity_type in FOUND_BY[kind] and e.start < b and a < e.end
                    for e in found[p.name][i]
                ):
                    hits[p.name][kind] += 1
    print(f"\n3. recall on planted PII: {len(records)} log lines from {len(TEMPLATES)} templates")
    print(f"{'type':<14} {'n':>5}" + "".join(f"{p.name:>22}" for p in routes))
    for kind in FOUND_BY:
        cells = "".join(f"{hits[p.name][kind] / total[kind]:>22.3f}" for p in routes)
        print(f"{kind:<14} {total[kind]:>5}" + cells)
    print("  (USER_NAME counts a USER_NAME or a PERSON detection over the name)")


# --- 4. one alert at the size limit -----------------------------------------------------


def bench_big_alert(root: Path, devices: list[str]) -> None:
    """One alert with 5,000 inline lines (the schema's maximum), result caches off."""
    systems = ("OpenSSH", "Linux", "HDFS", "Hadoop", "Mac", "OpenStack", "Thunderbird", "Zookeeper")
    lines = [line for s in systems for line in loghub_lines(root, s)[:625]]
    analyzer = build_analyzer()
    scanner = PiiScanner(analyzer, cache_size=0)
    machine = MachineDataScanner(scanner, device_networks=devices, cache_size=0)
    router = PolicyRouter(Policy.load(), scanner, machine_scanner=machine)
    alert = TelemetryAlert(
        device="edge3",
        window_start=START,
        window_end=START + timedelta(minutes=10),
        summary="link flaps on edge3",
        logs=[LogLine(line=line) for line in lines],
    )
    router.decide(alert, "warm-up")
    start = time.perf_counter()
    decision = router.decide(alert, "big")
    machine_s = time.perf_counter() - start
    start = time.perf_counter()
    scanner.scan_many(lines)
    ner_s = time.perf_counter() - start
    print(f"\n4. one alert with {len(lines)} inline log lines, 625 from each of")
    print(f"   {', '.join(systems)}; result caches off")
    print(f"  router decision (machine path, no NER on the lines): {machine_s:6.2f} s")
    print(f"  the stock scan (NER) of the same lines, for reference: {ner_s:6.2f} s")
    print(
        f"  decision: {decision.data_class}, "
        + ", ".join(f"{c.entity_type} {c.count}" for c in decision.entities)
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    default_root = Path(__file__).resolve().parents[2] / "shared" / "data" / "logs-loghub"
    parser.add_argument("--loghub", type=Path, default=default_root, help="loghub samples")
    parser.add_argument("--device-networks", nargs="*", default=RFC1918, help="CIDR networks")
    parser.add_argument("--per-template", type=int, default=120, help="planted lines per template")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()

    routes = build_routes(args.device_networks)
    print(f"device networks: {', '.join(args.device_networks) or '-'}\n")
    kept = bench_loghub(args.loghub, routes)
    bench_real_pii(args.loghub, routes, kept)
    bench_recall(routes, random.Random(args.seed), args.per_template)
    bench_big_alert(args.loghub, args.device_networks)
    print("\nscan time per line (ms; the router's scan, batches of 64 alerts, result caches on)")
    for p in routes:
        print(f"  {p.name:<22} {1000 * p.seconds / max(p.lines, 1):7.3f}")


if __name__ == "__main__":
    main()
