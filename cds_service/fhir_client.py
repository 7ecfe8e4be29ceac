"""Reads from the EHR's FHIR server with the bearer token the EHR handed over.

Each call has a timeout bounded by the hook call's deadline; Bundle ``next`` links are
followed up to a page cap, and only while they stay on the same server, so the token never
leaves it. Failures are FetchErrors whose text is safe to return and log: no token, no URL
with patient identifiers, no response body.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urljoin

import requests

from fhir_mappings.fhirjson import as_dict, as_list, bundle_resources

FAILED_SEVERITIES = frozenset({"error", "fatal"})
NOT_FOUND = frozenset({404, 410})

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
    truncated: bool = False
    notes: list[str] = field(default_factory=list)


def bundle_outcomes(bundle: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(severity, text) of each OperationOutcome issue in a searchset's outcome entries."""
    found = []
    for entry in as_list(bundle.get("entry")):
        entry = as_dict(entry)
        if as_dict(entry.get("search")).get("mode") != "outcome":
            continue
        for issue in as_list(as_dict(entry.get("resource")).get("issue")):
            issue = as_dict(issue)
            text = issue.get("diagnostics") or as_dict(issue.get("details")).get("text") or ""
            found.append((str(issue.get("severity", "error")), str(text)[:200]))
    return found


def next_link(bundle: Mapping[str, Any]) -> str | None:
    for link in as_list(bundle.get("link")):
        link = as_dict(link)
        if link.get("relation") == "next" and isinstance(link.get("url"), str):
            return link["url"]
    return None


class FhirClient:
    """GETs against one FHIR base URL, under a deadline (a ``time.monotonic()`` value)."""

    def __init__(self, base: str, token: str | None, timeout: float, max_pages: int) -> None:
        self.base = base.rstrip("/") + "/"
        self.timeout = timeout
        self.max_pages = max_pages
        self.headers = {"Accept": "application/fhir+json, application/json"}
        if token:
            self.headers["Authorization"] = f"Bearer {token}"

    def read_all(self, path: str, deadline: float) -> Fetched:
        """A read (``Patient/1``) or a search followed through its pages."""
        result = Fetched()
        body = self._get(urljoin(self.base, path), deadline, read=("?" not in path))
        if body is None:
            return result
        self._take(body, result)
        return self.continue_pages(body, deadline, result)

    def continue_pages(
        self, bundle: Mapping[str, Any], deadline: float, result: Fetched
    ) -> Fetched:
        """Follow ``next`` links of a Bundle already in hand, adding to ``result``."""
        url = next_link(bundle)
        while url is not None:
            if result.pages >= self.max_pages:
                result.truncated = True
                result.notes.append(f"stopped after {self.max_pages} pages")
                break
            if not url.startswith(self.base):
                raise FetchError("a next link points outside the FHIR server; not followed")
            page = self._get(url, deadline, read=False)
            if page is None:
                raise FetchError("a next page was not found")
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
        for severity, text in bundle_outcomes(body):
            if severity in FAILED_SEVERITIES:
                raise FetchError(f"the FHIR server reported an error: {text}".rstrip(": "))
            result.notes.append(f"FHIR server note: {text}".rstrip(": "))
        result.resources.extend(bundle_resources(body))

    def _get(self, url: str, deadline: float, read: bool) -> dict[str, Any] | None:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise FetchError("the deadline for FHIR calls passed")
        try:
            response = _session().get(
                url,
                headers=self.headers,
                timeout=min(self.timeout, remaining),
                allow_redirects=False,
            )
        except requests.Timeout:
            raise FetchError("the FHIR server did not answer in time") from None
        except requests.RequestException as error:
            raise FetchError(
                f"the FHIR server could not be reached ({type(error).__name__})"
            ) from None
        if read and response.status_code in NOT_FOUND:
            return None
        if response.status_code != 200:
            raise FetchError(f"the FHIR server answered HTTP {response.status_code}")
        try:
            body = response.json()
        except ValueError:
            raise FetchError("the FHIR server's answer is not JSON") from None
        if not isinstance(body, dict):
            raise FetchError("the FHIR server's answer is not a FHIR resource")
        return body
