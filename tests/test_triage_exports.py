"""Pin the public API of ``sitemesh.triage`` (a change here is an API change: update
``docs/triage.md``), and check that the bundled data ships with its attribution."""

from __future__ import annotations

import importlib.resources

import sitemesh.triage

PUBLIC = [
    "ALTERNATIVES", "ARTIFACT_KIND", "CACHE_DIR_ENV", "CODE_VERSION", "DATA_DIR",
    "DEFAULT_CONFIG", "DEFAULT_URGENCY", "ECE_BINS", "HELD_OUT_SHARE", "MIN_CONFIDENCE",
    "MIN_LETTERS", "URGENCY_RULES", "ClassifierConfig", "Evaluation", "Example",
    "ExampleFile", "ExamplesError", "LabelSet", "LabelSetSource", "ModelCache", "Prediction",
    "Progress", "Route", "TriageModel", "Triager", "UrgencySource", "accuracy",
    "artifact_meta", "artifact_name", "banking77_examples", "bundled_label_sets",
    "check_name", "default_cache_dir", "detect_language", "endava_examples", "evaluate",
    "examples_digest", "examples_to_jsonl", "expected_calibration_error", "fit_temperature",
    "held_out", "macro_f1", "model_key", "normalise", "parse_examples_jsonl", "parse_tenants",
    "published_label_set", "read_examples_csv", "resolve_urgency", "split_digest",
    "ticket_text", "top_confusions", "train_model", "warm_cache",
]  # fmt: skip


def test_public_api() -> None:
    assert sorted(sitemesh.triage.__all__) == sorted(PUBLIC)
    for name in PUBLIC:
        assert hasattr(sitemesh.triage, name), name


def test_the_errors_are_sitemesh_errors() -> None:
    from sitemesh.errors import SitemeshError

    assert issubclass(sitemesh.triage.ExamplesError, SitemeshError)
    assert issubclass(sitemesh.triage.ExamplesError, ValueError)


def test_bundled_data_ships_with_licence_and_sources() -> None:
    data = importlib.resources.files(sitemesh.triage) / "data"
    for rel in (
        "banking77/train.csv",
        "banking77/categories.json",
        "banking77/LICENSE",
        "banking77/SOURCE.md",
        "endava/all_tickets_dev.csv",
        "endava/SOURCE.md",
    ):
        assert (data / rel).is_file(), rel  # fmt: skip
    banking = (data / "banking77" / "SOURCE.md").read_text("utf-8")
    assert "Casanueva" in banking
    assert "CC BY 4.0" in banking
    assert "## In sitemesh" in banking
    endava = (data / "endava" / "SOURCE.md").read_text("utf-8")
    assert "MIT" in endava
    assert "CC0" in endava
    assert "## In sitemesh" in endava
