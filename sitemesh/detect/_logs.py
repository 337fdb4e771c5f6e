"""Log template mining with drain3, and the findings it gives: new, rare and
bursting templates.

Drain (He, Zhu, Zheng & Lyu 2017, "Drain: An Online Log Parsing Approach with
Fixed Depth Tree", IEEE ICWS) groups lines into templates online; drain3 is its
maintained implementation (MIT). The miner here is in memory only: no persistence
handler, no ``drain3.ini`` read, every setting given in code (:class:`LogConfig`).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final

import msgspec
from drain3 import TemplateMiner
from drain3.masking import MaskingInstruction
from drain3.template_miner_config import TemplateMinerConfig

from ._findings import LogFinding, LogKind, TemplateCount
from ._readers import LogLine
from ._runs import human


class Mask(msgspec.Struct, frozen=True):
    """A parameter pattern replaced by ``<name>`` before Drain sees the line."""

    name: str
    """The mask, e.g. ``IP`` (the template shows ``<IP>``)."""
    pattern: str
    """A Python regex; masks apply in order, so earlier ones win."""


DEFAULT_MASKS: Final = (
    Mask("TIME", r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2}(?:[.,]\d+)?(?:Z|[+-]\d{2}:?\d{2})?"),
    Mask("TIME", r"(?<![\w:])\d{1,2}:\d{2}:\d{2}(?:[.,]\d+)?(?![\w:])"),
    Mask("MAC", r"(?<![\w:-])[0-9A-Fa-f]{2}(?:[:-][0-9A-Fa-f]{2}){5}(?![\w:-])"),
    Mask("IP", r"(?<![\w.:])\d{1,3}(?:\.\d{1,3}){3}(?::\d{1,5}|/\d{1,2})?(?![\w.])"),
    Mask("IP", r"(?<![\w:])(?:[0-9A-Fa-f]{0,4}:){2,7}[0-9A-Fa-f]{1,4}(?:/\d{1,3})?(?![\w:])"),
    Mask(
        "UUID", r"\b[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}\b"
    ),
    Mask("HEX", r"\b0[xX][0-9A-Fa-f]+\b"),
    Mask("HEX", r"\b(?=[0-9A-Fa-f]*\d)(?=[0-9A-Fa-f]*[A-Fa-f])[0-9A-Fa-f]{8,}\b"),
    Mask("NUM", r"(?<![\w.])[-+]?\d+(?:\.\d+)?(?![\w.])"),
)
"""The masks of :class:`LogConfig`, in order: ISO 8601 date-times and clock times
(``TIME``), MAC addresses (before IPv6, whose pattern they would match), IPv4 with
an optional port or prefix length and IPv6 (``IP``), UUIDs, hex (``0x...`` and runs
of 8+ hex digits with both a digit and a letter: ids, hashes), then free-standing
numbers (``NUM``: ``[393]`` -> ``[<NUM>]``, but not the ``0`` of ``blk_0`` or
``HundredGigE0``)."""


class LogConfig(msgspec.Struct, frozen=True, kw_only=True):
    """Settings of :func:`mine_logs`: the drain3 miner and the finding rules."""

    masks: tuple[Mask, ...] = DEFAULT_MASKS
    """Masking applied to every line before Drain, in order."""
    sim_th: float = 0.4
    """Drain's similarity threshold (drain3's default; the value He et al. 2017 use
    for most of their data sets)."""
    depth: int = 4
    """Drain's parse-tree depth (drain3's default, as in He et al. 2017)."""
    max_children: int = 100
    """Children per tree node (drain3's default)."""
    max_clusters: int | None = None
    """At most this many templates (least recently used dropped); ``None``: no bound."""
    parametrize_numeric_tokens: bool = True
    """Drain treats any token with a digit as a parameter when matching (drain3's
    default): ``HundredGigE0/0/0/8`` and ``HundredGigE0/0/0/30`` match."""
    extra_delimiters: tuple[str, ...] = ()
    """Characters split on besides whitespace (none: drain3's default)."""
    learning_lines: int = 1000
    """Lines in the learning prefix when :func:`mine_logs` gets no ``learn_until``."""
    rare_max_count: int = 1
    """A template seen at most this many times in the prefix is ``rare`` when it
    comes back."""
    burst_window: timedelta = timedelta(minutes=1)
    """The window a template's rate is counted in."""
    burst_min_count: int = 5
    """A burst needs at least this many lines of one template in one window."""
    burst_ratio: float = 10.0
    """... and at least this many times the lines its earlier rate predicts
    (an order of magnitude above its own baseline)."""

    def miner_config(self) -> TemplateMinerConfig:
        """The drain3 configuration: these settings, nothing read from a file, no
        snapshots, no profiling."""
        cfg = TemplateMinerConfig()
        cfg.drain_sim_th = self.sim_th
        cfg.drain_depth = self.depth
        cfg.drain_max_children = self.max_children
        cfg.drain_max_clusters = self.max_clusters
        cfg.drain_extra_delimiters = list(self.extra_delimiters)
        cfg.parametrize_numeric_tokens = self.parametrize_numeric_tokens
        cfg.masking_instructions = [MaskingInstruction(m.pattern, m.name) for m in self.masks]
        cfg.mask_prefix = "<"
        cfg.mask_suffix = ">"
        cfg.profiling_enabled = False
        return cfg


DEFAULT_LOG_CONFIG: Final = LogConfig()
"""The settings :func:`mine_logs` uses when given none."""


def template_miner(config: LogConfig = DEFAULT_LOG_CONFIG) -> TemplateMiner:
    """A fresh in-memory drain3 ``TemplateMiner`` with ``config``: no persistence
    handler, and no ``drain3.ini`` read (drain3 reads one only when given no config)."""
    return TemplateMiner(persistence_handler=None, config=config.miner_config())


@dataclass(frozen=True, slots=True)
class LogReport:
    """What :func:`mine_logs` found.

    Attributes:
        source: the stream's name.
        lines: lines mined.
        learned: lines in the learning prefix.
        templates: every template, most frequent first (ties: by id).
        findings: new, rare and burst findings, by first line.
        assignments: the template id of each input line, shape ``(lines,)``.
    """

    source: str
    lines: int
    learned: int
    templates: tuple[TemplateCount, ...]
    findings: tuple[LogFinding, ...]
    assignments: tuple[int, ...]


def mine_logs(
    lines: Sequence[LogLine],
    *,
    source: str = "",
    config: LogConfig = DEFAULT_LOG_CONFIG,
    learn_until: datetime | None = None,
) -> LogReport:
    """Mine templates from ``lines`` and report what changed after a learning prefix.

    The learning prefix is the lines up to the first one at or after
    ``learn_until`` when it is given (a line without a time inherits the previous
    line's), else the first ``config.learning_lines``. After it:

    * ``new_template``: a template whose first line comes after the prefix (one
      finding per template: its count after the prefix, first and last line);
    * ``rare_template``: a template seen at most ``config.rare_max_count`` times in
      the prefix that comes back (one finding per template);
    * ``burst``: at least ``config.burst_min_count`` lines of one template within
      ``config.burst_window`` and at least ``config.burst_ratio`` times what the
      template's rate before that window predicts (its count since the first line
      plus one, over that time: a never-seen template predicts one line per
      history). Lines at most one window apart that each close such a window are
      one burst. Needs times; lines are taken in input order, which must then be
      time order.

    Args:
        lines: the log, in order.
        source: the stream's name, copied into findings.
        config: the settings.
        learn_until: the end of the learning prefix (aware), or ``None``.

    Returns:
        The report.
    """
    miner = template_miner(config)
    times = _times(lines)
    ids: list[int] = []
    if learn_until is None:
        learned = min(config.learning_lines, len(lines))
    else:
        later = (i for i, t in enumerate(times) if t is not None and t >= learn_until)
        learned = next(later, len(lines))
    for line in lines:
        ids.append(int(miner.add_log_message(line.text)["cluster_id"]))
    templates = {c.cluster_id: c.get_template() for c in miner.drain.clusters}
    counts = _counts(ids, times, learned, templates)
    findings = [
        *_new_and_rare(ids, times, learned, counts, source, config),
        *_bursts(ids, times, learned, templates, source, config),
    ]
    findings.sort(key=lambda f: (f.first_line, f.kind))
    return LogReport(
        source=source,
        lines=len(lines),
        learned=learned,
        templates=tuple(sorted(counts.values(), key=lambda c: (-c.count, c.template_id))),
        findings=tuple(findings),
        assignments=tuple(ids),
    )


def _times(lines: Sequence[LogLine]) -> list[datetime | None]:
    out: list[datetime | None] = []
    last: datetime | None = None
    for line in lines:
        last = line.at if line.at is not None else last
        out.append(last)
    return out


def _counts(
    ids: list[int], times: list[datetime | None], learned: int, templates: dict[int, str]
) -> dict[int, TemplateCount]:
    count: dict[int, int] = {}
    early: dict[int, int] = {}
    first: dict[int, datetime | None] = {}
    last: dict[int, datetime | None] = {}
    for i, (cid, at) in enumerate(zip(ids, times, strict=True)):
        count[cid] = count.get(cid, 0) + 1
        if i < learned:
            early[cid] = early.get(cid, 0) + 1
        first.setdefault(cid, at)
        last[cid] = at if at is not None else last.get(cid)
    return {
        cid: TemplateCount(
            template_id=cid,
            template=templates.get(cid, ""),
            count=n,
            learned=early.get(cid, 0),
            first_at=first[cid],
            last_at=last[cid],
        )
        for cid, n in count.items()
    }


def _new_and_rare(
    ids: list[int],
    times: list[datetime | None],
    learned: int,
    counts: dict[int, TemplateCount],
    source: str,
    config: LogConfig,
) -> list[LogFinding]:
    after: dict[int, list[int]] = {}
    for i in range(learned, len(ids)):
        after.setdefault(ids[i], []).append(i)
    out = []
    for cid, where in after.items():
        seen = counts[cid].learned
        kind: LogKind
        if seen == 0:
            kind = "new_template"
            evidence = f"not in the {learned} learning lines; {len(where)} lines after"
        elif seen <= config.rare_max_count:
            kind = "rare_template"
            evidence = f"{seen} of the {learned} learning lines; {len(where)} lines after"
        else:
            continue
        out.append(
            LogFinding(
                source=source,
                kind=kind,
                template_id=cid,
                template=counts[cid].template,
                count=len(where),
                first_at=times[where[0]],
                last_at=times[where[-1]],
                first_line=where[0],
                evidence=evidence,
            )
        )
    return out


def _bursts(
    ids: list[int],
    times: list[datetime | None],
    learned: int,
    templates: dict[int, str],
    source: str,
    config: LogConfig,
) -> list[LogFinding]:
    if not ids or any(t is None for t in times):
        return []
    stamps = [t.timestamp() for t in times if t is not None]
    width = config.burst_window.total_seconds()
    start = stamps[0]
    recent: dict[int, deque[int]] = {}
    total: dict[int, int] = {}  # lines of each template before its recent window
    open_: dict[int, list[int | float]] = {}  # cid -> [first line, last line, expected]
    out: list[LogFinding] = []

    def close(cid: int) -> None:
        first, last, expected = open_.pop(cid)
        lo, hi = int(first), int(last)
        n = sum(1 for i in range(lo, hi + 1) if ids[i] == cid)
        span = stamps[hi] - stamps[lo]
        out.append(
            LogFinding(
                source=source,
                kind="burst",
                template_id=cid,
                template=templates.get(cid, ""),
                count=n,
                first_at=times[lo],
                last_at=times[hi],
                first_line=lo,
                expected=float(expected),
                evidence=(
                    f"{n} lines in {human(max(span, 0.0))}; its earlier rate predicts "
                    f"{float(expected):.2g} per {human(width)}"
                ),
            )
        )

    for i, cid in enumerate(ids):
        now = stamps[i]
        for other in [c for c, (_, last, _) in open_.items() if now - stamps[int(last)] > width]:
            close(other)
        q = recent.setdefault(cid, deque())
        q.append(i)
        while stamps[q[0]] <= now - width:
            q.popleft()
            total[cid] = total.get(cid, 0) + 1
        if i < learned:
            continue
        history = now - width - start
        if history <= 0:
            continue
        expected = (total.get(cid, 0) + 1) * width / history
        if len(q) >= config.burst_min_count and len(q) >= config.burst_ratio * expected:
            if cid in open_:
                open_[cid][1] = i
            else:
                open_[cid] = [max(q[0], learned), i, expected]
    for cid in list(open_):
        close(cid)
    return out
