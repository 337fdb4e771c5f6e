"""Trained models cached on disk with joblib, so a worker trains a label set once.

A model is stored at ``<cache dir>/triage/<key>.joblib``, where ``key`` is the SHA-256
of everything that decides the model: the training examples (their JSONL form), the
label set's name and ``exclude_held_out``, the :class:`ClassifierConfig`, the
scikit-learn version and :data:`CODE_VERSION`. Tenant globs are not part of it: they
route tickets and do not change the model. Files are written to a temporary name and
renamed (``os.replace``), so a reader never sees half a file; one that does not load
(truncated, from another library version, not ours) is retrained over with a warning.

The cache holds pickles: only point it at a directory no one else writes to.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Final

from ._examples import examples_digest
from ._labelsets import LabelSet, bundled_label_sets
from ._model import CODE_VERSION, DEFAULT_CONFIG, ClassifierConfig, Progress, TriageModel
from ._model import train_model as _train

log = logging.getLogger("sitemesh.triage")

CACHE_DIR_ENV: Final = "SITEMESH_CACHE_DIR"
"""Environment variable naming the cache root (default ``~/.cache/sitemesh``)."""


def default_cache_dir() -> Path:
    """``$SITEMESH_CACHE_DIR``, else ``~/.cache/sitemesh`` (the models go in ``triage/``)."""
    configured = os.environ.get(CACHE_DIR_ENV)
    return Path(configured).expanduser() if configured else Path.home() / ".cache" / "sitemesh"


def model_key(label_set: LabelSet, config: ClassifierConfig = DEFAULT_CONFIG) -> str:
    """The cache key of ``label_set`` trained with ``config`` (64 hex digits).

    SHA-256 over a canonical JSON of the name, ``exclude_held_out``, the configuration,
    the scikit-learn version and :data:`CODE_VERSION`, followed by the SHA-256 of the
    training examples (:func:`examples_digest`).
    """
    import sklearn

    head = {
        "name": label_set.name,
        "exclude_held_out": label_set.exclude_held_out,
        "config": config.as_dict(),
        "sklearn": sklearn.__version__,
        "code": CODE_VERSION,
    }
    h = hashlib.sha256(json.dumps(head, sort_keys=True).encode("utf-8"))
    h.update(examples_digest(label_set.training_examples).encode("ascii"))
    return h.hexdigest()


class ModelCache:
    """Trained models on disk, keyed by :func:`model_key`.

    Args:
        root: the cache root; ``None``: :func:`default_cache_dir`. Models go in
            ``<root>/triage/``.
        config: the hyper-parameters to train with.

    Attributes:
        trained: how many models this instance trained (a miss or an unreadable file).
        loaded: how many it read from disk.
    """

    def __init__(self, root: Path | None = None, *, config: ClassifierConfig = DEFAULT_CONFIG):
        self.dir = (root if root is not None else default_cache_dir()) / "triage"
        self.config = config
        self.trained = 0
        self.loaded = 0

    def path_for(self, label_set: LabelSet) -> Path:
        """Where ``label_set``'s model is (or would be) stored."""
        return self.dir / f"{model_key(label_set, self.config)}.joblib"

    def load(self, label_set: LabelSet) -> TriageModel | None:
        """The cached model of ``label_set``, or ``None`` when there is none or it does
        not load (logged as a warning; the file is left for :meth:`store` to replace)."""
        key = model_key(label_set, self.config)
        path = self.dir / f"{key}.joblib"
        if not path.exists():
            return None
        import joblib

        try:
            payload = joblib.load(path)
            model = payload.get("model") if isinstance(payload, dict) else None
            if not isinstance(model, TriageModel) or payload.get("key") != key:
                raise ValueError("not a sitemesh triage model of this key")
        except Exception as exc:
            log.warning(
                "triage model cache %s does not load (%s: %.200s); retraining %s",
                path, type(exc).__name__, exc, label_set.name,
            )  # fmt: skip
            return None
        self.loaded += 1
        return model

    def store(self, label_set: LabelSet, model: TriageModel) -> Path | None:
        """Write ``model`` atomically (temporary file + ``os.replace``).

        Returns:
            The path, or ``None`` when the directory is not writable (logged; the
            model is still usable, it is only not cached).
        """
        key = model_key(label_set, self.config)
        path = self.dir / f"{key}.joblib"
        import joblib

        tmp: str | None = None
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=self.dir, prefix=f".{key[:16]}.", suffix=".tmp")
            with os.fdopen(fd, "wb") as fh:
                joblib.dump({"key": key, "model": model}, fh)
            os.replace(tmp, path)
        except OSError as exc:
            log.warning("cannot cache triage model %s in %s: %s", label_set.name, self.dir, exc)
            if tmp is not None:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
            return None
        return path

    def load_or_train(
        self, label_set: LabelSet, *, progress: Progress | None = None
    ) -> TriageModel:
        """The cached model of ``label_set``, trained and stored first on a miss.

        Blocking (training takes seconds to tens of seconds): from async code call it
        in ``asyncio.to_thread``.

        Args:
            label_set: the examples.
            progress: see :data:`Progress`; a hit reports ``("<name>: cached", 1, 1)``.

        Raises:
            ExamplesError: the examples cannot be trained on (see :func:`train_model`).
        """
        model = self.load(label_set)
        if model is not None:
            if progress is not None:
                progress(f"{label_set.name}: cached", 1, 1)
            return model
        key = model_key(label_set, self.config)
        model = _train(label_set, config=self.config, version=key[:16], progress=progress)
        self.trained += 1
        self.store(label_set, model)
        return model


def warm_cache(
    label_sets: Iterable[LabelSet] | None = None,
    *,
    cache: ModelCache | None = None,
    progress: Progress | None = None,
) -> dict[str, TriageModel]:
    """Train (or load) the bundled label sets' models so workers start fast.

    Args:
        label_sets: default: :func:`bundled_label_sets`.
        cache: default: ``ModelCache()`` (``$SITEMESH_CACHE_DIR``).
        progress: see :data:`Progress`, called for each label set in turn.

    Returns:
        Label set name -> model, in order.
    """
    cache = cache if cache is not None else ModelCache()
    sets = bundled_label_sets() if label_sets is None else tuple(label_sets)
    return {ls.name: cache.load_or_train(ls, progress=progress) for ls in sets}
