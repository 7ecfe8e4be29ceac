"""Small, forgiving readers for FHIR R4 JSON.

Real EHR data is ragged: fields missing, lists where one value was expected, ids as
``Patient/x``, absolute URLs or ``urn:uuid``. These helpers never raise on shape; they
answer None or an empty tuple instead, so mapping code can stay linear.

Parsed JSON objects are plain ``dict``s: checking ``dict`` rather than the ``Mapping`` ABC
keeps these checks cheap on the mapping's hot path.

"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from datetime import date, datetime
from typing import Any

Json = Mapping[str, Any]
# isinstance with a tuple: ``int | float`` builds a union object at every call (2.7x slower).
NUMBER = (int, float)


def as_dict(value: Any) -> Json:
    return value if isinstance(value, dict) else {}


def as_list(value: Any) -> list[Any]:
    if isinstance(value, list):
        return value
    return [] if value is None else [value]


def codings(concept: Any) -> list[Json]:
    """The Codings of a CodeableConcept (dicts only)."""
    return [c for c in as_list(as_dict(concept).get("coding")) if isinstance(c, dict)]


def first_code(concept: Any, system: str) -> str | None:
    for coding in codings(concept):
        if coding.get("system") == system and isinstance(coding.get("code"), str):
            return coding["code"]
    return None


def concept_text(concept: Any) -> str | None:
    """What a clinician would read: the text, else the first display, else a code."""
    concept = as_dict(concept)
    if isinstance(concept.get("text"), str) and concept["text"].strip():
        return concept["text"].strip()
    for coding in codings(concept):
        if isinstance(coding.get("display"), str) and coding["display"].strip():
            return coding["display"].strip()
    for coding in codings(concept):
        if isinstance(coding.get("code"), str):
            return coding["code"]
    return None


def parse_date(value: Any) -> date | None:
    """A FHIR date, dateTime or instant as a calendar date; partial dates take the 1st."""
    if not isinstance(value, str) or len(value) < 4:
        return None
    text = value.strip()
    try:
        if len(text) == 4:
            return date(int(text), 1, 1)
        if len(text) == 7:
            return date(int(text[:4]), int(text[5:7]), 1)
        if len(text) == 10:
            return date.fromisoformat(text)
        return datetime.fromisoformat(text.replace("Z", "+00:00")).date()
    except ValueError:
        return None


DATE_FIELDS = (
    "effectiveDateTime",
    "onsetDateTime",
    "performedDateTime",
    "occurrenceDateTime",
    "authoredOn",
    "recordedDate",
    "dateAsserted",
    "date",
    "issued",
)
PERIOD_FIELDS = ("effectivePeriod", "performedPeriod", "onsetPeriod")


def clinical_date(resource: Json) -> date | None:
    """The date a resource is about: the first date field present, else a period's start.
    Fields absent are skipped without parsing (this runs once per resource)."""
    for name in DATE_FIELDS:
        value = resource.get(name)
        if value is not None and (when := parse_date(value)):
            return when
    for name in PERIOD_FIELDS:
        if when := parse_date(as_dict(resource.get(name)).get("start")):
            return when
    return None


def reference_id(reference: Any, resource_type: str) -> str | None:
    """The id in a reference to ``resource_type`` (relative or absolute), else None."""
    ref = as_dict(reference).get("reference")
    if not isinstance(ref, str):
        return None
    parts = ref.split("/_history/")[0].rstrip("/").split("/")
    if len(parts) >= 2 and parts[-2] == resource_type:
        return parts[-1]
    return None


def names_other_patient(resource: Json, patient_id: str) -> bool:
    """Whether ``resource`` is about a Patient other than ``patient_id``: a Patient with
    another id, or a ``subject`` / ``patient`` reference to another Patient (relative or
    absolute). A reference that names no Patient (a urn:uuid, a Group) counts as neither."""
    if resource.get("resourceType") == "Patient":
        rid = resource.get("id")
        return isinstance(rid, str) and rid != patient_id
    subject = resource.get("subject")
    if isinstance(subject, dict) and subject.get("reference") == f"Patient/{patient_id}":
        return False  # the usual case, without parsing the reference
    for name in ("subject", "patient"):
        other = reference_id(resource.get(name), "Patient")
        if other is not None:
            return other != patient_id
    return False


def status_code(resource: Json, field: str) -> str | None:
    """A status held as a code (Observation.status) or CodeableConcept (Condition)."""
    value = resource.get(field)
    if isinstance(value, str):
        return value
    for coding in codings(value):
        if isinstance(coding.get("code"), str):
            return coding["code"]
    return None


def bundle_resources(bundle: Json) -> Iterator[dict[str, Any]]:
    """Resources of a Bundle's entries, skipping search outcome entries."""
    for entry in as_list(bundle.get("entry")):
        if not isinstance(entry, dict):
            continue
        search = entry.get("search")
        if isinstance(search, dict) and search.get("mode") == "outcome":
            continue
        resource = entry.get("resource")
        if isinstance(resource, dict) and isinstance(resource.get("resourceType"), str):
            yield resource
