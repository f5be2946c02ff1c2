"""broker.logs: ``--log-format json`` writes one JSON object per line."""

from __future__ import annotations

import json
import logging
import sys

from broker.logs import JsonFormatter


def record(message: str, *args: object, exc: bool = False) -> logging.LogRecord:
    exc_info = None
    if exc:
        try:
            raise RuntimeError("boom")
        except RuntimeError:
            exc_info = sys.exc_info()
    return logging.LogRecord("broker.server", logging.WARNING, __file__, 1, message, args, exc_info)


def test_json_line_has_time_level_logger_and_message() -> None:
    line = JsonFormatter().format(record("node %s listening on port %d", "n-1", 8765))

    entry = json.loads(line)
    assert entry.keys() == {"time", "level", "logger", "message"}
    assert (entry["level"], entry["logger"]) == ("WARNING", "broker.server")
    assert entry["message"] == "node n-1 listening on port 8765"
    assert entry["time"].endswith("+00:00")


def test_a_multiline_message_stays_on_one_line() -> None:
    line = JsonFormatter().format(record("first\nsecond"))

    assert "\n" not in line
    assert json.loads(line)["message"] == "first\nsecond"


def test_a_logged_traceback_rides_in_the_exception_field() -> None:
    line = JsonFormatter().format(record("failed", exc=True))

    assert "\n" not in line
    assert "RuntimeError: boom" in json.loads(line)["exception"]
