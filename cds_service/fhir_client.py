"""Reads from the EHR's FHIR server with the bearer token the EHR handed over.

Each call has a timeout bounded by the hook call's deadline, which also bounds reading the
body (a socket read at a time), and a cap on its decoded size (``fhir_max_bytes``); Bundle
``next`` links are followed up to a page cap, and only while they stay on the same server,
so the token never leaves it. Failures are FetchErrors whose text is safe to return and
log: no token, no URL with patient identifiers, no response body.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date
from typing import Any
from urllib.parse import urljoin

import orjson
import requests
import urllib3

from fhir_mappings import Window
from fhir_mappings.fhirjson import bundle_resources

from . import tracing, urls
from .bundles import FAILED_SEVERITIES, bundle_outcomes, next_link, scan, unusable
from .metrics import metrics

NOT_FOUND = frozenset({404, 410})
READ_BYTES = 8192

_local = threading.local()


def _session() -> requests.Session:
    """One Session per thread: connection reuse without sharing a Session across threads."""
    session = getattr(_local, "session", None)
    if session is None:
        session = _local.session = requests.Session()
    return session


class FetchError(Exception):
    """A FHIR read that did not give usable data; the message is safe to show and log."""


@dataclass(slots=True)
class Fetched:
    resources: list[dict[str, Any]] = field(default_factory=list)
    pages: int = 0
    matches: int = 0
    notes: list[str] = field(default_factory=list)


# Why a call or a key failed, as a metric label: the first phrase of the reason found here
# names it (the reasons are written in this module and prefetch.py).
REASON_CODES = (
    ("another patient", "other-patient"),
    ("two different copies", "conflicting-copies"),
    ("max_resources", "too-many-resources"),
    ("pages", "too-many-pages"),
    ("deadline", "timeout"),
    ("in time", "timeout"),
    ("could not be reached", "unreachable"),
    ("answered HTTP", "upstream-status"),
    ("OperationOutcome", "upstream-error"),
    ("reported an error", "upstream-error"),
    ("cut short", "window-cut-short"),
    ("not JSON", "malformed"),
    ("not a FHIR", "malformed"),
    ("nested too deeply", "malformed"),
    ("larger than", "too-large"),
    ("not prefetched", "not-prefetched"),
)


def reason_code(why: str) -> str:
    return next((code for phrase, code in REASON_CODES if phrase in why), "other")


class FhirClient:
    """GETs against one FHIR base URL, under a deadline (a ``time.monotonic()`` value)."""

    def __init__(
        self,
        base: str,
        token: str | None,
        timeout: float,
        max_pages: int,
        max_bytes: int,
        max_resources: int,
    ) -> None:
        """The limits are the settings of the same names (``fhir_max_pages``,
        ``fhir_max_bytes``, ``max_resources``), declared there once."""
        self.base = base.rstrip("/") + "/"
        self.timeout = timeout
        self.max_pages = max_pages
        self.max_bytes = max_bytes
        self.max_resources = max_resources
        self.headers = {"Accept": "application/fhir+json, application/json"}
        if token:
            self.headers["Authorization"] = f"Bearer {token}"

    def read_all(
        self,
        path: str,
        deadline: float,
        resource_type: str = "",
        window: Window | None = None,
        today: date | None = None,
    ) -> Fetched:
        """A read (``Patient/1``) or a search followed through its pages.

        Anything but the whole answer is a FetchError: another type than was asked for,
        JSON that is not FHIR, an outcome saying the results are incomplete, a ``total``
        above what the pages held, or more pages than the cap. With a ``window`` (the
        newest results suffice, counted back from ``today``), pages are read only until the
        window holds."""
        today = today or date.today()
        result = Fetched()
        search = "?" in path
        body = self._get(urljoin(self.base, path), deadline, read=not search)
        if body is None:
            return result
        kind = body.get("resourceType")
        expected = "Bundle" if search else resource_type
        if kind != "OperationOutcome" and expected and kind != expected:
            shown = kind if isinstance(kind, str) else "JSON that is not a FHIR resource"
            raise FetchError(f"the FHIR server answered with {shown}, not {expected}")
        self._take(body, result)
        if window is not None and window.shortfall(result.resources, today) is None:
            return result  # the newest, reaching back far enough: the rest is not needed
        self.continue_pages(body, deadline, result, window, today)
        total = body.get("total")
        short = search and isinstance(total, int) and total > result.matches
        if short and (window is None or window.shortfall(result.resources, today)):
            raise FetchError(f"the search reported {total} results but {result.matches} were read")
        return result

    def continue_pages(
        self,
        bundle: Mapping[str, Any],
        deadline: float,
        result: Fetched,
        window: Window | None = None,
        today: date | None = None,
    ) -> Fetched:
        """Follow ``next`` links of a Bundle already in hand, adding to ``result``, until
        the last page or, with a ``window``, until the window holds."""
        url = next_link(bundle)
        while url is not None:
            if (
                window is not None
                and window.shortfall(result.resources, today or date.today()) is None
            ):
                return result
            if result.pages >= self.max_pages:
                raise FetchError(
                    f"the search has more than {self.max_pages} pages (fhir_max_pages); "
                    "the rest could not be read"
                )
            if not urls.within(url, self.base, allow_query=True):
                raise FetchError("a next link points outside the FHIR server; not followed")
            page = self._get(url, deadline, read=False)
            if page is None or page.get("resourceType") not in ("Bundle", "OperationOutcome"):
                raise FetchError("a next page of the search was not a Bundle")
            self._take(page, result)
            url = next_link(page)
        return result

    def _take(self, body: Mapping[str, Any], result: Fetched) -> None:
        result.pages += 1
        kind = body.get("resourceType")
        if kind == "OperationOutcome":
            raise FetchError("the FHIR server answered with an OperationOutcome")
        if kind != "Bundle":
            result.resources.append(dict(body))
            return
        scanned = scan(body)
        outcomes = bundle_outcomes(scanned)
        for severity, text in outcomes:
            if severity in FAILED_SEVERITIES:
                raise FetchError(f"the FHIR server reported an error: {text}".rstrip(": "))
        # Totals are checked at the end, over every page.
        why = unusable(body, scanned, totals=False)
        if why:
            raise FetchError(why)
        result.notes += [f"FHIR server note ({sev}): {text}".rstrip(": ") for sev, text in outcomes]
        result.matches += scanned[1]
        result.resources.extend(bundle_resources(body))
        if len(result.resources) > self.max_resources:
            raise FetchError(
                f"the search holds more than {self.max_resources} resources (max_resources)"
            )

    def _get(self, url: str, deadline: float, read: bool) -> dict[str, Any] | None:
        """One GET, counted and timed for /metrics by its outcome."""
        started, outcome = time.perf_counter(), "ok"
        try:
            body = self._call(url, deadline, read)
            outcome = "ok" if body is not None else "not-found"
            return body
        except FetchError as error:
            outcome = reason_code(str(error))
            raise
        finally:
            found = metrics()
            found.fhir_calls.labels(outcome).inc()
            found.fhir_seconds.observe(time.perf_counter() - started)

    def _call(self, url: str, deadline: float, read: bool) -> dict[str, Any] | None:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise FetchError("the deadline for FHIR calls passed")
        try:
            response = _session().get(
                url,
                headers={**self.headers, **tracing.outgoing()},
                timeout=min(self.timeout, remaining),
                allow_redirects=False,
                stream=True,
            )
        except requests.Timeout:
            raise FetchError("the FHIR server did not answer in time") from None
        except requests.RequestException as error:
            raise FetchError(
                f"the FHIR server could not be reached ({type(error).__name__})"
            ) from None
        with response:
            if read and response.status_code in NOT_FOUND:
                return None
            if response.status_code != 200:
                raise FetchError(f"the FHIR server answered HTTP {response.status_code}")
            content = self._read_body(response, deadline)
        try:
            body = orjson.loads(content)
        except orjson.JSONDecodeError as error:
            if "depth" in error.msg:
                raise FetchError("the FHIR server's answer is nested too deeply") from None
            raise FetchError("the FHIR server's answer is not JSON") from None
        if not isinstance(body, dict):
            raise FetchError("the FHIR server's answer is not a FHIR resource")
        return body

    def _read_body(self, response: requests.Response, deadline: float) -> bytes:
        """The decoded body, read a socket read at a time so that a server trickling bytes
        meets the deadline, and a compressed body cannot inflate past ``max_bytes``."""
        chunks, size = [], 0
        try:
            while True:
                if time.monotonic() > deadline:
                    raise FetchError("the FHIR server did not finish its answer in time")
                # 8 KiB compressed inflates to at most ~8 MiB: bounded before it is counted.
                chunk = response.raw.read1(READ_BYTES, decode_content=True)
                if not chunk:  # the end of the body
                    break
                size += len(chunk)
                if size > self.max_bytes:
                    raise FetchError(
                        f"the FHIR server's answer is larger than {self.max_bytes} bytes"
                    )
                chunks.append(chunk)
        except (requests.RequestException, urllib3.exceptions.HTTPError, OSError) as error:
            name = type(error).__name__
            raise FetchError(f"the FHIR server's answer was cut off ({name})") from None
        return b"".join(chunks)
