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
from enum import Enum
from typing import Any
from urllib.parse import quote, urlsplit

from fhir_mappings import Query
from fhir_mappings.fhirjson import bundle_resources

from . import urls
from .config import Settings
from .errors import Issue, ServiceError
from .fhir_client import (
    FAILED_SEVERITIES,
    Fetched,
    FetchError,
    FhirClient,
    bundle_outcomes,
    next_link,
    scan,
    unusable,
)


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


def key_state(value: Any, query: Query, missing: bool) -> KeyState:
    """Classify one prefetch value (``missing``: the key was not sent at all)."""
    if missing:
        return KeyState.ABSENT
    if value is None:
        return KeyState.NO_DATA
    if not isinstance(value, Mapping):
        return KeyState.FAILED
    kind = value.get("resourceType")
    search = "?" in query.template
    if kind == "OperationOutcome":
        return KeyState.FAILED
    if kind == "Bundle" and search:
        scanned = scan(value)
        severities = {severity for severity, _ in bundle_outcomes(scanned)}
        if severities & FAILED_SEVERITIES:
            return KeyState.FAILED
        if unusable(value, scanned):
            return KeyState.FAILED
        return KeyState.ADVISORY if severities else KeyState.DATA  # Epic's "no results"
    # A read answered by its resource type; anything else is not what was asked for.
    return KeyState.DATA if not search and kind == query.resource_type else KeyState.FAILED


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
) -> Gathered:
    """The data of every key, or a 412 naming the keys that could not be had.

    ``arrival`` (``time.monotonic()``): when the request arrived; the deadline counts from
    it, so time spent waiting for a thread is part of the budget, not added to it.
    """
    deadline = (time.monotonic() if arrival is None else arrival) + settings.fhir_deadline
    prefetch = request.get("prefetch") or {}
    client, why_not = _client(request, settings)
    gathered = Gathered()
    to_fetch: dict[str, Query] = {}
    to_continue: dict[str, Mapping[str, Any]] = {}
    for key, query in queries.items():
        value = prefetch.get(key)
        state = key_state(value, query, missing=key not in prefetch)
        if state in (KeyState.ABSENT, KeyState.FAILED) or (
            state is KeyState.ADVISORY and client is not None
        ):
            to_fetch[key] = query
        elif state is not KeyState.NO_DATA:
            _use_prefetched(key, value, query, gathered, to_continue)

    if (to_fetch or to_continue) and client is None:
        reasons = dict.fromkeys(to_fetch, f"it is missing or failed, and {why_not}")
        reasons |= dict.fromkeys(to_continue, f"it has more pages, and {why_not}")
        raise _unobtainable(reasons)
    if client is None:  # nothing to fetch
        return gathered

    futures: dict[str, Future[Fetched]] = {
        key: executor.submit(
            client.read_all,
            render(query.template, request["context"]),
            deadline,
            query.resource_type,
        )
        for key, query in to_fetch.items()
    }
    futures |= {
        key: executor.submit(client.continue_pages, bundle, deadline, Fetched(pages=1))
        for key, bundle in to_continue.items()
    }
    _collect(futures, deadline, gathered)
    if len(gathered.resources) > settings.max_resources:  # fetched and sent, all keys together
        why = f"together the data hold more than {settings.max_resources} resources"
        raise _unobtainable(dict.fromkeys(futures, f"{why} (max_resources)"))
    gathered.fetched = sorted(to_fetch)
    return gathered


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


def _use_prefetched(
    key: str,
    value: Any,
    query: Query,
    gathered: Gathered,
    to_continue: dict[str, Mapping[str, Any]],
) -> None:
    if value.get("resourceType") != "Bundle":
        gathered.resources.append(dict(value))
        return
    gathered.resources.extend(bundle_resources(value))
    if next_link(value) is not None:
        to_continue[key] = value


def _collect(
    futures: Mapping[str, Future[Fetched]],
    deadline: float,
    gathered: Gathered,
) -> None:
    """Wait for every fetch until the deadline; any failure fails the whole call with 412."""
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
        gathered.resources.extend(fetched.resources)
        gathered.notes.extend(f"{key}: {note}" for note in fetched.notes)
    if failures:
        raise _unobtainable(failures)


def _unobtainable(reasons: Mapping[str, str]) -> ServiceError:
    issues = [
        Issue(
            "incomplete",
            f"Required data '{key}' could not be obtained: {why}",
            f"prefetch.{key}",
        )
        for key, why in sorted(reasons.items())
    ]
    return ServiceError(412, issues)
