"""The price table: Decimal math per 1M tokens, the TOML file, unknown models."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from sitemesh.errors import ConfigError, PermanentError, UnknownModelPrice
from sitemesh.models._prices import (
    DEFAULT_PRICES_FILE,
    ModelPrice,
    PriceTable,
    from_nanos,
    to_nanos,
)

TOML = """
[models."openai/gpt-4o-mini"]
input_per_mtok = 0.15
output_per_mtok = 0.6
currency = "USD"

[models."anthropic/claude-sonnet-4-0"]
input_per_mtok = 3
output_per_mtok = 15

[models."vllm/*"]
input_per_mtok = 0.01
output_per_mtok = 0.02

[models."vllm/big-*"]
input_per_mtok = 0.1
output_per_mtok = 0.2
"""


@pytest.fixture
def table(tmp_path: Path) -> PriceTable:
    path = tmp_path / "prices.toml"
    path.write_text(TOML)
    return PriceTable.from_toml(path)


def test_cost_is_exact_decimal_per_million_tokens(table: PriceTable) -> None:
    price = table.price("openai/gpt-4o-mini")
    assert price == ModelPrice("openai/gpt-4o-mini", Decimal("0.15"), Decimal("0.6"), "USD")
    assert table.cost("openai/gpt-4o-mini", 1_000_000, 0) == Decimal("0.15")
    assert table.cost("openai/gpt-4o-mini", 0, 1_000_000) == Decimal("0.6")
    # 1,234 * 0.15 / 1e6 + 567 * 0.6 / 1e6 = 0.0001851 + 0.0003402
    assert table.cost("openai/gpt-4o-mini", 1234, 567) == Decimal("0.0005253")
    assert table.cost("anthropic/claude-sonnet-4-0", 1000, 1000) == Decimal("0.018")
    assert table.cost("openai/gpt-4o-mini", 0, 0) == 0
    # exactly additive (no binary float drift): 10 one-token calls cost one 10-token call
    one_token = table.cost("openai/gpt-4o-mini", 1, 0)
    assert one_token == Decimal("0.00000015")
    assert sum([one_token] * 10, Decimal(0)) == table.cost("openai/gpt-4o-mini", 10, 0)
    with pytest.raises(ValueError, match="token counts must be >= 0"):
        table.cost("openai/gpt-4o-mini", -1, 0)


def test_patterns_exact_key_first_then_longest_pattern(table: PriceTable) -> None:
    assert table.price("vllm/qwen2.5-7b").input_per_mtok == Decimal("0.01")
    assert table.price("vllm/big-llama").input_per_mtok == Decimal("0.1")
    assert "vllm/qwen2.5-7b" not in table  # the mapping holds the keys as written
    assert set(table) >= {"vllm/*", "openai/gpt-4o-mini"}


def test_unknown_model_names_the_model(table: PriceTable) -> None:
    with pytest.raises(UnknownModelPrice) as info:
        table.cost("openai/gpt-5-turbo", 10, 10)
    err = info.value
    assert isinstance(err, PermanentError)
    assert isinstance(err, LookupError)
    assert err.model == "openai/gpt-5-turbo"
    assert "no price for model 'openai/gpt-5-turbo'" in str(err)
    assert 'add [models."openai/gpt-5-turbo"]' in str(err)
    assert "openai/gpt-4o-mini" in str(err)  # lists what is priced


def test_nanos_round_up_and_back() -> None:
    assert to_nanos(Decimal("0.00033")) == 330_000
    assert to_nanos(Decimal("0.0000000001")) == 1  # never below the exact cost
    assert to_nanos(Decimal(0)) == 0
    assert from_nanos(330_000) == Decimal("0.00033")
    assert from_nanos(0) == 0


def test_bundled_table_has_examples_and_a_note() -> None:
    text = DEFAULT_PRICES_FILE.read_text()
    assert "EXAMPLES" in text
    assert "Source of the example figures" in text
    table = PriceTable.from_toml()
    assert table.currency == "USD"
    assert table.cost("openai/gpt-4o-mini", 1_000_000, 1_000_000) == Decimal("0.75")
    assert table.cost("vllm/anything", 10**6, 10**6) == 0


@pytest.mark.parametrize(
    ("body", "key"),
    [
        ('[models."m"]\noutput_per_mtok = 1\n', 'models."m".input_per_mtok'),
        ('[models."m"]\ninput_per_mtok = -1\noutput_per_mtok = 1\n', 'models."m".input_per_mtok'),
        ('[models."m"]\ninput_per_mtok = "x"\noutput_per_mtok = 1\n', 'models."m".input_per_mtok'),
        ('[models."m"]\ninput_per_mtok = true\noutput_per_mtok = 1\n', 'models."m".input_per_mtok'),
        ('[models."m"]\ninput_per_mtok = 1\noutput_per_mtok = 1\nprice = 2\n', 'models."m".price'),
        (
            '[models."m"]\ninput_per_mtok = 1\noutput_per_mtok = 1\ncurrency = "dollars"\n',
            'models."m".currency',
        ),
        (
            '[models."a"]\ninput_per_mtok = 1\noutput_per_mtok = 1\ncurrency = "EUR"\n'
            '[models."b"]\ninput_per_mtok = 1\noutput_per_mtok = 1\n',
            "models.*.currency",
        ),
        ("models = 3\n", "models"),
        ("[models\n", "prices"),
    ],
)
def test_bad_price_file_names_the_key(tmp_path: Path, body: str, key: str) -> None:
    path = tmp_path / "p.toml"
    path.write_text(body)
    with pytest.raises(ConfigError) as info:
        PriceTable.from_toml(path)
    assert info.value.key == key


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        PriceTable.from_toml(tmp_path / "nope.toml")
