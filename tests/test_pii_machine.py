"""Machine-aware PII scan: machine tokens of telemetry alerts are not personal data,
the personal data in their logs is, and the ticket path is what it was.

Every log line here is written for the test (no loghub line is copied); each "not
PII" case has a positive control: the stock scanner does read the same text as PII.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pydantic
import pytest
from presidio_analyzer import AnalyzerEngine

from sitemesh.config import PolicySettings, load_settings
from sitemesh.errors import PiiAnalyzerError, PolicyError
from sitemesh.policy import (
    DEFAULT_MACHINE_KINDS,
    USER_NAME,
    DetectedEntity,
    MachineDataMasker,
    MachineDataScanner,
    PiiScanner,
    Policy,
    PolicyRouter,
    UserNameRecognizer,
    build_analyzer,
    classify,
    count_entities,
    parse_device_networks,
    task_lines,
    task_text,
)
from sitemesh.schemas import LogLine, MetricSeries, SupportTicket, TelemetryAlert, encode

START = datetime(2031, 4, 2, 7, 0, tzinfo=UTC)
DEVICES = ["10.0.0.0/8", "2001:db8:42::/48"]


def _luhn_ok(number: str) -> bool:
    """The Luhn check of ISO/IEC 7812-1 (what Presidio's card recognizer validates)."""
    total = 0
    for i, c in enumerate(reversed(number)):
        d = int(c) * (2 if i % 2 else 1)
        total += d - 9 if d > 9 else d
    return total % 10 == 0


def _epoch_then_year(start: int) -> str:
    """``"<epoch seconds> 2031"`` whose 14 digits pass the Luhn check (a "card")."""
    n = start
    while not _luhn_ok(f"{n}2031"):
        n += 1
    return f"{n} 2031"


def _nhs_valid(start: int) -> str:
    """The first 10-digit number from ``start`` whose modulus-11 check digit is right."""
    n = start
    while True:
        s = str(n)
        check = 11 - sum(int(c) * (10 - i) for i, c in enumerate(s[:9])) % 11
        if (check % 11) == int(s[9]) and check != 10:
            return s
        n += 1


EPOCH_MS = "1712345678907"  # 13 digits: an epoch in milliseconds
EPOCH_S = _nhs_valid(1712345600)  # 10 digits: an NHS-valid epoch in seconds
EPOCH_YEAR = _epoch_then_year(1712345600)  # epoch seconds and a year: a Luhn-valid "card"


@pytest.fixture(scope="module")
def analyzer() -> AnalyzerEngine:
    return build_analyzer()


@pytest.fixture(scope="module")
def scanner(analyzer: AnalyzerEngine) -> PiiScanner:
    return PiiScanner(analyzer)


@pytest.fixture(scope="module")
def machine(scanner: PiiScanner) -> MachineDataScanner:
    return MachineDataScanner(scanner, device_networks=DEVICES)


@pytest.fixture(scope="module")
def router(scanner: PiiScanner, machine: MachineDataScanner) -> PolicyRouter:
    return PolicyRouter(Policy.load(), scanner, machine_scanner=machine)


def _alert(
    summary: str = "", logs: list[str] | None = None, labels: dict[str, str] | None = None
) -> TelemetryAlert:
    samples = (
        [MetricSeries(name="if.in_octets", labels=labels, timestamps=[START], values=[1.0])]
        if labels
        else []
    )
    return TelemetryAlert(
        device="edge3",
        window_start=START,
        window_end=START + timedelta(minutes=10),
        summary=summary,
        logs=[LogLine(line=line) for line in logs or []],
        samples=samples,
    )


def _types(entities: list[DetectedEntity]) -> set[str]:
    return {e.entity_type for e in entities}


# --- machine tokens are not personal data ----------------------------------------------

MACHINE_LINES = [
    pytest.param(f"2031-04-02 07:12:09,514 INFO [main] ts={EPOCH_S} worker ready", id="epoch-s"),
    pytest.param(f"- {EPOCH_YEAR} rack12 crond[4711]: job started", id="epoch-year"),
    pytest.param(f"- {EPOCH_S} 2031.04.02 rack12 Apr 2 07:12:09 crond[4711]: job", id="header"),
    pytest.param("Apr  2 07:12:09 edge3 kernel[0]: IRQ mapped, seq=4409871235", id="syslog-kv"),
    pytest.param("20310402-7:12:9:514|Step_Counter|REPORT : 5021 161242 350", id="compact"),
    pytest.param("04-02 07:12:09.514  2811  3902 I Activity: pid=3902 flags=0x10", id="android"),
    pytest.param("<14>Apr  2 07:12:09 edge3 dhcpd[812]: DHCPACK on 10.20.30.40", id="device-ip"),
    pytest.param("07:12:09 WARN pool 2001:db8:42::17 bytes=1048576 rx=4409871235", id="ipv6"),
    pytest.param("081109 203615 148 INFO dfs.DataNode$PacketResponder: done", id="hdfs-header"),
]


@pytest.mark.parametrize("line", MACHINE_LINES)
def test_machine_tokens_are_not_pii_in_an_alert(
    line: str, scanner: PiiScanner, router: PolicyRouter
) -> None:
    stock = scanner.scan(line)
    assert classify(stock) in {"confidential", "restricted"}, "positive control"
    for alert in (_alert(summary=line), _alert(summary="link down", logs=[line])):
        decision = router.decide(alert, "a-1")
        assert (decision.data_class, decision.entities) == ("internal", [])


def test_the_masker_keeps_offsets_and_names_its_tokens() -> None:
    masker = MachineDataMasker(DEVICES)
    line = f"2031-04-02T07:12:09Z INFO sshd[4711]: ts={EPOCH_MS} blk_-4727319835619054133 0x7f3a"
    masked = masker.mask(line)
    assert len(masked) == len(line)
    assert masked.split() == ["sshd", ":", "ts="]
    kinds = {(line[t.start : t.end], t.kind) for t in masker.tokens(line)}
    assert ("2031-04-02T07:12:09Z", "timestamp") in kinds
    assert ("INFO", "level") in kinds
    assert ("[4711]", "counter") in kinds
    assert ("blk_-4727319835619054133", "id") in kinds


@pytest.mark.parametrize(
    "text",
    [
        "mail from jane.doe_2031@example.com queued",  # e-mail: not an id, not a code name
        "user=alice_01 logged in",  # a user name with digits and an underscore
        "call +44 20 7946 0958 now",  # an international number
        "client 203.0.113.9 port 22",  # an address outside the device networks
    ],
)
def test_the_masker_leaves_personal_values_intact(text: str) -> None:
    masked = MachineDataMasker(DEVICES).mask(text)
    word = text.split()[1]
    assert word.split("=")[-1] in masked


# --- personal data in logs is found ------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        pytest.param(
            "Apr  2 07:12:09 edge3 app[12]: sent to jane.doe@example.com", "EMAIL_ADDRESS"
        ),
        pytest.param("Apr  2 07:12:09 edge3 sshd[88]: Connection from 203.0.113.9", "IP_ADDRESS"),
        pytest.param(
            "Apr  2 07:12:09 edge3 sshd[88]: Invalid user mallory from 10.1.1.1", USER_NAME
        ),
        pytest.param("pam_unix(sshd:auth): authentication failure; user=alice", USER_NAME),
        pytest.param("Accepted password for carol from 10.9.9.9 port 5022 ssh2", USER_NAME),
        pytest.param("session opened for user bob by (uid=0)", USER_NAME),
        pytest.param("sms gateway: delivered to phone=+44 20 7946 0958", "PHONE_NUMBER"),
        pytest.param("billing: card 4111 1111 1111 1111 declined", "CREDIT_CARD"),
    ],
)
def test_personal_data_in_inline_logs_raises_the_class(
    line: str, expected: str, router: PolicyRouter
) -> None:
    clean = router.decide(_alert(summary="link flaps", logs=["07:12:09 INFO link up"]), "a-0")
    assert clean.data_class == "internal"
    decision = router.decide(
        _alert(summary="link flaps", logs=["07:12:09 INFO link up", line]), "a-1"
    )
    counts = {c.entity_type: c.count for c in decision.entities}
    assert expected in counts
    assert decision.data_class in {"confidential", "restricted"}


def test_label_values_are_scanned(router: PolicyRouter) -> None:
    assert router.decide(_alert(labels={"interface": "et-0/0/1"}), "a").data_class == "internal"
    decision = router.decide(_alert(labels={"subscriber": "jane.doe@example.com"}), "a")
    assert {c.entity_type for c in decision.entities} == {"EMAIL_ADDRESS"}
    by_key = router.decide(_alert(labels={"user": "alice"}), "a")
    assert {c.entity_type for c in by_key.entities} == {USER_NAME}


def test_task_lines_are_log_lines_then_labels() -> None:
    alert = _alert(logs=["one", "two"], labels={"user": "alice", "site": "par1"})
    assert task_lines(alert) == ["one", "two", "user=alice", "site=par1"]
    assert task_lines(SupportTicket(body="hello")) == []


def test_without_machine_kinds_an_alert_is_scanned_as_prose(scanner: PiiScanner) -> None:
    """``machine_kinds = []``: the stock scan, log lines included (still not a hole)."""
    policy = Policy.from_toml('version = "t"\nmachine_kinds = []\n')
    router = PolicyRouter(policy, scanner)
    line = f"- {EPOCH_S} 2031.04.02 rack12 crond[4711]: mail to jane.doe@example.com"
    decision = router.decide(_alert(summary="cron", logs=[line]), "a")
    counts = {c.entity_type for c in decision.entities}
    assert "EMAIL_ADDRESS" in counts
    assert counts & {"UK_NHS", "PHONE_NUMBER"}, "the stock scan reads the epoch as PII"


@pytest.mark.parametrize(
    ("line", "names"),
    [
        ("Invalid user admin from 198.51.100.4", ["admin"]),
        ("Failed password for invalid user oracle from 198.51.100.4 port 4022 ssh2", ["oracle"]),
        ("Accepted publickey for dave.smith from 198.51.100.4 port 4022 ssh2", ["dave.smith"]),
        ("input_userauth_request: invalid user webadmin [preauth]", ["webadmin"]),
        (
            "sudo:    erin : TTY=pts/0 ; PWD=/home/erin ; USER=root ; COMMAND=/bin/ls",
            ["erin", "erin"],
        ),
        ('{"event": "login", "user": "frank"}', ["frank"]),
        ("C:\\Users\\grace\\AppData\\Local\\Temp", ["grace"]),
        ("radiusd[9]: Login OK: [heidi] (from client bras-4 port 7)", ["heidi"]),
        ('203.0.113.9 - ivan [02/Apr/2031:07:12:09 +0000] "GET / HTTP/1.1" 200 512', ["ivan"]),
        ('203.0.113.9 - - [02/Apr/2031:07:12:09 +0000] "GET / HTTP/1.1" 200 512', []),
        ("session opened for user root by (uid=0)", []),  # an operating-system account
        ("check pass; user unknown", []),  # pam_unix's placeholder
        ("Invalid user  from 198.51.100.4", []),  # no name: not "from"
        ("authentication failure; logname= uid=0 euid=0 ruser= rhost=host7", []),
        ("user=1000 logged in", []),  # a numeric uid
        ("Invalid user default from 198.51.100.4", ["default"]),
        ("C:\\Users\\Public\\Documents", []),
    ],
)
def test_user_names(line: str, names: list[str]) -> None:
    found = [line[a:b] for a, b in UserNameRecognizer().spans(line)]
    assert found == names


def test_system_accounts_are_configurable() -> None:
    line = "session opened for user cyrus by (uid=0)"
    assert UserNameRecognizer().spans(line)
    assert UserNameRecognizer({"root", "cyrus"}).spans(line) == []


# --- device networks -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("address", "device"),
    [
        ("10.20.30.40", True),
        ("2001:db8:42::17", True),
        ("127.0.0.1", True),  # loopback: never a client's
        ("0.0.0.0", True),
        ("203.0.113.9", False),
        ("192.168.1.20", False),  # private, but not in the device networks
        ("2001:db8:43::1", False),
        ("fe80::d8a5:90ff:fef5:7fff", False),  # link-local EUI-64: carries a MAC address
    ],
)
def test_device_addresses_are_machine_data_others_are_pii(
    address: str, device: bool, machine: MachineDataScanner
) -> None:
    line = f"Apr  2 07:12:09 edge3 dhcpd: lease {address} renewed"
    found = _types(machine.scan_lines([line])[0])
    assert machine.masker.is_device(address) is device
    assert ("IP_ADDRESS" in found) is not device


def test_without_device_networks_private_addresses_stay_pii(scanner: PiiScanner) -> None:
    line = "Apr  2 07:12:09 edge3 dhcpd: lease 10.20.30.40 renewed"
    assert "IP_ADDRESS" in _types(MachineDataScanner(scanner).scan_lines([line])[0])


# --- numbers that really are personal data ---------------------------------------------


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("contact: +1 650 555 0100", {"PHONE_NUMBER"}),
        ("callback requested, call (650) 555-0100", {"PHONE_NUMBER"}),
        ("sms to 020 7946 0958 sent", {"PHONE_NUMBER"}),
        ("card 4111111111111111 rejected", {"CREDIT_CARD"}),
        ("card 4111111111111112 rejected", set()),  # fails Luhn
        ("queue depth 6505550100 items", set()),  # a bare number, no phone or NHS keyword
        ("radius: accounting start cli 6505550123 port 7", {"PHONE_NUMBER"}),  # RFC 2865 CLI
        ("radius: accounting start client 6505550123 port 7", set()),
        ("patient nhs=9434765919 admitted", {"UK_NHS"}),
        ("record for 943 476 5919 updated", {"UK_NHS", "PHONE_NUMBER"}),
        (f"ts {EPOCH_MS} flushed", set()),
    ],
)
def test_numbers_need_the_shape_a_person_writes(
    line: str, expected: set[str], machine: MachineDataScanner
) -> None:
    assert _types(machine.scan_lines([line])[0]) == expected


def test_a_name_in_the_summary_is_still_found(router: PolicyRouter) -> None:
    summary = "2031-04-02 07:12:09 INFO BFD down on edge3; John Smith is on call"
    decision = router.decide(_alert(summary=summary), "a")
    assert "PERSON" in {c.entity_type for c in decision.entities}


def test_decisions_carry_no_values(router: PolicyRouter) -> None:
    logs = [
        "Accepted password for carol from 203.0.113.9 port 5022 ssh2",
        "mail to jane.doe@example.com",
    ]
    decision = router.decide(_alert(summary="ssh", logs=logs), "a")
    wire = encode(decision).decode()
    for value in ("carol", "203.0.113.9", "jane.doe", "example.com"):
        assert value not in wire
    assert {c.entity_type for c in decision.entities} >= {USER_NAME, "IP_ADDRESS", "EMAIL_ADDRESS"}


# --- the ticket path is unchanged ------------------------------------------------------

TICKETS = [
    SupportTicket(customer="maria", body=f"order {EPOCH_YEAR} failed at 2031-04-02 07:12:09"),
    SupportTicket(body="Accepted password for carol from 203.0.113.9; user=alice"),
    SupportTicket(body="I am John Smith, reach me at john@example.com or +1 650 555 0100"),
    SupportTicket(body=f"log: - {EPOCH_S} 2031.04.02 rack12 crond[4711]: pid=8123"),
    SupportTicket(body="router at 10.20.30.40 drops, card 4111 1111 1111 1111 charged"),
]


@pytest.mark.parametrize("ticket", TICKETS)
def test_the_ticket_path_is_the_stock_scan(
    ticket: SupportTicket, scanner: PiiScanner, router: PolicyRouter
) -> None:
    assert "support_ticket" not in DEFAULT_MACHINE_KINDS
    customer = (
        [DetectedEntity("CUSTOMER_ID", 0, len(ticket.customer), 1.0)] if ticket.customer else []
    )
    stock = scanner.scan(task_text(ticket)) + customer
    decision = router.decide(ticket, "t")
    assert decision.entities == count_entities(stock)
    assert decision.data_class == classify(stock)
    assert USER_NAME not in {c.entity_type for c in decision.entities}
    many = router.decide_many([(ticket, "t"), (_alert(summary=ticket.body), "a")])
    assert many[0].entities == decision.entities


def test_tickets_keep_their_machine_looking_pii(router: PolicyRouter) -> None:
    decision = router.decide(TICKETS[0], "t")
    assert "CREDIT_CARD" in {c.entity_type for c in decision.entities}  # the epoch, as before


# --- fail closed -----------------------------------------------------------------------


def _boom(*args: object, **kwargs: object) -> object:
    raise RuntimeError("spaCy died")


@pytest.mark.parametrize("path", ["prose", "lines"])
def test_analyzer_failure_fails_closed(path: str, scanner: PiiScanner) -> None:
    machine = MachineDataScanner(scanner, cache_size=0)
    machine.scan("warm up")
    machine.scan_lines(["warm up"])
    fast = machine._paths[path == "prose"]
    fast.analyze_many = _boom  # type: ignore[method-assign]
    router = PolicyRouter(Policy.load(), scanner, machine_scanner=machine)
    with pytest.raises(PiiAnalyzerError, match="stays on site"):
        router.decide(_alert(summary="BFD down", logs=["07:12:09 INFO link up"]), "a")
    with pytest.raises(PiiAnalyzerError):
        router.decide_many([(_alert(summary="x", logs=["y"]), "a")])


# --- settings and rules ----------------------------------------------------------------


def test_device_networks_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SITEMESH_POLICY_DEVICE_NETWORKS", '["10.0.0.0/8", " 2001:db8::/32"]')
    assert load_settings().policy.device_networks == ["10.0.0.0/8", "2001:db8::/32"]
    router = PolicyRouter.from_settings(load_settings().policy)
    assert [str(n) for n in router.machine_scanner.masker.device_networks] == [
        "10.0.0.0/8",
        "2001:db8::/32",
    ]
    assert PolicySettings().device_networks == []
    env = load_settings().to_env()  # what child processes get
    assert env["SITEMESH_POLICY_DEVICE_NETWORKS"] == '["10.0.0.0/8", "2001:db8::/32"]'


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("10.0.0.0/33", "'10.0.0.0/33' is not an IP network: use CIDR notation"),
        ("10.1.2.3/8", "host bits set, did you mean 10.0.0.0/8?"),
        ("edge-routers", "'edge-routers' is not an IP network"),
    ],
)
def test_device_network_errors_are_clear(value: str, message: str) -> None:
    with pytest.raises(pydantic.ValidationError) as info:
        PolicySettings(device_networks=["192.0.2.0/24", value])
    text = str(info.value)
    assert "device_networks" in text
    assert message in text
    with pytest.raises(ValueError, match="device network #1") as direct:
        parse_device_networks(["192.0.2.0/24", value])
    assert value in str(direct.value)
    with pytest.raises(ValueError, match="is not an IP network"):
        MachineDataMasker([value])


def test_machine_kinds_in_the_rules_file() -> None:
    assert Policy.load().machine_kinds == frozenset({"telemetry_alert"})
    bare = Policy.from_toml('version = "t"\n')
    assert bare.machine_kinds == DEFAULT_MACHINE_KINDS
    none = Policy.from_toml('version = "t"\nmachine_kinds = []\n')
    assert none.machine_kinds == frozenset()
    assert none.version != bare.version  # the scan changes, so does the version
    with pytest.raises(PolicyError, match=r"\$\.machine_kinds"):
        Policy.from_toml('version = "t"\nmachine_kinds = "telemetry_alert"\n')
