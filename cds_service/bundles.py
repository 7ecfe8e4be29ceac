"""FHIR Bundles as the service reads and writes them: a searchset's shape and outcomes (is
it the whole answer?), its next page, and the transaction the demo and the tests load
patients with."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from fhir_mappings.fhirjson import as_dict, as_list, bundle_resources

FAILED_SEVERITIES = frozenset({"error", "fatal"})
# OperationOutcome issue codes that say the answer is not the whole answer.
INCOMPLETE_CODES = frozenset({"incomplete", "too-costly", "throttled", "transient"})
CUT_WORDS = ("truncat", "incomplete", "partial", "limit", "too many", "not all")

Scan = tuple[list[tuple[str, str, str]], int]  # outcome issues (severity, code, text), matches


def bundle_outcomes(scanned: Scan) -> list[tuple[str, str]]:
    """(severity, text) of each OperationOutcome issue in a searchset's outcome entries."""
    return [(severity, text) for severity, _, text in scanned[0]]


def scan(bundle: Mapping[str, Any]) -> Scan:
    """One pass over the entries: the outcome issues (severity, code, text) and the count
    of entries that answer the search (not outcomes, not includes: what ``total`` counts).
    A prefetch bundle may hold thousands of entries; most carry no ``search`` at all, so
    callers scan once and hand the result to ``bundle_outcomes`` and ``unusable``."""
    found = []
    matches = 0
    for entry in as_list(bundle.get("entry")):
        search = entry.get("search") if isinstance(entry, dict) else None
        mode = search.get("mode") if isinstance(search, dict) else None
        if mode is None or mode == "match":
            matches += 1
        elif mode == "outcome":
            found += _issues(entry)
    return found, matches


def _issues(entry: Mapping[str, Any]) -> list[tuple[str, str, str]]:
    found = []
    for issue in as_list(as_dict(entry.get("resource")).get("issue")):
        issue = as_dict(issue)
        text = issue.get("diagnostics") or as_dict(issue.get("details")).get("text") or ""
        found.append(
            (str(issue.get("severity", "error")), str(issue.get("code", "")), str(text)[:200])
        )
    return found


def malformed(bundle: Mapping[str, Any]) -> str | None:
    """Why a searchset's shape makes it unreadable, or None: a ``total`` that is not a
    count, or an ``entry`` that is not a list. Read leniently these would look like an
    empty answer, which the rules would take as "none on record"."""
    if "total" in bundle:
        total = bundle["total"]
        if not isinstance(total, int) or isinstance(total, bool) or total < 0:
            return "the search's total is not a count of results"
    if "entry" in bundle and not isinstance(bundle["entry"], list):
        return "the search's entry is not a list"
    return None


def unusable(bundle: Mapping[str, Any], scanned: Scan, totals: bool = True) -> str | None:
    """Why a searchset cannot stand for the whole answer, or None: a malformed shape, an
    outcome saying it failed or is incomplete (or a warning that results were cut), or a
    ``total`` larger than the entries it holds with no next page to read them from.
    ``scanned``: its ``scan``; ``totals=False`` leaves the total to the caller, who counts
    it over every page."""
    why = malformed(bundle)
    if why:
        return why
    issues, matches = scanned
    for severity, code, text in issues:
        cut = any(word in text.lower() for word in CUT_WORDS)
        if severity in FAILED_SEVERITIES or code in INCOMPLETE_CODES or cut:
            return f"the FHIR server said the results are not complete: {text or code}"
    total = bundle.get("total")
    if totals and isinstance(total, int) and total > matches and next_link(bundle) is None:
        return f"the search reported {total} results but {matches} were sent"
    return None


def next_link(bundle: Mapping[str, Any]) -> str | None:
    for link in as_list(bundle.get("link")):
        link = as_dict(link)
        if link.get("relation") == "next" and isinstance(link.get("url"), str):
            return link["url"]
    return None


def transaction(bundle: dict[str, Any]) -> dict[str, Any]:
    """One PUT per resource (each resource once), so ids stay what the samples say."""
    unique = {(r["resourceType"], r["id"]): r for r in bundle_resources(bundle) if r.get("id")}
    return {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {"resource": r, "request": {"method": "PUT", "url": f"{kind}/{rid}"}}
            for (kind, rid), r in unique.items()
        ],
    }
