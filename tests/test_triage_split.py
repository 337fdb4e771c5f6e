"""sitemesh.triage without a model: the held-out split, examples files, language, urgency."""

from __future__ import annotations

import hashlib
import itertools
from pathlib import Path

import pytest

from sitemesh.triage import (
    URGENCY_RULES,
    Example,
    ExamplesError,
    bundled_label_sets,
    check_name,
    detect_language,
    examples_digest,
    examples_to_jsonl,
    held_out,
    normalise,
    parse_examples_jsonl,
    parse_tenants,
    published_label_set,
    read_examples_csv,
    resolve_urgency,
    ticket_text,
)

# -- the split ----------------------------------------------------------------------------


def test_held_out_is_sha256_of_the_normalised_text_mod_5() -> None:
    banking77 = bundled_label_sets()[0]
    for e in banking77.examples[:2000]:
        digest = int(hashlib.sha256(normalise(e.text).encode()).hexdigest(), 16)
        assert held_out(e.text) is (digest % 5 == 0)


def test_the_bundled_held_out_parts_are_pinned() -> None:
    """A change of the split would silently mix training and test rows everywhere."""
    sizes = {ls.name: (len(ls.examples), len(ls.held_out_examples)) for ls in bundled_label_sets()}
    assert sizes == {"banking77": (10003, 2044), "endava": (4345, 808)}
    for ls in bundled_label_sets():
        assert not set(ls.training_examples) & set(ls.held_out_examples)
        assert len(ls.training_examples) + len(ls.held_out_examples) == len(ls.examples)


def test_the_split_ignores_case_spacing_and_unicode_form() -> None:
    texts = [f"Where is my card number {i}?" for i in range(200)]
    for t in texts:
        variant = "  " + t.upper().replace(" ", " \t ") + "\n"
        assert held_out(variant) == held_out(t)
    assert normalise("ＣＡＲＤ\u00a0  Arrived ") == "card arrived"
    assert any(held_out(t) for t in texts)
    assert not all(held_out(t) for t in texts)


def test_a_larger_share_only_adds_rows() -> None:
    texts = [f"ticket {i}" for i in range(3000)]
    shares = (0.0, 0.05, 0.2, 0.3, 0.5, 1.0)
    parts = [{t for t in texts if held_out(t, share=s)} for s in shares]
    for smaller, larger in itertools.pairwise(parts):
        assert smaller <= larger
    assert not parts[0]
    assert parts[-1] == set(texts)
    assert 0.27 < len(parts[3]) / len(texts) < 0.33
    with pytest.raises(ValueError, match="share"):
        held_out("x", share=1.5)


def test_ticket_text_joins_title_and_body() -> None:
    assert ticket_text("VPN down", "cannot connect") == "VPN down\ncannot connect"
    assert ticket_text("", "cannot connect") == "cannot connect"


# -- examples files ------------------------------------------------------------------------


def _csv(tmp_path: Path, text: str, name: str = "t.csv") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_read_csv_joins_text_columns_and_skips_empty_rows(tmp_path: Path) -> None:
    path = _csv(
        tmp_path,
        "\ufefftitle,body,category,urgency\nVPN,is down,net,1\n,no label,,2\n,printer jam,hw,\n",
    )
    read = read_examples_csv(
        path, text_column="title,body", label_column="category", urgency_column="urgency"
    )
    assert read.examples == (
        Example("VPN\nis down", "net", 1),
        Example("printer jam", "hw", None),
    )
    assert (read.rows, read.skipped) == (3, 1)


@pytest.mark.parametrize(
    ("content", "kwargs", "message"),
    [
        ("", {}, "t.csv: empty file"),
        ("text,label\nhello,a\n", {}, "t.csv: no column 'category' (columns found: text, label)"),
        ("text,category,u\nhello,a,7\n", {"urgency_column": "u"}, "row 1: u must be 0..3"),
        ("text,category\n,\n", {}, "no examples"),
    ],
)
def test_read_csv_errors_name_file_and_column(
    tmp_path: Path, content: str, kwargs: dict[str, str], message: str
) -> None:
    with pytest.raises(ExamplesError) as info:
        read_examples_csv(_csv(tmp_path, content), **kwargs)  # type: ignore[arg-type]
    assert str(info.value).startswith("t.csv: ")
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_jsonl_round_trip_and_errors() -> None:
    examples = (Example("lost card", "lost_or_stolen_card"), Example("vpn", "net", 0))
    data = examples_to_jsonl(examples)
    assert data.splitlines()[0] == b'{"text":"lost card","label":"lost_or_stolen_card"}'
    assert parse_examples_jsonl(data + b"\n\n") == examples
    assert examples_digest(examples) == hashlib.sha256(data).hexdigest()
    with pytest.raises(ExamplesError, match=r"triage/x: line 2: .*urgency"):
        parse_examples_jsonl(b'{"text":"a","label":"b"}\n{"text":"a","label":"b","urgency":9}',
                             source="triage/x")  # fmt: skip
    with pytest.raises(ExamplesError, match="no examples"):
        parse_examples_jsonl(b"\n")


def test_published_label_set_reads_tenants_from_the_metadata() -> None:
    ls = published_label_set(
        "acme", b'{"text":"a b","label":"x"}\n', {"tenants": " acme*, Beta "}, digest="d1"
    )
    assert ls.tenants == ("acme*", "Beta")
    assert ls.source == "published"
    assert ls.digest == "d1"
    assert ls.training_examples == ls.examples
    assert ls.held_out_examples == ()
    assert ls.matches("ACME-eu")
    assert ls.matches("beta")
    assert not ls.matches("gamma")
    assert parse_tenants("") == ()
    with pytest.raises(ExamplesError, match="name"):
        check_name("Bad Name")


# -- language --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "code"),
    [
        ("I am still waiting on my card, it has been two weeks", "en"),
        ("Wo ist meine Karte? Ich warte seit zwei Wochen.", "de"),
        ("Mi tarjeta no funciona, ayuda por favor", "es"),
        ("Ma carte ne marche pas depuis hier", "fr"),
        ("ok", "und"),
        ("12345 67890", "und"),
    ],
)
def test_detect_language(text: str, code: str) -> None:
    got, p = detect_language(text)
    assert got == code
    assert 0.0 <= p <= 1.0
    if code != "und":
        assert p >= 0.5


def test_detect_language_gives_only_two_letter_codes() -> None:
    for e in bundled_label_sets()[0].examples[:500]:
        code, _ = detect_language(e.text)
        assert code == "und" or len(code) == 2


# -- urgency ----------------------------------------------------------------------------------


def test_urgency_comes_from_ticket_then_model_then_rule_then_default() -> None:
    args = {"label_set": "banking77", "label": "lost_or_stolen_card"}
    assert resolve_urgency(ticket=0, model=2, **args) == (0, "ticket")
    assert resolve_urgency(ticket=None, model=2, **args) == (2, "model")
    assert resolve_urgency(ticket=None, model=None, **args) == (1, "rule")
    plain = {"label_set": "banking77", "label": "card_arrival"}
    assert resolve_urgency(ticket=None, model=None, **plain) == (3, "default")
    assert resolve_urgency(ticket=None, model=None, label_set="", label="") == (3, "default")


def test_urgency_rules_name_real_banking77_intents() -> None:
    labels = set(bundled_label_sets()[0].labels)
    assert set(URGENCY_RULES["banking77"]) <= labels
    assert {"lost_or_stolen_card", "compromised_card", "card_swallowed"} <= {
        label for label, u in URGENCY_RULES["banking77"].items() if u == 1
    }
