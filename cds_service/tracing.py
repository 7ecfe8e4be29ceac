"""Trace correlation: one request's id in every log line and on every FHIR call it makes.

An EHR or a gateway may send a W3C ``traceparent`` (Trace Context) and an ``X-Request-ID``.
Both are checked against their formats and kept for the request (a context variable, so
log lines from any function of the request carry them, and the FHIR calls made on pool
threads copy it). Without a usable ``X-Request-ID`` the service makes one and sends it
back, so an operator can find the log lines of a call an EHR analyst reports. A FHIR
call-back carries the request id and a ``traceparent`` with the caller's trace id and a
span id of this service's own (W3C: a participant forwards the trace, with itself as the
parent).
"""

from __future__ import annotations

import contextvars
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ParamSpec, Protocol, TypeVar

# W3C Trace Context, version 00: version-traceid-parentid-flags, lower-case hex; all-zero
# ids are invalid. A later version may append fields: its first four are read alike.
TRACEPARENT = re.compile(r"([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?")
REQUEST_ID = re.compile(r"[A-Za-z0-9._:@/+=-]{1,128}")
P = ParamSpec("P")
R = TypeVar("R")


@dataclass(frozen=True, slots=True)
class Trace:
    request_id: str
    trace_id: str | None = None
    flags: str = "00"

    def log_fields(self) -> dict[str, str]:
        return {"requestId": self.request_id} | (
            {"traceId": self.trace_id} if self.trace_id else {}
        )

    def outgoing(self) -> dict[str, str]:
        """Headers for a call this request makes: its id, and the trace continued."""
        headers = {"X-Request-ID": self.request_id}
        if self.trace_id:
            headers["traceparent"] = f"00-{self.trace_id}-{secrets.token_hex(8)}-{self.flags}"
        return headers


CURRENT: contextvars.ContextVar[Trace | None] = contextvars.ContextVar("trace", default=None)


class Headers(Protocol):
    def get(self, key: str, /) -> str | None: ...


def from_headers(headers: Headers) -> Trace:
    """The request's trace: its ``X-Request-ID`` when well formed (else a new id) and the
    trace id of a valid ``traceparent`` (else none)."""
    given = (headers.get("X-Request-ID") or "").strip()
    request_id = given if REQUEST_ID.fullmatch(given) else secrets.token_hex(16)
    match = TRACEPARENT.fullmatch((headers.get("traceparent") or "").strip())
    if match is None or match[1] == "ff" or set(match[2]) == {"0"} or set(match[3]) == {"0"}:
        return Trace(request_id)
    if match[1] == "00" and match[5]:
        return Trace(request_id)  # version 00 has exactly four fields
    return Trace(request_id, match[2], match[4])


def begin(trace: Trace) -> contextvars.Token[Trace | None]:
    return CURRENT.set(trace)


def end(token: contextvars.Token[Trace | None]) -> None:
    CURRENT.reset(token)


def current() -> Trace | None:
    return CURRENT.get()


def outgoing() -> dict[str, str]:
    trace = CURRENT.get()
    return trace.outgoing() if trace is not None else {}


def carried(function: Callable[P, R]) -> Callable[P, R]:
    """``function`` run in a copy of this context (for a pool thread): its log lines and
    calls carry this request's trace."""
    context = contextvars.copy_context()

    def run(*args: P.args, **kwargs: P.kwargs) -> R:
        return context.run(function, *args, **kwargs)

    return run


def log_fields() -> dict[str, Any]:
    trace = CURRENT.get()
    return trace.log_fields() if trace is not None else {}
