"""Telemetry sources a site registers by name, read for the diagnostics agent and
``sitemesh watch``.

A :class:`SourceSpec` says where the data is and what it is (:data:`SourceKind`):

* ``series``: CSV, gzipped CSV and Parquet files of metric samples;
* ``prometheus_text``: Prometheus text exposition / OpenMetrics snapshot files;
* ``logs``: plain text log files and JSON lines;
* ``prometheus_api``: a Prometheus server's HTTP API (``query_range``).

:func:`parse_spec` reads one from JSON, :func:`infer_kind` guesses the kind of a
location, :func:`open_source` gives a :class:`TelemetryReader`: synchronous, with
``series`` / ``logs`` of a device over a window, limited as ``TelemetryAlert``
carries them. Data that names no device matches every device. The registry of a
site's sources (``telemetry/<name>`` in its artifact bucket) and the
:class:`Watcher` behind ``sitemesh watch`` build on it; :func:`series_signal` is
how a series is named in its alerts and in the diagnostics agent's findings. See
``docs/telemetry-sources.md``.
"""

from __future__ import annotations

from ._errors import SourceError
from ._logs import LogReader
from ._open import infer_kind, open_source
from ._promapi import PrometheusApiReader
from ._promtext import PrometheusTextReader
from ._protocol import SourceSummary, TelemetryReader
from ._registry import (
    ARTIFACT_KIND,
    BUNDLED_SOURCES,
    CISCO_SOURCE,
    SourceNotFound,
    artifact_name,
    fetch_source,
    list_sources,
    publish_source,
    remove_source,
)
from ._series import SeriesReader
from ._spec import (
    SOURCE_KINDS,
    SPEC_SCHEMA_FILE,
    SourceKind,
    SourceSpec,
    check_spec,
    parse_spec,
    spec_json_schema,
)
from ._store import series_signal
from ._watch import Incident, WatchConfig, Watcher

__all__ = [
    "ARTIFACT_KIND",
    "BUNDLED_SOURCES",
    "CISCO_SOURCE",
    "SOURCE_KINDS",
    "SPEC_SCHEMA_FILE",
    "Incident",
    "LogReader",
    "PrometheusApiReader",
    "PrometheusTextReader",
    "SeriesReader",
    "SourceError",
    "SourceKind",
    "SourceNotFound",
    "SourceSpec",
    "SourceSummary",
    "TelemetryReader",
    "WatchConfig",
    "Watcher",
    "artifact_name",
    "check_spec",
    "fetch_source",
    "infer_kind",
    "list_sources",
    "open_source",
    "parse_spec",
    "publish_source",
    "remove_source",
    "series_signal",
    "spec_json_schema",
]
