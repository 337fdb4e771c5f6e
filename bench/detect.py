"""Diagnostics detectors on real data: NAB metrics, Cisco port-flap syslogs, loghub.

Metrics, on the bundled NAB copy (``sitemesh/detect/data/nab``; Lavin & Ahmad 2015,
"Evaluating Real-time Anomaly Detection Algorithms - the Numenta Anomaly
Benchmark", IEEE ICMLA), three detectors in the same run:

* ``ours``: :func:`sitemesh.detect.detect_series` (robust deviation + change points +
  flatlines, merged), :data:`~sitemesh.detect.DEFAULT_CONFIG`;
* ``fixed p99``: :func:`~sitemesh.detect.fixed_threshold`, value above the 99th
  percentile of the file's first 15 %;
* ``rolling z``: :func:`~sitemesh.detect.rolling_zscore`, ``|z| >= 3`` against the
  mean and standard deviation of the trailing day.

Split: within each category, files sorted by name alternate tune / held out
(:func:`~sitemesh.detect.load_nab`); the defaults were tuned on the tune half only
(``--tune`` reruns that search and prints it). Figures per set (real AWS
CloudWatch, artificial with + without anomalies) and split: windows overlapped by a
finding (recall), findings overlapping no window (FP) per scored day, and the NAB
standard-profile score (:func:`~sitemesh.detect.nab_score`, a finding counting as
one detection at its ``detected_at``). Everything is scored after each file's
probationary period (its first 15 %, at most 750 records).

Logs (read at run time from ``--shared``, nothing from them is in the repository):

* Cisco port flap (cisco-ie/telemetry folder 4, CC BY-NC 4.0): 15 devices' syslogs;
  the event windows of ``portflap_casedata.txt`` (PDT, to the minute, so widened by
  one minute each side when matching; each log's banner gives its clock's zone:
  PDT, leaf4 UTC).
  Per device, :func:`~sitemesh.detect.mine_logs` learns on
  the lines before the capture's telemetry start (10:10) and its findings from
  10:10 to 10:53 (telemetry end) are scored: a window is found when a finding on
  any device overlaps it; a finding overlapping no window is a false positive
  (``episodes``: false positives of one device starting in the same minute, once). The
  baseline in the same run: alert on every line of syslog severity 0-3
  (``%FACILITY-<sev>-MNEMONIC``), lines within 60 s one alert.
* loghub 2k samples (Zhu et al. 2023, "Loghub: A Large Collection of System Log
  Datasets for AI-driven Log Analytics", ISSRE; https://github.com/logpai/loghub):
  per system, templates from our miner and from drain3 with its defaults (no
  masking) on the ``Content`` column of ``*_structured.csv``, and grouping accuracy
  against its ``EventId`` (Zhu et al. 2019, "Tools and Benchmarks for Automated Log
  Parsing", ICSE-SEIP: a line is right when the set of lines in its template is
  exactly the set with its EventId).

Watching (``sitemesh watch``): a :class:`sitemesh.sources.Watcher` backfills each
held-out realAWSCloudwatch file as a ``series`` source (one device per file, the
demo's layout) in one poll; its incidents are counted in and outside the labelled
windows (an incident is in a window when its first finding starts inside it), per
series-day, by severity, and how many windows got an incident.

Usage: ``python bench/detect.py [--tune] [--shared /work/shared/data]``.
"""

from __future__ import annotations

import argparse
import csv
import itertools
import math
import re
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import msgspec
from drain3 import TemplateMiner
from drain3.template_miner_config import TemplateMinerConfig

from sitemesh.detect import (
    DEFAULT_CONFIG,
    DEFAULT_LOG_CONFIG,
    LogFinding,
    LogLine,
    MetricFinding,
    NabSeries,
    Series,
    baseline,
    change_points,
    detect_series,
    fixed_threshold,
    flatlines,
    load_nab,
    merge_findings,
    mine_logs,
    nab_score,
    read_log_lines,
    robust_deviation,
    rolling_zscore,
    timestamp_parser,
    window_counts,
)

Detector = Callable[[Series], list[MetricFinding]]

DETECTORS: dict[str, Detector] = {
    "ours": detect_series,
    "fixed p99": fixed_threshold,
    "rolling z": rolling_zscore,
}

SETS: dict[str, Callable[[NabSeries], bool]] = {
    "real AWS": lambda s: s.category == "realAWSCloudwatch",
    "artificial": lambda s: s.category != "realAWSCloudwatch",
}
SPLITS: dict[str, Callable[[NabSeries], bool]] = {
    "tune": lambda s: s.tune,
    "held out": lambda s: not s.tune,
    "all": lambda s: True,
}

Results = list[tuple[NabSeries, list[MetricFinding]]]


def fmt(x: float, spec: str = ".1f") -> str:
    return "-" if math.isnan(x) else format(x, spec)


def score_row(results: Results) -> tuple[str, ...]:
    counts = window_counts(results)
    score = nab_score((item, [f.detected_at for f in fs]) for item, fs in results)
    return (
        f"{counts.detected}/{counts.windows}",
        fmt(counts.recall, ".2f"),
        str(counts.false_positives),
        fmt(counts.fp_per_day, ".2f"),
        fmt(score.score),
    )


def nab(corpus: list[NabSeries]) -> None:
    n_tune = sum(s.tune for s in corpus)
    print(
        f"NAB: {len(corpus)} files, {sum(len(s.windows) for s in corpus)} windows, "
        f"{sum(s.scored_days for s in corpus):.0f} scored days; tune {n_tune} files, "
        f"held out {len(corpus) - n_tune}"
    )
    found: dict[str, Results] = {}
    for name, detect in DETECTORS.items():
        start = time.perf_counter()
        found[name] = [(item, detect(item.series)) for item in corpus]
        print(f"  {name:<10} {time.perf_counter() - start:6.1f} s")
    head = ("set", "split", "files", "detector", "found", "recall", "FP", "FP/day", "NAB")
    widths = (11, 9, 5, 10, 6, 6, 5, 6, 6)
    print()
    print(
        " ".join(
            h.ljust(w) if i < 4 else h.rjust(w)
            for i, (h, w) in enumerate(zip(head, widths, strict=True))
        )
    )
    for (set_name, in_set), (split_name, in_split) in itertools.product(
        SETS.items(), SPLITS.items()
    ):
        for name in DETECTORS:
            rows = [(i, f) for i, f in found[name] if in_set(i) and in_split(i)]
            cells = (set_name, split_name, str(len(rows)), name, *score_row(rows))
            print(
                " ".join(
                    c.ljust(w) if i < 4 else c.rjust(w)
                    for i, (c, w) in enumerate(zip(cells, widths, strict=True))
                )
            )
    rows = [(i, f) for name in DETECTORS for i, f in found[name] if name == "ours"]
    by_detector: Counter[str] = Counter(f.detector for _, fs in rows for f in fs)
    print(
        "\nours, findings by rule (all files): "
        + ", ".join(f"{k} {v}" for k, v in sorted(by_detector.items()))
    )


def tune(corpus: list[NabSeries]) -> None:
    """The search the *tuned* defaults of DetectConfig come from: tune half only."""
    items = [s for s in corpus if s.tune]
    print(f"\ntuning on {len(items)} files (the tune half), NAB standard score:")
    bases = {s.key: baseline(s.series, DEFAULT_CONFIG) for s in items}
    flats = {s.key: flatlines(s.series, DEFAULT_CONFIG, base=bases[s.key]) for s in items}
    dev_grid = list(itertools.product((3.0, 4.0, 5.0, 6.0, 8.0), (1, 2, 3, 4, 6), (0.0, 1.0, 1.5)))
    shift_grid = list(itertools.product((5.0, 10.0, 20.0, 40.0), (3.0, 5.0, 8.0, 12.0)))
    shifts: dict[tuple[float, float], dict[str, list[MetricFinding]]] = {}
    for pen, size in shift_grid:
        cfg = msgspec.structs.replace(DEFAULT_CONFIG, shift_penalty=pen, shift_min_size=size)
        shifts[pen, size] = {s.key: change_points(s.series, cfg, base=bases[s.key]) for s in items}
    table = []
    for z, dur, margin in dev_grid:
        cfg = msgspec.structs.replace(
            DEFAULT_CONFIG,
            z_threshold=z,
            min_duration=timedelta(minutes=5 * dur),
            tail_margin=margin,
        )
        devs = {s.key: robust_deviation(s.series, cfg, base=bases[s.key]) for s in items}
        for key in shifts:
            results = [
                (s, merge_findings([*devs[s.key], *shifts[key][s.key], *flats[s.key]]))
                for s in items
            ]
            score = nab_score((i, [f.detected_at for f in fs]) for i, fs in results).score
            table.append((score, z, dur, margin, *key))
    table.sort(reverse=True)
    print(f"{'NAB':>6} {'z':>4} {'min dur':>7} {'tail':>5} {'penalty':>7} {'shift':>5}")
    for score, z, dur, margin, pen, size in table[:8]:
        print(f"{score:6.1f} {z:4g} {5 * dur:5d} m {margin:5g} {pen:7g} {size:5g}")
    names = ("z", "min dur (samples)", "tail margin", "penalty", "shift size")
    print("best score for each value of one setting (the others free):")
    for k, name in enumerate(names, start=1):
        best = {v: max(r[0] for r in table if r[k] == v) for v in sorted({r[k] for r in table})}
        print(f"  {name:<18} " + "  ".join(f"{v:g}: {b:.1f}" for v, b in best.items()))
    now = (
        DEFAULT_CONFIG.z_threshold,
        DEFAULT_CONFIG.min_duration.total_seconds() / 300,
        DEFAULT_CONFIG.tail_margin,
        DEFAULT_CONFIG.shift_penalty,
        DEFAULT_CONFIG.shift_min_size,
    )
    rank = next((k for k, row in enumerate(table) if row[1:] == now), None)
    print(f"defaults {now}: rank {rank + 1 if rank is not None else '-'} of {len(table)}")


# --- Cisco port flap ----------------------------------------------------------------

PDT = timezone(timedelta(hours=-7), "PDT")
XR_LINE = r"^\S*?:(?P<time>[A-Z][a-z]{2} +\d{1,2} \d{2}:\d{2}:\d{2}\.\d{3}) : "
"""IOS XR ``show logging``: ``RP/0/RP0/CPU0:Sep  1 08:54:59.131 : ifmgr[393]: ...``."""
SEVERITY = re.compile(r"%[A-Z0-9_]+(?:-[A-Z0-9_]+)*-(?P<sev>[0-7])-[A-Z0-9_]+")
SLACK = timedelta(minutes=1)


def casedata(
    path: Path,
) -> tuple[datetime, datetime, list[tuple[str, datetime, datetime, str, str]]]:
    """Telemetry start/end and ``(event, start, end, device, remote)`` per event."""

    def at(text: str) -> datetime:
        return datetime.strptime(text.strip(), "%m/%d/%y %H:%M").replace(tzinfo=PDT)

    start = end = None
    events = []
    for line in path.read_text(encoding="utf-8").splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) < 9 or not re.match(r"\d+/\d+/\d+", cells[2] + cells[3] + cells[5]):
            continue
        if cells[2]:
            start, end = at(cells[2]), at(cells[5])
        else:
            events.append(
                (" ".join(cells[0].split()), at(cells[3]), at(cells[4]), cells[6], cells[7])
            )
    if start is None or end is None:
        raise SystemExit(f"{path}: no telemetry start/end in the case data")
    return start, end, events


def severity_alerts(lines: Sequence[LogLine], device: str) -> list[LogFinding]:
    """The baseline: lines of severity 0-3, those within 60 s of the previous one merged."""
    out: list[LogFinding] = []
    for i, line in enumerate(lines):
        m = SEVERITY.search(line.text)
        if m is None or int(m.group("sev")) > 3 or line.at is None:
            continue
        last = out[-1] if out else None
        if (
            last is not None
            and last.last_at is not None
            and line.at - last.last_at <= timedelta(seconds=60)
        ):
            out[-1] = msgspec.structs.replace(last, last_at=line.at, count=last.count + 1)
        else:
            out.append(
                LogFinding(
                    source=device,
                    kind="burst",
                    template_id=0,
                    template="severity<=3",
                    count=1,
                    first_at=line.at,
                    last_at=line.at,
                    first_line=i,
                )
            )
    return out


def cisco(root: Path) -> None:
    folder = root / "telemetry-cisco" / "4"
    if not folder.is_dir():
        print(f"\nCisco port flap: {folder} not found, skipped")
        return
    t0, t1, events = casedata(folder / "portflap_casedata.txt")
    print(
        f"\nCisco port flap (folder 4, CC BY-NC 4.0, read from {folder}): {len(events)} events, "
        f"scored {t0:%H:%M}-{t1:%H:%M} PDT, learning on earlier lines"
    )
    found: dict[str, list[LogFinding]] = {"ours": [], "severity<=3": []}
    head = ("device", "lines", "learn", "tmpl", "new", "rare", "burst", "sev<=3")
    print(" ".join(h.ljust(8) if i == 0 else h.rjust(len(h)) for i, h in enumerate(head)))
    for path in sorted((folder / "logs").glob("*.log")):
        device = path.name.split(".")[0]
        banner = path.read_text(encoding="utf-8").split("\n", 1)[0].split()
        zone = PDT if banner[-1] == "PDT" else UTC  # the show-logging banner's zone
        parse = timestamp_parser(XR_LINE, "%b %d %H:%M:%S.%f", year=2017, tz=zone)
        lines = read_log_lines(path, parser=parse, skip_unparsed=True)
        lines.sort(key=lambda line: line.at or t0)
        report = mine_logs(lines, source=device, learn_until=t0)
        scored = [f for f in report.findings if f.first_at is not None and t0 <= f.first_at <= t1]
        base = [
            f
            for f in severity_alerts(lines, device)
            if f.first_at is not None and t0 <= f.first_at <= t1
        ]
        found["ours"].extend(scored)
        found["severity<=3"].extend(base)
        kinds = Counter(f.kind for f in scored)
        print(
            f"{device:<8} {report.lines:5d} {report.learned:5d} {len(report.templates):4d} "
            f"{kinds['new_template']:3d} {kinds['rare_template']:4d} {kinds['burst']:5d} "
            f"{len(base):6d}"
        )

    def hits(f: LogFinding, a: datetime, b: datetime) -> bool:
        if f.first_at is None or f.last_at is None:
            return False
        return f.first_at <= b + SLACK and f.last_at >= a - SLACK

    print(f"\n{'window (PDT)':<12} {'devices':<13} {'ours':>4} {'sev<=3':>6}  event")
    for name, a, b, dev, remote in events:
        cells = [sum(hits(f, a, b) for f in found[k]) for k in found]
        pair = f"{dev}/{remote}"
        print(f"{a:%H:%M}-{b:%H:%M}  {pair:<13} {cells[0]:4d} {cells[1]:6d}  {name}")
    print(
        f"\n{'detector':<12} {'windows':>7} {'recall':>6} {'findings':>8} {'FP':>4} {'episodes':>8}"
    )
    for k, fs in found.items():
        detected = sum(any(hits(f, a, b) for f in fs) for _, a, b, _, _ in events)
        fps = [f for f in fs if not any(hits(f, a, b) for _, a, b, _, _ in events)]
        episodes = len(
            {(f.source, f.first_at.replace(second=0, microsecond=0)) for f in fps if f.first_at}
        )
        print(
            f"{k:<12} {f'{detected}/{len(events)}':>7} {detected / len(events):6.2f} {len(fs):8d} "
            f"{len(fps):4d} {episodes:8d}"
        )
        for f in fps:
            print(
                f"  FP: {f.source} {f.first_at:%H:%M:%S}-{f.last_at:%H:%M:%S} "
                f"{f.kind}, {f.count} lines"
            )
    kinds = Counter(f.kind for f in found["ours"] if any(hits(f, a, b) for _, a, b, _, _ in events))
    print(
        "ours, findings in a window by kind: "
        + ", ".join(f"{k} {v}" for k, v in sorted(kinds.items()))
    )


# --- loghub -------------------------------------------------------------------------


def grouping_accuracy(predicted: Sequence[object], truth: Sequence[str]) -> float:
    """Share of lines whose predicted group is exactly their true group (Zhu et al. 2019)."""
    groups: defaultdict[object, list[int]] = defaultdict(list)
    for i, p in enumerate(predicted):
        groups[p].append(i)
    size = Counter(truth)
    right = 0
    for members in groups.values():
        labels = {truth[i] for i in members}
        if len(labels) == 1 and size[truth[members[0]]] == len(members):
            right += len(members)
    return right / len(truth)


def drain3_default(lines: Iterable[str]) -> list[int]:
    config = TemplateMinerConfig()  # drain3's defaults; no .ini is read when one is given
    miner = TemplateMiner(persistence_handler=None, config=config)
    return [int(miner.add_log_message(line)["cluster_id"]) for line in lines]


def loghub(root: Path) -> None:
    folder = root / "logs-loghub"
    if not folder.is_dir():
        print(f"\nloghub: {folder} not found, skipped")
        return
    print(
        f"\nloghub 2k samples (research licence, read from {folder}): grouping accuracy "
        "against EventId, on the Content column"
    )
    print("templates: ground truth, ours, drain3 defaults; GA: grouping accuracy")
    print(f"{'system':<12} {'lines':>5} {'truth':>5} {'ours':>5} {'GA':>6} {'dflt':>5} {'GA':>6}")
    totals: list[tuple[float, float]] = []
    for path in sorted(folder.glob("*/*_structured.csv")):
        system = path.parent.name
        with path.open(encoding="utf-8", newline="") as fh:
            rows = list(csv.DictReader(fh))
        content = [r["Content"] for r in rows]
        truth = [r["EventId"] for r in rows]
        report = mine_logs(
            [LogLine(text=c) for c in content], source=system, config=DEFAULT_LOG_CONFIG
        )
        ours = grouping_accuracy(report.assignments, truth)
        plain = drain3_default(content)
        dflt = grouping_accuracy(plain, truth)
        totals.append((ours, dflt))
        print(
            f"{system:<12} {len(rows):5d} {len(set(truth)):5d} {len(report.templates):5d} "
            f"{ours:6.3f} {len(set(plain)):5d} {dflt:6.3f}"
        )
    if totals:
        print(
            f"{'mean':<12} {'':5} {'':5} {'':5} {sum(a for a, _ in totals) / len(totals):6.3f} "
            f"{'':5} {sum(b for _, b in totals) / len(totals):6.3f}"
        )


def watch() -> None:
    """Incidents of a backfilling :class:`~sitemesh.sources.Watcher` on the held-out
    realAWSCloudwatch files, against their labelled windows."""
    import tempfile
    from collections import Counter
    from datetime import UTC, datetime

    from sitemesh.detect import write_nab_source
    from sitemesh.sources import SourceSpec, Watcher, open_source

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "nab-aws"
        files = write_nab_source(root)
        reader = open_source(SourceSpec(name="nab-aws", kind="series", location=str(root)))
        since = datetime(2000, 1, 1, tzinfo=UTC)
        counts: Counter[tuple[str, bool]] = Counter()
        caught = days = 0.0
        t0 = time.perf_counter()
        for device, nab in sorted(files.items()):
            windows = nab.windows
            alerts = Watcher(reader, devices=[device], since=since).poll()
            (s,) = reader.series(device, since, datetime(2100, 1, 1, tzinfo=UTC))
            days += (s.timestamps[-1] - s.timestamps[0]).total_seconds() / 86_400
            starts = [(a.window_start.timestamp() + 600, a.severity) for a in alerts]
            for at, severity in starts:
                counts[severity, any(lo <= at <= hi for lo, hi in windows)] += 1
            caught += sum(any(lo <= at <= hi for at, _ in starts) for lo, hi in windows)
        took = time.perf_counter() - t0
    total = sum(len(n.windows) for n in files.values())
    inside = counts["minor", True] + counts["major", True]
    outside = counts["minor", False] + counts["major", False]
    print(
        f"\nsitemesh watch (Watcher backfill, one poll per file) on {len(files)} held-out "
        f"realAWSCloudwatch files, {days:.1f} series-days, {took:.1f} s"
    )
    print(
        f"incidents {inside + outside}: in a labelled window {inside} (major "
        f"{counts['major', True]}), outside {outside} (major {counts['major', False]}) = "
        f"{outside / days:.2f} per series-day; windows with an incident {caught:.0f}/{total}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tune", action="store_true", help="rerun the tuning search")
    parser.add_argument(
        "--shared", type=Path, default=Path("/work/shared/data"), help="folder of the log data"
    )
    args = parser.parse_args()
    corpus = load_nab()
    nab(corpus)
    watch()
    if args.tune:
        tune(corpus)
    if not args.shared.is_dir():
        print(f"\n{args.shared} not found: Cisco and loghub parts skipped")
        return
    cisco(args.shared)
    loghub(args.shared)


if __name__ == "__main__":
    main()
