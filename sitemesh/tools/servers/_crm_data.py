"""Deterministic synthetic CRM records that carry real-looking personal data.

:func:`synthetic_customers` makes the records (no database); :func:`seed_crm` writes
them. The same ``seed`` and the same handles give the same records, on every machine:
each customer draws from its own :class:`random.Random` seeded by ``seed`` and its
handle (or its index), so adding customers does not change the earlier ones.

What the records look like, and where the rules come from:

* five countries (DE, FR, GB, NL, US), with names, streets and cities of each and
  addresses written the country's way;
* e-mail addresses at ``example.com`` / ``.net`` / ``.org`` (RFC 2606 reserved
  domains: real-looking, and nobody's);
* phone numbers valid for libphonenumber (so Presidio's phone recognizer, which uses
  leniency ``VALID``, finds them) in E.164 and national format. Where the regulator
  reserves numbers for fiction they come from there: Ofcom's drama numbers (GB, e.g.
  ``020 7946 0xxx``), ARCEP's fiction ranges (FR, ``01 99 00 xx xx``...), NANP's
  ``555-01xx`` (US); DE and NL mobile numbers are random;
* IBANs (ISO 13616) with mod-97 check digits (ISO 7064 MOD 97-10) over the country's
  BBAN layout, whose national check digits are computed too: the French RIB key, the
  Dutch 11-test ("elfproef") of the account number; US accounts have no IBAN but an
  ABA routing number with its 3-7-1 check digit;
* customer ids are channel handles like ``SupportTicket.customer`` of the bundled
  tickets (``^[A-Za-z0-9_]{1,64}$``); pass the tickets' own handles
  (:func:`ticket_customers`) to have a CRM record for each ticket's customer.
"""

from __future__ import annotations

import json
import random
import re
import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Final

import phonenumbers

CUSTOMER_ID_PATTERN: Final = r"^[A-Za-z0-9_]{1,64}$"
"""A customer id: a channel handle (the bundled tickets' ``customer`` field)."""

COUNTRIES: Final = ("DE", "FR", "GB", "NL", "US")
"""The countries the synthetic customers live in (ISO 3166-1 alpha-2)."""

EPOCH: Final = datetime(2015, 1, 1, tzinfo=UTC)
"""Synthetic dates fall in the ten years after this (never ``now()``: deterministic)."""

_CUSTOMER_ID = re.compile(CUSTOMER_ID_PATTERN)


@dataclass(frozen=True, slots=True)
class _Country:
    given: tuple[str, ...]
    family: tuple[str, ...]
    streets: tuple[str, ...]
    cities: tuple[tuple[str, str, str], ...]
    """``(postal code, city, phone prefix)``: the prefix a fictional number starts with."""
    number_first: bool
    """``12 High Street`` (True) or ``Hauptstraße 12`` (False)."""
    currency: str
    banks: tuple[tuple[str, str], ...]
    """``(bank code, BIC)``."""


_DATA: Final[dict[str, _Country]] = {
    "DE": _Country(
        given=("Lena", "Jonas", "Hannah", "Lukas", "Marie", "Felix", "Sophie", "Maximilian",
               "Anna", "Paul", "Laura", "Tobias", "Julia", "Florian", "Katrin", "Stefan"),
        family=("Müller", "Schmidt", "Schneider", "Fischer", "Weber", "Meyer", "Wagner",
                "Becker", "Schulz", "Hoffmann", "Koch", "Richter", "Klein", "Wolf",
                "Schröder", "Neumann"),
        streets=("Hauptstraße", "Bahnhofstraße", "Gartenstraße", "Schillerstraße",
                 "Goethestraße", "Lindenallee", "Bergstraße", "Friedrichstraße"),
        cities=(("10115", "Berlin", "+4915"), ("80331", "München", "+4916"),
                ("20095", "Hamburg", "+4917"), ("50667", "Köln", "+4915"),
                ("60311", "Frankfurt am Main", "+4917"), ("70173", "Stuttgart", "+4916"),
                ("04109", "Leipzig", "+4915")),
        number_first=False,
        currency="EUR",
        banks=(("37040044", "COBADEFFXXX"), ("10070000", "DEUTDEBBXXX"),
               ("50010517", "INGDDEFFXXX"), ("20050550", "HASPDEHHXXX")),
    ),
    "FR": _Country(
        given=("Camille", "Louis", "Chloé", "Hugo", "Léa", "Gabriel", "Manon", "Arthur",
               "Inès", "Jules", "Sarah", "Nathan", "Céline", "Antoine"),
        family=("Martin", "Bernard", "Dubois", "Thomas", "Robert", "Richard", "Petit",
                "Durand", "Leroy", "Moreau", "Simon", "Laurent", "Lefebvre", "Michel"),
        streets=("rue de la République", "avenue Victor Hugo", "rue Pasteur",
                 "boulevard Voltaire", "rue des Lilas", "rue Jean Jaurès", "allée des Tilleuls"),
        cities=(("75011", "Paris", "+3319900"), ("69002", "Lyon", "+3346571"),
                ("13001", "Marseille", "+3346571"), ("31000", "Toulouse", "+3353649"),
                ("33000", "Bordeaux", "+3353649"), ("59000", "Lille", "+3335301"),
                ("44000", "Nantes", "+3326191")),
        number_first=True,
        currency="EUR",
        banks=(("30004", "BNPAFRPPXXX"), ("30003", "SOGEFRPPXXX"), ("20041", "PSSTFRPPXXX"),
               ("10278", "CMCIFR2AXXX")),
    ),
    "GB": _Country(
        given=("Oliver", "Amelia", "George", "Isla", "Harry", "Ava", "Jack", "Emily",
               "Charlie", "Sophia", "Thomas", "Grace", "James", "Olivia"),
        family=("Smith", "Jones", "Taylor", "Brown", "Williams", "Wilson", "Johnson",
                "Davies", "Robinson", "Wright", "Thompson", "Evans", "Walker", "White"),
        streets=("High Street", "Station Road", "Church Lane", "Victoria Road", "Park Avenue",
                 "Mill Lane", "King Street", "Queensway"),
        cities=(("N1 9GU", "London", "+442079460"), ("LS1 4AP", "Leeds", "+441134960"),
                ("M1 1AE", "Manchester", "+441614960"), ("B1 1BB", "Birmingham", "+441214960"),
                ("BS1 4DJ", "Bristol", "+441174960"), ("EH1 1YZ", "Edinburgh", "+441314960"),
                ("CF10 1EP", "Cardiff", "+442920180")),
        number_first=True,
        currency="GBP",
        banks=(("NWBK", "NWBKGB2LXXX"), ("BARC", "BARCGB22XXX"), ("MIDL", "MIDLGB22XXX"),
               ("LOYD", "LOYDGB2LXXX")),
    ),
    "NL": _Country(
        given=("Daan", "Emma", "Sem", "Julia", "Lucas", "Tess", "Levi", "Sophie", "Finn",
               "Mila", "Bram", "Anouk"),
        family=("de Jong", "Jansen", "de Vries", "van den Berg", "van Dijk", "Bakker",
                "Janssen", "Visser", "Smit", "Meijer", "de Boer", "Mulder"),
        streets=("Kerkstraat", "Dorpsstraat", "Molenweg", "Stationsweg", "Schoolstraat",
                 "Prinsengracht", "Julianalaan"),
        cities=(("1012 AB", "Amsterdam", "+316"), ("3011 AD", "Rotterdam", "+316"),
                ("2511 BT", "Den Haag", "+316"), ("3511 LX", "Utrecht", "+316"),
                ("5611 AZ", "Eindhoven", "+316"), ("9711 LM", "Groningen", "+316")),
        number_first=False,
        currency="EUR",
        banks=(("ABNA", "ABNANL2AXXX"), ("INGB", "INGBNL2AXXX"), ("RABO", "RABONL2UXXX")),
    ),
    "US": _Country(
        given=("James", "Mary", "Michael", "Patricia", "Robert", "Jennifer", "David",
               "Linda", "William", "Elizabeth", "Daniel", "Jessica", "Emily", "Ashley"),
        family=("Johnson", "Williams", "Miller", "Davis", "Garcia", "Rodriguez", "Martinez",
                "Anderson", "Taylor", "Moore", "Jackson", "Harris", "Clark", "Lewis"),
        streets=("Main Street", "Oak Avenue", "Maple Drive", "Elm Street",
                 "Washington Avenue", "Cedar Lane", "Lakeview Drive"),
        cities=(("62701", "Springfield, IL", "+121755501"), ("98101", "Seattle, WA", "+120655501"),
                ("78701", "Austin, TX", "+151255501"), ("02108", "Boston, MA", "+161755501"),
                ("80202", "Denver, CO", "+130355501"), ("97201", "Portland, OR", "+150355501"),
                ("60601", "Chicago, IL", "+131255501")),
        number_first=True,
        currency="USD",
        banks=(("", ""),),
    ),
}  # fmt: skip

_NOTES: Final = (
    "Called about a declined card payment; the card was reissued.",
    "Asked to update the postal address; changed after an identity check.",
    "Reported the app crashing at login; advised to reinstall, resolved.",
    "Requested a refund of a duplicate charge; refunded to the account on file.",
    "Could not sign in after a password reset; unlocked the account.",
    "Asked why the monthly fee went up; explained the new plan.",
)
"""Past interactions of seeded notes (no personal data in the text itself)."""


@dataclass(frozen=True, slots=True)
class SyntheticAccount:
    """One synthetic account (the columns of :class:`sitemesh.state.AccountRow`)."""

    account_id: str
    kind: str
    iban: str | None
    bic: str
    account_number: str
    routing_number: str
    currency: str
    balance_minor: int
    status: str
    opened_at: datetime


@dataclass(frozen=True, slots=True)
class SyntheticNote:
    """One past interaction (a ``customer_notes`` row written by the seed)."""

    idempotency_key: str
    note: str
    created_at: datetime


@dataclass(frozen=True, slots=True)
class SyntheticCustomer:
    """One synthetic customer (the columns of :class:`sitemesh.state.CustomerRow`),
    with its accounts and past notes."""

    customer_id: str
    tenant: str
    given_name: str
    family_name: str
    email: str
    phone_e164: str
    phone_national: str
    phone_nsn: str
    street: str
    postal_code: str
    city: str
    country: str
    birth_date: str
    created_at: datetime
    accounts: tuple[SyntheticAccount, ...]
    notes: tuple[SyntheticNote, ...]


# -- check digits ------------------------------------------------------------------------
def _letters_to_digits(text: str) -> str:
    """ISO 13616: A=10 ... Z=35, digits unchanged."""
    return "".join(str(int(c, 36)) for c in text.upper())


def iban_check_digits(country: str, bban: str) -> str:
    """The two IBAN check digits of ``country`` + ``bban`` (ISO 13616 / ISO 7064 MOD 97-10).

    Args:
        country: ISO 3166-1 alpha-2 code (``DE``).
        bban: the basic bank account number, letters and digits.

    Returns:
        ``"02"`` .. ``"98"``.
    """
    remainder = int(_letters_to_digits(bban + country + "00")) % 97
    return f"{98 - remainder:02d}"


def iban_is_valid(iban: str) -> bool:
    """Whether ``iban`` (spaces allowed) passes the mod-97 check (remainder 1)."""
    s = iban.replace(" ", "").upper()
    if not re.fullmatch(r"[A-Z]{2}[0-9]{2}[A-Z0-9]{1,30}", s):
        return False
    return int(_letters_to_digits(s[4:] + s[:4])) % 97 == 1


def make_iban(country: str, bban: str) -> str:
    """``country`` + check digits + ``bban``: an IBAN in electronic format."""
    return f"{country}{iban_check_digits(country, bban)}{bban}"


def rib_key(bank: str, branch: str, account: str) -> str:
    """The French RIB key of a numeric bank code, branch code and account number:
    ``97 - (89 * bank + 15 * branch + 3 * account) mod 97``."""
    return f"{97 - (89 * int(bank) + 15 * int(branch) + 3 * int(account)) % 97:02d}"


def elfproef(account: str) -> bool:
    """The Dutch 11-test of a 10-digit account number: weights 10..1, sum divisible by 11."""
    return len(account) == 10 and sum(int(d) * (10 - i) for i, d in enumerate(account)) % 11 == 0


def aba_check_digit(first8: str) -> str:
    """The ninth digit of an ABA routing number: weights 3, 7, 1 (sum divisible by 10)."""
    weights = (3, 7, 1, 3, 7, 1, 3, 7)
    return str(-sum(int(d) * w for d, w in zip(first8, weights, strict=True)) % 10)


# -- records -----------------------------------------------------------------------------
def _ascii(text: str) -> str:
    """Lower-case ASCII letters of ``text`` (``Schröder`` -> ``schroder``)."""
    folded = unicodedata.normalize("NFKD", text.replace("ß", "ss"))
    return re.sub(r"[^a-z]", "", folded.encode("ascii", "ignore").decode().lower())


def _digits(rng: random.Random, n: int) -> str:
    return "".join(rng.choice("0123456789") for _ in range(n))


def _phone(rng: random.Random, prefix: str, country: str) -> phonenumbers.PhoneNumber:
    """A libphonenumber-valid number of ``country`` starting with ``prefix`` (E.164)."""
    lengths = {"DE": (13, 14), "FR": (12,), "GB": (13,), "NL": (12,), "US": (12,)}[country]
    for _ in range(200):
        total = rng.choice(lengths)
        number = phonenumbers.parse(prefix + _digits(rng, total - len(prefix)), None)
        if phonenumbers.is_valid_number(number):
            return number
    raise AssertionError(f"no valid {country} number under {prefix}")  # pragma: no cover


def _account(rng: random.Random, country: str, data: _Country) -> tuple[str | None, str, str, str]:
    """``(iban, bic, account number, routing number)`` of a new account."""
    bank, bic = rng.choice(data.banks)
    match country:
        case "DE":
            account = _digits(rng, 10)
            return make_iban("DE", bank + account), bic, account, bank
        case "FR":
            branch, account = _digits(rng, 5), _digits(rng, 11)
            bban = bank + branch + account + rib_key(bank, branch, account)
            return make_iban("FR", bban), bic, account, f"{bank} {branch}"
        case "GB":
            sort_code = {"NWBK": "60", "BARC": "20", "MIDL": "40", "LOYD": "30"}[bank]
            sort_code += _digits(rng, 4)
            account = _digits(rng, 8)
            sort = f"{sort_code[:2]}-{sort_code[2:4]}-{sort_code[4:]}"
            return make_iban("GB", bank + sort_code + account), bic, account, sort
        case "NL":
            while not elfproef(account := _digits(rng, 10)):
                pass
            return make_iban("NL", bank + account), bic, account, bank
        case _:
            first8 = f"{rng.choice((1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12)):02d}" + _digits(rng, 6)
            return (
                None,
                "",
                _digits(rng, rng.choice((10, 11, 12))),
                first8 + aba_check_digit(first8),
            )


def _handle(rng: random.Random, given: str, family: str) -> str:
    g, f = _ascii(given), _ascii(family)
    style = rng.randrange(4)
    if style == 0:
        handle = f"{given[:1].upper()}{g[1:]}{f[:1].upper()}{f[1:]}{rng.randrange(10, 99)}"
    elif style == 1:
        handle = f"{g}_{f}"
    elif style == 2:
        handle = f"{g[:1]}{f}{rng.randrange(1960, 2005) % 100:02d}"
    else:
        handle = f"{f}{g[:1]}_{rng.randrange(100, 999)}"
    return _ascii_handle(handle)


def _ascii_handle(handle: str) -> str:
    return re.sub(r"[^A-Za-z0-9_]", "", handle)[:15] or "customer"


def _customer(
    rng: random.Random, customer_id: str | None, tenant: str, seq: int
) -> SyntheticCustomer:
    country = COUNTRIES[rng.randrange(len(COUNTRIES))]
    data = _DATA[country]
    given, family = rng.choice(data.given), rng.choice(data.family)
    handle = customer_id or _handle(rng, given, family)
    postal, city, prefix = rng.choice(data.cities)
    number = rng.randrange(1, 240)
    street = rng.choice(data.streets)
    phone = _phone(rng, prefix, country)
    domain = rng.choice(("example.com", "example.net", "example.org"))
    sep = rng.choice((".", "_", ""))
    email = f"{_ascii(given)}{sep}{_ascii(family)}{rng.choice(('', str(rng.randrange(1, 99))))}"
    created = EPOCH + timedelta(days=rng.randrange(0, 3650), seconds=rng.randrange(86400))
    birth = datetime(1950, 1, 1) + timedelta(days=rng.randrange(0, 365 * 54))
    accounts = []
    kinds = ("checking", *rng.sample(("savings", "billing"), k=rng.randrange(0, 3)))
    opened = created
    for j, kind in enumerate(kinds):
        opened += timedelta(days=rng.randrange(1, 400))  # the checking account first
        iban, bic, account_number, routing = _account(rng, country, data)
        low, high = {"checking": (-50_000, 2_500_000), "savings": (0, 5_000_000)}.get(
            kind, (-20_000, 0)
        )
        status = rng.choices(("active", "frozen", "closed"), weights=(92, 5, 3))[0]
        accounts.append(
            SyntheticAccount(
                account_id=f"ACC-{seq:07d}{j:03d}",
                kind=kind,
                iban=iban,
                bic=bic,
                account_number=account_number,
                routing_number=routing,
                currency=data.currency,
                balance_minor=rng.randrange(low, high + 1),
                status=status,
                opened_at=opened,
            )
        )
    notes = tuple(
        SyntheticNote(
            idempotency_key=f"seed:{handle}:{k}",
            note=rng.choice(_NOTES),
            created_at=created + timedelta(days=30 * (k + 1) + rng.randrange(0, 30)),
        )
        for k in range(rng.randrange(0, 3))
    )
    return SyntheticCustomer(
        customer_id=handle,
        tenant=tenant,
        given_name=given,
        family_name=family,
        email=f"{email}@{domain}",
        phone_e164=phonenumbers.format_number(phone, phonenumbers.PhoneNumberFormat.E164),
        phone_national=phonenumbers.format_number(phone, phonenumbers.PhoneNumberFormat.NATIONAL),
        phone_nsn=phonenumbers.national_significant_number(phone),
        street=f"{number} {street}" if data.number_first else f"{street} {number}",
        postal_code=postal,
        city=city,
        country=country,
        birth_date=birth.date().isoformat(),
        created_at=created,
        accounts=tuple(accounts),
        notes=notes,
    )


def synthetic_customers(
    n: int = 200,
    *,
    handles: Mapping[str, str] | Iterable[str] = (),
    tenant: str = "default",
    seed: int = 0,
) -> list[SyntheticCustomer]:
    """Deterministic synthetic customers with real-looking personal data.

    Args:
        n: how many customers with generated handles, ``>= 0``.
        handles: customer ids to create a customer for first (before the generated
            ones): a mapping handle -> tenant (:func:`ticket_customers`), or handles
            (tenant ``tenant``). Each must match :data:`CUSTOMER_ID_PATTERN`.
        tenant: the tenant of the generated customers.
        seed: the seed; the same seed and handles give the same records.

    Returns:
        ``len(handles) + n`` customers; ids and e-mail addresses are unique.

    Raises:
        ValueError: ``n < 0`` or a handle that is not a customer id.
    """
    if n < 0:
        raise ValueError(f"n: {n} customers; expected 0 or more")
    given = dict(handles) if isinstance(handles, Mapping) else dict.fromkeys(handles, tenant)
    for handle in given:
        if not _CUSTOMER_ID.match(handle):
            raise ValueError(f"handles: {handle!r} does not match {CUSTOMER_ID_PATTERN}")
    out: list[SyntheticCustomer] = []
    ids: set[str] = set()
    emails: set[str] = set()
    phones: set[str] = set()
    ibans: set[str] = set()
    plan = [(h, t, f"h:{h}") for h, t in sorted(given.items())]
    plan += [(None, tenant, f"g:{i}") for i in range(n)]
    for seq, (handle, owner, key) in enumerate(plan):
        rng = random.Random(f"sitemesh-crm:{seed}:{key}")  # noqa: S311 - synthetic data
        while True:
            c = _customer(rng, handle, owner, seq)
            account_ibans = {a.iban for a in c.accounts if a.iban}
            fresh = c.customer_id not in ids and c.email not in emails
            if fresh and c.phone_e164 not in phones and not account_ibans & ibans:
                break
        ids.add(c.customer_id)
        emails.add(c.email)
        phones.add(c.phone_e164)
        ibans |= account_ibans
        out.append(c)
    return out


def ticket_customers(path: Path | str) -> dict[str, str]:
    """The customers of a tickets file: handle -> tenant, for :func:`synthetic_customers`.

    Args:
        path: JSON lines of ``SupportTicket`` (``examples/data/tickets.jsonl``).

    Returns:
        Every ticket's ``customer`` that is a customer id, with the ticket's tenant
        (the first ticket of a customer wins), sorted by handle.
    """
    found: dict[str, str] = {}
    with Path(path).open(encoding="utf-8") as fh:
        for line in fh:
            if not line.strip():
                continue
            record = json.loads(line)
            customer = record.get("customer")
            if isinstance(customer, str) and _CUSTOMER_ID.match(customer):
                found.setdefault(customer, str(record.get("tenant") or "default"))
    return dict(sorted(found.items()))
