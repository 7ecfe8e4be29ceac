"""The audit trail: who was shown what, on which knowledge.

Each issued card is recorded with the hook call's context (the user and encounter as keyed
hashes, the client's ``iss`` and ``tenant``), the knowledge version it was decided on, and
a hash of what it said. Each hook call also gives one JSON line shaped as a FHIR R4
``AuditEvent`` (after IHE Basic Audit Log Patterns) for a SIEM. Neither holds a clear
identifier: patients, users and encounters appear only as HMAC-SHA256 hashes under the
service's patient-hash key, which the hospital holds and can recompute to find a person's
records. docs/operations.md says what is kept and for how long.
"""

from __future__ import annotations

import hashlib
from collections.abc import Collection, Iterable, Mapping
from datetime import UTC, datetime
from functools import cache
from importlib import metadata, resources
from typing import Any

import orjson

# Where the clinical knowledge lives: every file of these folders counts for its hash.
KNOWLEDGE = (("hooks", "data"), ("hooks", "words"), ("fhir_mappings", "data"))
KEY_SYSTEM = "urn:alpha1-cds:keyed-hash"  # identifiers that are keyed hashes, never clear
AUDIT_TYPE = {
    "system": "http://terminology.hl7.org/CodeSystem/audit-event-type",
    "code": "rest",
    "display": "RESTful Operation",
}
HOOK_SUBTYPE = "urn:alpha1-cds:hook"
# FHIR AuditEvent.outcome: 0 success, 4 minor failure (the request was refused), 8 serious
# failure (the service failed).
OUTCOMES = {2: "0", 4: "4", 5: "8"}


@cache
def knowledge_version() -> str:
    """The package version and a hash of every knowledge file (names and contents): two
    instances that decide alike show the same string, and any edit to a threshold, a code
    or a word changes it."""
    digest = hashlib.sha256()
    for package, folder in KNOWLEDGE:
        root = resources.files(package).joinpath(folder)
        for entry in sorted(root.iterdir(), key=lambda e: e.name):
            if entry.is_file() and entry.name.endswith(".json"):
                digest.update(f"{package}/{folder}/{entry.name}\n".encode())
                digest.update(entry.read_bytes())
    return f"{_version()}+{digest.hexdigest()[:12]}"


def _version() -> str:
    try:
        return metadata.version("alpha1-cds")
    except metadata.PackageNotFoundError:
        return "0+unknown"


def content_hash(card: Mapping[str, Any]) -> str:
    """SHA-256 of what the card said (its JSON with keys sorted, its uuids and references to
    them left out): the same words, buttons and links give the same hash, whichever call
    issued them."""
    uuids = {card.get("uuid"), *(s.get("uuid") for s in card.get("suggestions", []))}
    plain = _without(card, uuids - {None})
    return hashlib.sha256(orjson.dumps(plain, option=orjson.OPT_SORT_KEYS)).hexdigest()


def _without(value: Any, uuids: set[Any]) -> Any:
    if isinstance(value, dict):
        return {k: _without(v, uuids) for k, v in value.items() if k != "uuid"}
    if isinstance(value, list):
        return [_without(v, uuids) for v in value if not (isinstance(v, str) and v in uuids)]
    return value


def audit_event(
    *,
    hook: str,
    service: str,
    status: int,
    client: Mapping[str, str | None],
    patient_key: str | None,
    user_key: str | None,
    cards: Iterable[str],
    silent: Collection[str],
    request_id: str | None,
    recorded: datetime | None = None,
) -> dict[str, Any]:
    """One hook call as a FHIR R4 AuditEvent (JSON, for the log line ``audit``)."""
    requestor: dict[str, Any] = {
        "type": {"text": "CDS client (EHR)"},
        "who": {
            "identifier": {
                "system": "urn:alpha1-cds:client",
                "value": client.get("iss") or "unauthenticated",
            }
        },
        "requestor": user_key is None,
    }
    if client.get("tenant"):
        requestor["who"]["display"] = f"tenant {client['tenant']}"
    agents = [requestor]
    if user_key is not None:
        agents.append(
            {
                "type": {"text": "user"},
                "who": {"identifier": {"system": KEY_SYSTEM, "value": user_key}},
                "requestor": True,
            }
        )
    entities: list[dict[str, Any]] = []
    if patient_key is not None:
        entities.append(
            {
                "what": {"identifier": {"system": KEY_SYSTEM, "value": patient_key}},
                "type": {
                    "system": "http://terminology.hl7.org/CodeSystem/audit-entity-type",
                    "code": "1",
                    "display": "Person",
                },
                "role": {
                    "system": "http://terminology.hl7.org/CodeSystem/object-role",
                    "code": "1",
                    "display": "Patient",
                },
            }
        )
    entities += [
        {
            "what": {"identifier": {"system": "urn:alpha1-cds:card", "value": uuid}},
            "description": "card decided, not shown (silent)" if uuid in silent else "card shown",
        }
        for uuid in cards
    ]
    event: dict[str, Any] = {
        "resourceType": "AuditEvent",
        "type": AUDIT_TYPE,
        "subtype": [{"system": HOOK_SUBTYPE, "code": hook, "display": service}],
        "action": "E",
        "recorded": (recorded or datetime.now(UTC)).isoformat(timespec="milliseconds"),
        "outcome": OUTCOMES.get(status // 100, "8"),
        "agent": agents,
        "source": {"observer": {"display": f"alpha1-cds {knowledge_version()}"}},
    }
    if entities:
        event["entity"] = entities
    if request_id:
        event["extension"] = [{"url": "urn:alpha1-cds:request-id", "valueString": request_id}]
    return event
