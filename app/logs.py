"""Logging, configured by the factory: one line per request, each tagged with its request id."""

import json
import logging
import sys
import time
from datetime import UTC, datetime

from flask import Flask, g, has_request_context

FORMAT = "%(asctime)s %(levelname)s [%(request_id)s] %(name)s: %(message)s"


class RequestIdFilter(logging.Filter):
    """Tags each record with its request's id (the access log passes its own in `extra`)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if "request_id" not in record.__dict__:
            record.request_id = g.get("request_id", "-") if has_request_context() else "-"
        return True


class TextFormatter(logging.Formatter):
    """The text format, with the timestamp's seconds formatted once per second rather than per line
    (time.strftime was a third of an access line's cost)."""

    def __init__(self):
        super().__init__(FORMAT)
        self._second = None
        self._stamp = ""

    def formatTime(self, record: logging.LogRecord, datefmt=None) -> str:  # noqa: N802 - logging's name
        second = int(record.created)
        if second != self._second:  # a race between threads only formats the same second twice
            self._stamp = time.strftime(self.default_time_format, self.converter(second))
            self._second = second
        return f"{self._stamp},{int(record.msecs):03d}"


# Fields the access log attaches to its records (see app.http), and the audit trail's record (app.services.audit).
_EXTRA_FIELDS = ("method", "path", "status", "duration_ms", "remote_addr", "audit")


class JsonFormatter(logging.Formatter):
    """One JSON object per line, for log shippers (LOG_FORMAT=json)."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "request_id": getattr(record, "request_id", "-"),
            "message": record.getMessage(),
        }
        entry.update({key: getattr(record, key) for key in _EXTRA_FIELDS if hasattr(record, key)})
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


class DropServerRequestLines(logging.Filter):
    """`flask run`: Werkzeug's own line per request repeats app.access (which has the request id and
    duration); keep one. The server's other messages (its address, errors) still show."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (isinstance(record.msg, str) and record.msg.rstrip().endswith('] "%s" %s %s'))


def make_formatter(log_format: str) -> logging.Formatter:
    return JsonFormatter() if log_format == "json" else TextFormatter()


def configure_logging(app: Flask) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(make_formatter(app.config["LOG_FORMAT"]))
    handler.addFilter(RequestIdFilter())
    logger = logging.getLogger("app")
    logger.handlers[:] = [handler]
    logger.setLevel(app.config["LOG_LEVEL"])
    logger.propagate = False
    server_log = logging.getLogger("werkzeug")
    if not any(isinstance(f, DropServerRequestLines) for f in server_log.filters):
        server_log.addFilter(DropServerRequestLines())
