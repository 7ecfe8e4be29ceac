"""Gathering a patient's data: the per-key prefetch state machine (CDS Hooks 2.0 "Prefetch").

For each prefetch key a service declares:

- present with data: use it (and follow its ``next`` links, if any);
- present with ``null``: the EHR has no such data; nothing is fetched;
- an OperationOutcome, or a searchset with error/fatal outcome entries: fetch it again;
- a searchset with only information/warning outcome entries (Epic's "no results"): fetch
  it again when a FHIR server is given, else use its entries;
- absent: fetch it from ``fhirServer`` with the ``fhirAuthorization`` bearer token.

Fetches run in parallel, each with a timeout, all under one deadline. Data that cannot be
had answers 412 with an OperationOutcome naming each key and why: every key is needed,
because a missing list would let a rule claim "not on record" wrongly.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from concurrent.futures import Executor, Future, wait
from dataclasses import dataclass, field
from datetime import date
from enum import Enum
from typing import Any
from urllib.parse import quote, urlsplit

from fhir_mappings import Query
from fhir_mappings.fhirjson import bundle_resources, names_other_patient

from . import tracing, urls
from .bundles import FAILED_SEVERITIES, Scan, bundle_outcomes, next_link, scan, unusable
from .config import Settings
from .errors import Issue, ServiceError
from .fhir_client import Fetched, FetchError, FhirClient, reason_code
from .metrics import metrics


class KeyState(Enum):
    DATA = "data"
    NO_DATA = "null"
    FAILED = "failed"
    ADVISORY = "advisory"
    ABSENT = "absent"


@dataclass(slots=True)
class Gathered:
    """All resources for one hook call, and what may be missing from them."""

    resources: list[dict[str, Any]] = field(default_factory=list)
    incomplete: set[str] = field(default_factory=set)
    notes: list[str] = field(default_factory=list)
    fetched: list[str] = field(default_factory=list)


def key_state(
    value: Any, query: Query, missing: bool, today: date | None = None
) -> tuple[KeyState, str]:
    """Classify one prefetch value (``missing``: the key was not sent at all), with why a
    FAILED value cannot be used, in words safe to return and log. ``today``: the date a
    window's span is counted back from (the server's date by default)."""
    today = today or date.today()
    if missing:
        return KeyState.ABSENT, "it was not prefetched"
    if value is None:
        return KeyState.NO_DATA, ""
    if not isinstance(value, Mapping):
        return KeyState.FAILED, "the prefetched value is not a FHIR resource"
    kind = value.get("resourceType")
    search = "?" in query.template
    if kind == "OperationOutcome":
        return KeyState.FAILED, "the EHR prefetched an OperationOutcome"
    if kind == "Bundle" and search:
        scanned = scan(value)
        severities = {severity for severity, _ in bundle_outcomes(scanned)}
        if severities & FAILED_SEVERITIES:
            return KeyState.FAILED, "the prefetched search reported an error"
        # A newest-first window asks for a truncated answer: its total is judged by the window.
        why = unusable(value, scanned, totals=query.window is None) or _short_window(
            value, scanned, query, today
        )
        if why:
            return KeyState.FAILED, f"in the prefetch, {why}"
        return (KeyState.ADVISORY if severities else KeyState.DATA), ""  # Epic's "no results"
    # A read answered by its resource type; anything else is not what was asked for.
    if not search and kind == query.resource_type:
        return KeyState.DATA, ""
    shown = kind[:40] if isinstance(kind, str) and kind else "JSON"  # never echoed at length
    return KeyState.FAILED, f"the prefetch holds {shown} where {query.resource_type} was asked"


def truncated(bundle: Mapping[str, Any], scanned: Scan) -> bool:
    """More results exist than the page holds: a next link, or a total above its matches."""
    total = bundle.get("total")
    return next_link(bundle) is not None or (isinstance(total, int) and total > scanned[1])


def _short_window(
    bundle: Mapping[str, Any], scanned: Scan, query: Query, today: date
) -> str | None:
    """Why a truncated answer to a newest-first key cannot stand (None: it can, or it is
    not truncated, or the key needs every result and ``unusable`` judged it)."""
    if query.window is None or not truncated(bundle, scanned):
        return None
    why = query.window.shortfall(bundle_resources(bundle), today)
    return f"the search was cut short and {why}" if why else None


def render(template: str, context: Mapping[str, Any]) -> str:
    """Fill ``{{context.x}}`` tokens with URL-encoded root-level context values."""
    text = template
    for name, value in context.items():
        token = f"{{{{context.{name}}}}}"
        if token in text and isinstance(value, str | int):
            text = text.replace(token, quote(str(value), safe=""))
    return text


def gather(
    request: Mapping[str, Any],
    queries: Mapping[str, Query],
    settings: Settings,
    executor: Executor,
    arrival: float | None = None,
    today: date | None = None,
) -> Gathered:
    """The data of every key, or a 412 naming the keys that could not be had.

    ``arrival`` (``time.monotonic()``): when the request arrived; the deadline counts from
    it, so time spent waiting for a thread is part of the budget, not added to it.
    ``today``: the date the rules judge on, from which a window's span is counted back.
    """
    today = today or date.today()
    deadline = (time.monotonic() if arrival is None else arrival) + settings.fhir_deadline
    prefetch = request.get("prefetch") or {}
    patient_id = str(request["context"].get("patientId", ""))
    client, why_not = _client(request, settings)
    gathered = Gathered()
    to_fetch: dict[str, Query] = {}
    why_fetch: dict[str, str] = {}
    to_continue: dict[str, Mapping[str, Any]] = {}
    sources: dict[str, list[dict[str, Any]]] = {}
    for key, query in queries.items():
        value: Any = prefetch.get(key)
        state, why = key_state(value, query, missing=key not in prefetch, today=today)
        if state in (KeyState.DATA, KeyState.ADVISORY):
            resources = _resources(value)
            why = _another_patient(resources, patient_id, "prefetched")
            if why:
                state = KeyState.FAILED
        if state in (KeyState.ABSENT, KeyState.FAILED) or (
            state is KeyState.ADVISORY and client is not None
        ):
            to_fetch[key] = query
            why_fetch[key] = why or "the EHR's search gave only advisory outcomes"
        elif state is not KeyState.NO_DATA:
            sources[key] = resources
            if next_link(value) is not None and query.window is None:
                to_continue[key] = value  # a window key that got here holds what it needs

    if (to_fetch or to_continue) and client is None:
        reasons = {key: f"{why}, and {why_not}" for key, why in why_fetch.items()}
        reasons |= dict.fromkeys(to_continue, f"it has more pages, and {why_not}")
        raise _unobtainable(reasons)
    if client is not None:
        futures: dict[str, Future[Fetched]] = {
            key: executor.submit(
                tracing.carried(client.read_all),
                render(query.template, request["context"]),
                deadline,
                query.resource_type,
                query.window,
                today,
            )
            for key, query in to_fetch.items()
        }
        futures |= {
            key: executor.submit(
                tracing.carried(client.continue_pages), bundle, deadline, Fetched(pages=1)
            )
            for key, bundle in to_continue.items()
        }
        _collect(futures, deadline, gathered, sources, patient_id)
        gathered.fetched = sorted(to_fetch)
    _check_copies(sources)
    for resources in sources.values():
        gathered.resources.extend(resources)
    called = [*to_fetch, *to_continue]  # prefetch alone is bounded by the request's size check
    if called and len(gathered.resources) > settings.max_resources:
        why = f"together the data hold more than {settings.max_resources} resources"
        raise _unobtainable(dict.fromkeys(called, f"{why} (max_resources)"))
    return gathered


def _resources(value: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The resources of one prefetched value: a read's resource, or a searchset's entries."""
    if value.get("resourceType") != "Bundle":
        return [dict(value)]
    return list(bundle_resources(value))


def _another_patient(resources: list[dict[str, Any]], patient_id: str, how: str) -> str:
    """Why an answer cannot stand for this patient's record: some of its resources are
    another patient's (a merge, or a server that ignored the patient parameter). Dropping
    them would leave the key looking empty, which the rules would read as "none on
    record", so the whole answer is refused."""
    others = sum(1 for r in resources if names_other_patient(r, patient_id))
    if not others:
        return ""
    return f"the {how} answer holds {others} of {len(resources)} resources of another patient"


def _check_copies(sources: Mapping[str, list[dict[str, Any]]]) -> None:
    """412 for two copies of one resource (type and id) that differ beyond ``meta``.

    Pages and keys may overlap, and identical copies are one resource. Copies that differ
    cannot both be the record: keeping the first would let a benign copy hide an
    anaphylaxis, so the keys that hold them cannot be had."""
    seen: dict[tuple[str, str], tuple[str, dict[str, Any]]] = {}
    conflicts: dict[str, str] = {}
    for key, resources in sources.items():
        for resource in resources:
            rid = resource.get("id")
            if not isinstance(rid, str):
                continue
            ident = (resource["resourceType"], rid)
            first = seen.setdefault(ident, (key, resource))
            if first[1] is resource or same_resource(first[1], resource):
                continue
            why = f"it holds two different copies of one {ident[0]}"
            conflicts[key] = conflicts[first[0]] = why
    if conflicts:
        raise _unobtainable(conflicts)


def same_resource(one: Mapping[str, Any], other: Mapping[str, Any]) -> bool:
    """The same resource content, ``meta`` (versionId, lastUpdated, tags) apart."""
    if one == other:
        return True
    return {k: v for k, v in one.items() if k != "meta"} == {
        k: v for k, v in other.items() if k != "meta"
    }


def _client(request: Mapping[str, Any], settings: Settings) -> tuple[FhirClient | None, str]:
    """A client for the request's fhirServer, or None and why not: there is none, or it may
    not receive the access token (not https, or not on the allowlist)."""
    server = request.get("fhirServer")
    if not server:
        return None, "no fhirServer was given"
    why = server_problem(server, settings)
    if why:
        return None, f"{why}; nothing was fetched and no token was sent"
    token = (request.get("fhirAuthorization") or {}).get("access_token")
    client = FhirClient(
        server,
        token,
        settings.fhir_timeout,
        settings.fhir_max_pages,
        settings.fhir_max_bytes,
        settings.max_resources,
    )
    return client, ""


def server_problem(server: str, settings: Settings) -> str | None:
    """Why the EHR's access token may not go to ``server``, or None when it may.

    https below an allowlisted base (``*``: any https server); http only on a loopback
    address, when it is explicitly allowlisted or auth is off (development)."""
    why = urls.problem(server)
    if why:
        return f"the fhirServer {why}"
    parts = urlsplit(server)
    allowlist = settings.fhir_allowed_servers
    listed = any(urls.within(server, base) for base in allowlist if base != "*")
    if parts.scheme == "https":
        return None if listed or "*" in allowlist else "the fhirServer is not on the allowlist"
    if not urls.is_loopback(parts.hostname or ""):
        return "the fhirServer is http on a host that is not loopback (https is required)"
    if listed or not settings.auth_required:
        return None
    return "the fhirServer is http on loopback but not on the allowlist"


def _collect(
    futures: Mapping[str, Future[Fetched]],
    deadline: float,
    gathered: Gathered,
    sources: dict[str, list[dict[str, Any]]],
    patient_id: str,
) -> None:
    """Wait for every fetch until the deadline; any failure fails the whole call with 412.
    Each key's fetched resources join ``sources`` (after what was prefetched for it)."""
    wait(futures.values(), timeout=max(0.0, deadline - time.monotonic()))
    failures: dict[str, str] = {}
    for key, future in futures.items():
        if not future.done():
            failures[key] = "the FHIR server did not answer before the deadline"
            future.cancel()
            continue
        try:
            fetched = future.result()
        except FetchError as error:
            failures[key] = str(error)
            continue
        why = _another_patient(fetched.resources, patient_id, "fetched")
        if why:
            failures[key] = why
            continue
        sources.setdefault(key, []).extend(fetched.resources)
        gathered.notes.extend(f"{key}: {note}" for note in fetched.notes)
    if failures:
        raise _unobtainable(failures)


def _unobtainable(reasons: Mapping[str, str]) -> ServiceError:
    counted = metrics().prefetch_412
    for key, why in reasons.items():
        counted.labels(key, reason_code(why)).inc()
    issues = [
        Issue(
            "incomplete",
            f"Required data '{key}' could not be obtained: {why}",
            f"prefetch.{key}",
        )
        for key, why in sorted(reasons.items())
    ]
    return ServiceError(412, issues)
