"""The code lists as FHIR R4 ValueSet resources, for a terminology team to review.

One ValueSet per concept (``urn:alpha1-cds:valueset:<domain>:<concept>``), each code with
its display; a prefix code (an ICD-10-CM category that stands for the codes below it) as
an ``is-a`` filter; a site's own codes (``site_codes``) marked with an extension. What the
service reads is exactly what these list: they are built from the same value sets.
"""

from __future__ import annotations

from importlib import metadata
from typing import Any

from . import terminology

URL = "urn:alpha1-cds:valueset"
SITE_EXTENSION = "urn:alpha1-cds:site-code"
DOMAINS = {
    "observations": terminology.observations,
    "conditions": terminology.conditions,
    "procedures": terminology.procedures,
    "immunizations": terminology.immunizations,
}


def value_sets() -> dict[str, Any]:
    """A FHIR ``Bundle`` (type collection) of every concept's ValueSet."""
    entries = [
        {"fullUrl": f"{URL}:{domain}:{concept.name}", "resource": _value_set(domain, concept)}
        for domain, loaded in DOMAINS.items()
        for concept in loaded().concepts.values()
        if concept.codes
    ]
    return {"resourceType": "Bundle", "type": "collection", "entry": entries}


def _value_set(domain: str, concept: terminology.Concept) -> dict[str, Any]:
    site = terminology.site_codes(f"{domain}.json", concept.name)
    includes: dict[str, dict[str, Any]] = {}
    for code in concept.codes:
        include = includes.setdefault(code.system, {"system": code.system})
        if code.prefix:
            include.setdefault("filter", []).append(
                {"property": "concept", "op": "is-a", "value": code.code}
            )
            continue
        entry: dict[str, Any] = {"code": code.code, "display": code.display}
        if (code.system, code.code) in site:
            entry["extension"] = [{"url": SITE_EXTENSION, "valueBoolean": True}]
        include.setdefault("concept", []).append(entry)
    return {
        "resourceType": "ValueSet",
        "id": f"{domain}-{concept.name}".replace("_", "-"),
        "url": f"{URL}:{domain}:{concept.name}",
        "version": metadata.version("alpha1-cds"),
        "name": "".join(part.title() for part in f"{domain}_{concept.name}".split("_")),
        "title": concept.display,
        "status": "active",
        "compose": {"include": list(includes.values())},
    }
