"""Log lines in one format for every logger (ours, uvicorn's, apscheduler's): text or
JSON, times in RFC 3339 UTC."""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime

QUIET = ("apscheduler", "httpx", "httpcore", "kubernetes.client.rest")
"""Libraries that log every call or job run at INFO; theirs show only with --log-level debug."""


def _time(record: logging.LogRecord) -> str:
    moment = datetime.fromtimestamp(record.created, UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


class TextFormatter(logging.Formatter):
    """`2026-11-21T21:45:40.109Z WARNING scaleahead: message`, tracebacks below."""

    def format(self, record: logging.LogRecord) -> str:
        line = f"{_time(record)} {record.levelname} {record.name}: {record.getMessage()}"
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


FIELDS = ("rule", "series")
"""What a line is about, given by the caller as `extra=`: the rule's name and the
series' labels (an object), fields of their own in JSON so that a log pipeline can
filter on them."""


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, msg, the FIELDS a line has (and
    exception, if any)."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "time": _time(record),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for name in FIELDS:
            if hasattr(record, name):
                entry[name] = getattr(record, name)
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


_configured = ("info", "text")


def settings() -> tuple[str, str]:
    """The level and format last given to `configure` (for a process started from this one)."""
    return _configured


def configure(level: str = "info", fmt: str = "text") -> None:
    """Send every logger's records at `level` and above to stderr in format `fmt`
    ('text' or 'json'), replacing any handler set before."""
    global _configured
    _configured = (level, fmt)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logger = logging.getLogger(name)
        logger.handlers.clear()
        logger.propagate = True
    for name in QUIET:
        logging.getLogger(name).setLevel(max(logging.WARNING, root.level))
    # "skipped: maximum number of running instances reached" every interval while a job
    # waits on a hung Prometheus: our own lines say so once, and /livez watches progress.
    logging.getLogger("apscheduler.scheduler").setLevel(max(logging.ERROR, root.level))
