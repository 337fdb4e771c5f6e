"""The triage classifier and its cache, on small subsets of the bundled examples."""

from __future__ import annotations

import logging
import math
import shutil
from collections import defaultdict
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from sitemesh import triage
from sitemesh.triage import (
    ClassifierConfig,
    Example,
    ExamplesError,
    LabelSet,
    ModelCache,
    TriageModel,
    bundled_label_sets,
    default_cache_dir,
    evaluate,
    expected_calibration_error,
    fit_temperature,
    held_out,
    macro_f1,
    model_key,
    top_confusions,
    train_model,
    warm_cache,
)

INTENTS = ("card_arrival", "lost_or_stolen_card", "exchange_rate", "top_up_failed", "pin_blocked")


def subset(name: str, labels: tuple[str, ...], per_label: int) -> LabelSet:
    """The first ``per_label`` training examples of each of ``labels`` from the bundled
    label set ``name`` (its held-out examples stay held out)."""
    full = next(ls for ls in bundled_label_sets() if ls.name == name)
    taken: dict[str, int] = defaultdict(int)
    chosen = []
    for e in full.examples:
        if e.label in labels and taken[e.label] < per_label:
            taken[e.label] += 0 if held_out(e.text) else 1
            chosen.append(e)
    return LabelSet(f"mini-{name}", (f"{name}*",), tuple(chosen), exclude_held_out=True)


@pytest.fixture(scope="module")
def mini_bank() -> LabelSet:
    return subset("banking77", INTENTS, 40)


@pytest.fixture(scope="module")
def cached_dir(tmp_path_factory: pytest.TempPathFactory, mini_bank: LabelSet) -> Path:
    """A cache root holding ``mini_bank``'s model (trained once for the module)."""
    root = tmp_path_factory.mktemp("triage-cache")
    cache = ModelCache(root)
    cache.load_or_train(mini_bank)
    assert (cache.trained, cache.loaded) == (1, 0)
    return root


@pytest.fixture(scope="module")
def mini_bank_model(cached_dir: Path, mini_bank: LabelSet) -> TriageModel:
    model = ModelCache(cached_dir).load(mini_bank)
    assert model is not None
    return model


def copy_of(root: Path, tmp_path: Path) -> Path:
    shutil.copytree(root, tmp_path / "cache")
    return tmp_path / "cache"


def test_obvious_queries_get_their_intent(mini_bank_model: TriageModel) -> None:
    cases = {
        "my card still has not arrived, when will it come?": "card_arrival",
        "someone stole my card yesterday": "lost_or_stolen_card",
        "what exchange rate do you use for euros?": "exchange_rate",
        "my top up did not work": "top_up_failed",
        "my pin is blocked after three wrong tries": "pin_blocked",
    }
    for text, label in cases.items():
        p = mini_bank_model.predict(text)
        assert p.label == label, (text, p)
        assert 0.0 < p.confidence <= 1.0
        assert len(p.alternatives) == 3
        assert all(p.confidence >= q for _, q in p.alternatives)
        assert p.urgency is None


def test_probabilities_are_rows_summing_to_one(mini_bank_model: TriageModel) -> None:
    probs = mini_bank_model.probabilities(["card", "exchange rate please", "x"])
    assert probs.shape == (3, len(INTENTS))
    assert np.allclose(probs.sum(axis=1), 1.0)
    assert mini_bank_model.labels == tuple(sorted(INTENTS))


def test_held_out_figures_beat_chance(mini_bank: LabelSet, mini_bank_model: TriageModel) -> None:
    ev = evaluate(mini_bank_model, mini_bank.held_out_examples)
    assert ev.n == len(mini_bank.held_out_examples) > 20
    assert ev.accuracy > 0.7
    assert ev.macro_f1 > 0.7
    assert 0.0 <= ev.ece < 0.3
    assert len(ev.predicted) == ev.n


def test_training_is_deterministic(mini_bank: LabelSet, mini_bank_model: TriageModel) -> None:
    again = train_model(mini_bank, version=mini_bank_model.version)
    texts = [e.text for e in mini_bank.held_out_examples]
    assert again.temperature == mini_bank_model.temperature
    assert again.predict_many(texts) == mini_bank_model.predict_many(texts)


def test_urgency_head_is_trained_when_examples_carry_urgency() -> None:
    examples = tuple(
        Example(f"{word} server {i} is down, production outage", "incident", 0)
        for i, word in enumerate(["mail", "web", "db", "dns", "auth"] * 6)
    ) + tuple(
        Example(f"please order a new {word} for me {i}", "request", 3)
        for i, word in enumerate(["mouse", "monitor", "chair", "laptop", "badge"] * 6)
    )  # fmt: skip
    ls = LabelSet("it-mini", ("it*",), examples)
    assert ls.has_urgency
    model = train_model(ls)
    assert model.predict("the web server is down, outage").urgency == 0
    assert model.predict("please order a new keyboard").urgency == 3


def test_two_labels_work_and_one_label_is_refused() -> None:
    two = LabelSet(
        "two", (), tuple(Example(f"refund my payment {i}", "refund") for i in range(5))
        + tuple(Example(f"card lost on day {i}", "lost") for i in range(5)),
    )  # fmt: skip
    model = train_model(two)
    assert model.predict("I want a refund").label == "refund"
    assert model.temperature == 1.0  # too few examples to calibrate on
    one = LabelSet("one", (), (Example("hello there", "a"), Example("hi there", "a")))
    with pytest.raises(ExamplesError, match="at least 2 distinct labels"):
        train_model(one)


def test_fit_temperature_recovers_a_known_temperature() -> None:
    rng = np.random.default_rng(0)
    true_t = 2.5
    logits = rng.normal(scale=4.0, size=(4000, 5))
    p = np.exp(logits / true_t)
    p /= p.sum(axis=1, keepdims=True)
    targets = np.array([rng.choice(5, p=row) for row in p])
    assert math.isclose(fit_temperature(logits, targets), true_t, rel_tol=0.1)
    assert fit_temperature(logits[:0], targets[:0]) == 1.0


def test_ece_and_macro_f1_on_known_values() -> None:
    assert expected_calibration_error([0.9] * 10, [True] * 9 + [False]) == pytest.approx(0.0)
    assert expected_calibration_error([1.0, 1.0], [False, False]) == pytest.approx(1.0)
    # two bins: 0.25 (0 right of 2) and 0.75 (2 of 2): |0-0.25| / 2 + |1-0.75| / 2
    assert expected_calibration_error([0.25, 0.25, 0.75, 0.75], [0, 0, 1, 1]) == pytest.approx(0.25)
    assert macro_f1(["a", "a", "b"], ["a", "b", "b"]) == pytest.approx((2 / 3 + 2 / 3) / 2)
    assert top_confusions(["a", "a", "b", "b"], ["b", "b", "a", "b"]) == (
        (("a", "b"), 2), (("b", "a"), 1),
    )  # fmt: skip


# -- the cache ---------------------------------------------------------------------------------


def test_second_load_comes_from_the_cache(
    cached_dir: Path, mini_bank: LabelSet, mini_bank_model: TriageModel,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    model = mini_bank_model  # trained by the fixture: ModelCache.trained was 1
    path = ModelCache(cached_dir).path_for(mini_bank)
    assert path.parent == cached_dir / "triage"
    assert path.suffix == ".joblib"
    assert model.version == model_key(mini_bank)[:16]
    assert not list(path.parent.glob("*.tmp"))

    def no_training(*args: object, **kwargs: object) -> TriageModel:
        raise AssertionError("retrained although cached")

    monkeypatch.setattr(triage._cache, "_train", no_training)
    second = ModelCache(cached_dir)
    stages: list[tuple[str, int, int]] = []
    again = second.load_or_train(mini_bank, progress=lambda *a: stages.append(a))
    assert (second.trained, second.loaded) == (0, 1)
    assert stages == [("mini-banking77: cached", 1, 1)]
    text = "my card has not arrived"
    assert again.predict(text) == model.predict(text)


@pytest.mark.parametrize("damage", ["truncate", "garbage", "foreign"])
def test_a_corrupt_cache_file_is_retrained_over(
    tmp_path: Path, cached_dir: Path, mini_bank: LabelSet, caplog: pytest.LogCaptureFixture,
    damage: str,
) -> None:  # fmt: skip
    root = copy_of(cached_dir, tmp_path)
    path = ModelCache(root).path_for(mini_bank)
    if damage == "truncate":
        path.write_bytes(path.read_bytes()[:1000])
    elif damage == "garbage":
        path.write_bytes(b"not a joblib file at all")
    else:
        import joblib

        joblib.dump({"key": "other", "model": "a string"}, path)
    fresh = ModelCache(root)
    with caplog.at_level(logging.WARNING, logger="sitemesh.triage"):
        model = fresh.load_or_train(mini_bank)
    assert fresh.trained == 1
    assert "does not load" in caplog.text
    assert "retraining mini-banking77" in caplog.text
    assert model.predict("someone stole my card").label == "lost_or_stolen_card"
    healed = ModelCache(root)
    healed.load_or_train(mini_bank)
    assert (healed.trained, healed.loaded) == (0, 1)


def test_the_key_follows_data_config_and_name(mini_bank: LabelSet) -> None:
    key = model_key(mini_bank)
    assert len(key) == 64
    assert key == model_key(replace(mini_bank, tenants=("other*",)))
    fewer = replace(mini_bank, examples=mini_bank.examples[1:])
    assert model_key(fewer) != key
    assert model_key(replace(mini_bank, name="renamed")) != key
    assert model_key(mini_bank, ClassifierConfig(c=1.0)) != key


def test_an_unwritable_cache_still_gives_a_model(
    tmp_path: Path, mini_bank: LabelSet, caplog: pytest.LogCaptureFixture
) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    cache = ModelCache(blocker)  # <file>/triage cannot be created
    with caplog.at_level(logging.WARNING, logger="sitemesh.triage"):
        model = cache.load_or_train(mini_bank)
    assert model.labels
    assert "cannot cache" in caplog.text


def test_default_cache_dir_reads_sitemesh_cache_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SITEMESH_CACHE_DIR", str(tmp_path))
    assert default_cache_dir() == tmp_path
    assert ModelCache().dir == tmp_path / "triage"
    monkeypatch.delenv("SITEMESH_CACHE_DIR")
    assert default_cache_dir() == Path.home() / ".cache" / "sitemesh"


def test_warm_cache_reports_progress(tmp_path: Path, mini_bank: LabelSet) -> None:
    seen: list[tuple[str, int, int]] = []
    models = warm_cache([mini_bank], cache=ModelCache(tmp_path),
                        progress=lambda *a: seen.append(a))  # fmt: skip
    assert list(models) == ["mini-banking77"]
    assert seen[0] == ("mini-banking77: word and character n-grams", 0, 4)
    assert seen[-1] == ("mini-banking77: trained", 4, 4)
