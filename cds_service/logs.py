"""Structured (JSON-lines) logging that carries no secrets and no patient data.

Only what an operator needs travels: service, hookInstance, status, timings, topic codes,
counts. Callers pass those as keyword fields; nothing from a request body is ever logged.
"""

from __future__ import annotations

import logging
import sys
import time
from typing import Any

import orjson

from . import tracing

LOGGER = logging.getLogger("alpha1_cds")
LOGGER.addHandler(logging.NullHandler())  # silent until configure(): a library by default


def _stamp_trace(record: logging.LogRecord) -> bool:
    """The request's id and trace, taken when the line is logged (in the request's
    context), for every line of the request, whenever it is formatted."""
    record.trace = tracing.log_fields()
    return True


LOGGER.addFilter(_stamp_trace)


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
        entry: dict[str, Any] = {
            "time": f"{stamp}.{int(record.msecs):03d}Z",
            "level": record.levelname,
            "event": record.getMessage(),
        }
        entry.update(getattr(record, "trace", {}))  # the request's id and trace
        entry.update(getattr(record, "fields", {}))
        if record.exc_info and record.exc_info[0] is not None:
            # The exception type and where it happened; its message may quote input data.
            entry["error"] = record.exc_info[0].__name__
            entry["where"] = _where(record.exc_info[2])
        return orjson.dumps(entry, default=str).decode()


def _where(tb: Any) -> str:
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    if tb is None:
        return "?"
    return f"{tb.tb_frame.f_code.co_filename}:{tb.tb_lineno}"


def configure(level: str) -> None:
    """JSON lines on stderr for our logger; called by the CLI and WSGI entry points."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    LOGGER.handlers[:] = [handler]
    LOGGER.setLevel(level.upper())
    LOGGER.propagate = False
    # urllib3 logs each request URL at DEBUG; FHIR search URLs carry patient ids.
    logging.getLogger("urllib3").setLevel(logging.WARNING)


# granian's own lines (start, stop, worker failures) as JSON lines on stderr too.
GRANIAN_LOGGING: dict[str, Any] = {
    "formatters": {"generic": {"()": "cds_service.logs.JsonFormatter"}},
    "handlers": {
        "console": {
            "formatter": "generic",
            "class": "logging.StreamHandler",
            "stream": "ext://sys.stderr",
        },
        "access": {"class": "logging.NullHandler"},
    },
}


def event(name: str, level: int = logging.INFO, **fields: Any) -> None:
    LOGGER.log(level, name, extra={"fields": fields})
