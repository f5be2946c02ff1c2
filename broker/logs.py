"""Log setup of a node: one line per event on stderr, as text or as JSON.

The JSON form is for log shippers (Loki, Elasticsearch, CloudWatch): one
object per line with ``time`` (RFC 3339, UTC), ``level``, ``logger`` and
``message``, plus ``exception`` when a traceback was logged. The message is
the same text as in the text form; its ``key=value`` pairs are not split out.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime

__all__ = ["JsonFormatter", "configure_logging"]

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"


class JsonFormatter(logging.Formatter):
    """Formats each record as one JSON object on one line."""

    def format(self, record: logging.LogRecord) -> str:
        """The record as a JSON object (no newline inside: json escapes them)."""
        entry = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            entry["exception"] = record.exc_text
        return json.dumps(entry, ensure_ascii=False)


def configure_logging(level: str, log_format: str = "text") -> None:
    """Log to stderr at ``level``, as ``text`` or ``json`` lines.

    Args:
        level: a level name (``INFO``); checked by :mod:`broker.config`.
        log_format: ``text`` or ``json``.
    """
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        JsonFormatter() if log_format == "json" else logging.Formatter(TEXT_FORMAT)
    )
    logging.basicConfig(level=level, handlers=[handler], force=True)
    # websockets logs every refused handshake at INFO; ours say more.
    logging.getLogger("websockets").setLevel(max(logging.WARNING, logging.getLevelName(level)))
