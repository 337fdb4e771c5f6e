"""How a sitemesh process logs: text lines or one JSON object per line, on stderr.

``SITEMESH_LOG_FORMAT`` (:attr:`sitemesh.config.Settings.log_format`) picks the
format for every process: the CLI commands, and the worker processes ``edge``,
``up`` and ``demo`` start (they inherit the setting through ``Settings.to_env``).
A JSON line has these keys (absent ones left out)::

    {"time": "2026-03-01T12:00:00.123456Z", "level": "INFO", "logger": "sitemesh.worker",
     "message": "router ready at site eu1 (pid 42)", "service.name": "sitemesh-router",
     "site": "eu1", "role": "router", "task_id": "tk-1", "exc_info": "Traceback ..."}

``task_id`` is there when the record carries one (``log.info(..., extra={"task_id":
...})``); ``exc_info`` is the formatted exception of ``log.exception(...)``. Standard
library only: imported by every command, it must stay cheap.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Final, TextIO

if TYPE_CHECKING:
    from .config import Settings

TEXT_FORMAT: Final = "%(asctime)s %(levelname)s %(name)s %(message)s"
"""The ``text`` format (``logging`` ``%``-style)."""


class JsonFormatter(logging.Formatter):
    """One JSON object per record, on one line (see the module docstring for the keys).

    Args:
        service_name: the process's ``service.name`` (``sitemesh-router``), as its spans
            carry (:meth:`sitemesh.config.TelemetrySettings.service_for`).
        site: the process's site.
        role: its role; ``None``: the key is left out (a CLI command).
    """

    def __init__(self, service_name: str, site: str, role: str | None = None) -> None:
        super().__init__()
        self._fixed: dict[str, str] = {"service.name": service_name, "site": site}
        if role:
            self._fixed["role"] = role

    def format(self, record: logging.LogRecord) -> str:
        """``record`` as one JSON line (no line break inside: text is escaped)."""
        at = datetime.fromtimestamp(record.created, UTC)
        doc: dict[str, object] = {
            "time": at.isoformat(timespec="microseconds").replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            **self._fixed,
        }
        task_id = getattr(record, "task_id", None)
        if task_id is not None:
            doc["task_id"] = str(task_id)
        if record.exc_info:
            doc["exc_info"] = self.formatException(record.exc_info)
        elif record.exc_text:
            doc["exc_info"] = record.exc_text
        if record.stack_info:
            doc["stack_info"] = self.formatStack(record.stack_info)
        return json.dumps(doc, ensure_ascii=False, default=str)


def log_formatter(settings: Settings, role: str | None = None) -> logging.Formatter:
    """The formatter ``settings.log_format`` asks for, for a process of ``role``."""
    if settings.log_format == "json":
        return JsonFormatter(settings.telemetry.service_for(role), settings.site, role)
    return logging.Formatter(TEXT_FORMAT)


class _Handler(logging.StreamHandler[TextIO]):
    """The handler :func:`configure_logging` installs (told apart from others')."""


SSL_EOF_NOISE: Final = "returning true from eof_received() has no effect when using ssl"
"""What asyncio's SSL transport logs (WARNING, logger ``asyncio``) each time nats-py's
protocol sees a TLS peer close (every reconnect and every stop over TLS): it says
nothing about the application, so :class:`DropSslEofNoise` drops it."""


class DropSslEofNoise(logging.Filter):
    """Drops asyncio's :data:`SSL_EOF_NOISE` warning; every other record passes."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.name == "asyncio" and record.msg == SSL_EOF_NOISE)


def configure_logging(
    settings: Settings,
    *,
    role: str | None = None,
    level: int = logging.INFO,
    stream: TextIO | None = None,
) -> logging.Handler | None:
    """Log every record of ``level`` and above to ``stream`` in ``settings.log_format``.

    Like :func:`logging.basicConfig`, it leaves a root logger that has handlers of
    someone else's (an embedding program, pytest) alone; called again, it replaces
    the handler it installed before (a command that knows its role re-configures).

    Args:
        settings: ``log_format``, the site and the telemetry ``service_name``.
        role: the process's role (``router``, ``planner``); ``None``: a CLI command.
        level: the root logger's level (``logging.INFO``...).
        stream: where lines go; ``None``: ``sys.stderr`` (stdout may carry output).

    Returns:
        The installed handler; ``None`` when others' handlers were left in place.
    """
    root = logging.getLogger()
    ours = [h for h in root.handlers if isinstance(h, _Handler)]
    if len(ours) < len(root.handlers):
        return None
    for old in ours:
        root.removeHandler(old)
    handler = _Handler(stream if stream is not None else sys.stderr)
    handler.setFormatter(log_formatter(settings, role))
    handler.addFilter(DropSslEofNoise())
    root.addHandler(handler)
    root.setLevel(level)
    return handler


def logging_configured() -> bool:
    """Whether the root logger has any handler (ours or someone else's)."""
    return bool(logging.getLogger().handlers)
