"""Log lines in JSON: time, level, logger, msg, and what the line is about (rule,
series) only when the caller gave it."""

from __future__ import annotations

import json
import logging

from adapter.logs import JsonFormatter


def _record(**extra: object) -> logging.LogRecord:
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "hello %s", ("you",), None)
    record.__dict__.update(extra)
    return record


def test_a_line_without_fields_has_none():
    line = json.loads(JsonFormatter().format(_record()))
    assert line.keys() == {"time", "level", "logger", "msg"} and line["msg"] == "hello you"


def test_fields_are_json_values_of_their_own():
    labels = {"namespace": "shop", "service": "a"}
    line = json.loads(JsonFormatter().format(_record(rule="qps", series=labels, other=1)))
    assert line["rule"] == "qps" and line["series"] == labels
    assert "other" not in line  # only the documented fields
