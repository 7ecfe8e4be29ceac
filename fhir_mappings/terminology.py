"""Value sets loaded once from the JSON files in ``data/``.

Codes live in those files, each with its display and source, so that a reviewer can check
every code against the reference in one place; this module only indexes them.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

from .fhirjson import codings as codings_of

LOINC = "http://loinc.org"
SNOMED = "http://snomed.info/sct"
ICD10CM = "http://hl7.org/fhir/sid/icd-10-cm"
UCUM = "http://unitsofmeasure.org"
MEMO_LIMIT = 50_000
_SYSTEM_TYPES = (str, type(None))  # a tuple: ``str | None`` is rebuilt at each call


@dataclass(frozen=True, slots=True)
class Code:
    system: str
    code: str
    display: str
    prefix: bool = False
    # For a prefix code: the codes below it, named so that a search can ask for them.
    search: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Concept:
    name: str
    display: str
    codes: tuple[Code, ...]
    group: str | None = None


# A site's own codes (fhir_mappings.site): data file -> concept -> extra code entries.
_OVERLAY: dict[str, dict[str, list[dict[str, Any]]]] = {}


def load_data(name: str, overlay: bool = True) -> dict[str, Any]:
    """A data file of this package, without its ``_about`` notes; with the site's codes
    added to their concepts unless ``overlay`` is False."""
    return _load(name, overlay)


def _load(name: str, overlay: bool = True) -> dict[str, Any]:
    text = resources.files("fhir_mappings").joinpath("data", name).read_text(encoding="utf-8")
    data = {key: value for key, value in json.loads(text).items() if not key.startswith("_")}
    for concept, extra in (_OVERLAY.get(name, {}) if overlay else {}).items():
        data[concept] = {**data[concept], "codes": [*data[concept].get("codes", ()), *extra]}
    return data


def overlay() -> dict[str, dict[str, list[dict[str, Any]]]]:
    return _OVERLAY


def set_overlay(files: dict[str, dict[str, list[dict[str, Any]]]]) -> None:
    """Use the site's codes from now on: the value sets are indexed again."""
    global _OVERLAY
    _OVERLAY = files
    for loaded in (conditions, observations, procedures, immunizations):
        loaded.cache_clear()


def site_codes(name: str, concept: str) -> set[tuple[str, str]]:
    """(system, code) of the site's own codes of a concept in data file ``name``."""
    return {(c["system"], c["code"]) for c in _OVERLAY.get(name, {}).get(concept, ())}


@cache
def _system_aliases() -> dict[str, str]:
    aliases = {}
    for canonical, others in _load("systems.json").items():
        aliases[canonical] = canonical
        aliases.update(dict.fromkeys(others, canonical))
    return aliases


def canonical_system(system: str | None) -> str | None:
    """The canonical URI for a code system, resolving the OIDs some EHRs send."""
    if not system:
        return None
    return _system_aliases().get(system.rstrip("/"), system)


def _normalise(system: str | None, code: str) -> str:
    """ICD-10-CM codes arrive with and without the dot; compare them without it."""
    code = code.strip()
    return code.replace(".", "").upper() if system == ICD10CM else code


class ValueSets:
    """Concepts of one domain, indexed by (system, code) for constant-time lookup."""

    def __init__(self, data: Mapping[str, Any], default_system: str | None = None) -> None:
        self.concepts: dict[str, Concept] = {}
        self._exact: dict[tuple[str, str], list[str]] = {}
        self._prefixes: list[tuple[str, str, str]] = []
        self._memo: dict[tuple[Any, Any], tuple[str, ...]] = {}
        for name, entry in data.items():
            codes = tuple(
                Code(
                    system=c.get("system", default_system),
                    code=c["code"],
                    display=c["display"],
                    prefix=c.get("prefix", False),
                    search=tuple(c.get("search", ())),
                )
                for c in entry.get("codes", ())
            )
            self.concepts[name] = Concept(name, entry["display"], codes, entry.get("group"))
            for code in codes:
                key = (code.system, _normalise(code.system, code.code))
                if code.prefix:
                    self._prefixes.append((*key, name))
                else:
                    self._exact.setdefault(key, []).append(name)

    def concepts_of(self, coding: Mapping[str, Any]) -> tuple[str, ...]:
        """Every concept a single Coding belongs to (a code may serve two, as T86.812 does)."""
        key = (coding.get("system"), coding.get("code"))
        if not isinstance(key[1], str) or not isinstance(key[0], _SYSTEM_TYPES):
            return ()
        found = self._memo.get(key)
        if found is None:
            found = self._lookup(key[0], key[1])
            if len(self._memo) < MEMO_LIMIT:  # bounded: codes come from untrusted input
                self._memo[key] = found
        return found

    def _lookup(self, raw_system: str | None, code: str) -> tuple[str, ...]:
        system = canonical_system(raw_system)
        if not system:
            return ()
        key = _normalise(system, code)
        found = list(self._exact.get((system, key), ()))
        found += [
            name
            for prefix_system, prefix, name in self._prefixes
            if system == prefix_system and key.startswith(prefix)
        ]
        return tuple(found)

    def concepts_named_by(self, concept: Any) -> set[str]:
        """Every concept named by a CodeableConcept as received (any shape). Runs once per
        resource: the usual single Coding is looked up without building a list first."""
        found = concept.get("coding") if type(concept) is dict else None
        if type(found) is list and len(found) == 1 and type(found[0]) is dict:
            return set(self.concepts_of(found[0]))
        return self.concepts_in(codings_of(concept))

    def concepts_in(self, codings: Iterable[Mapping[str, Any]]) -> set[str]:
        """Every concept named by any of the codings of a CodeableConcept."""
        return {name for coding in codings for name in self.concepts_of(coding)}

    def codes(self, *names: str) -> list[Code]:
        return [code for name in names for code in self.concepts[name].codes]

    def search_codes(self, *names: str) -> list[Code]:
        """The codes a search must name to find every record of these concepts: each code,
        and below a prefix code every code its ``search`` list names."""
        found: list[Code] = []
        for code in self.codes(*names):
            found.append(code)
            found += [Code(code.system, below, code.display) for below in code.search]
        return found

    def names_in_group(self, group: str) -> list[str]:
        return [name for name, concept in self.concepts.items() if concept.group == group]


@cache
def conditions() -> ValueSets:
    return ValueSets(_load("conditions.json"))


@cache
def observations() -> ValueSets:
    return ValueSets(_load("observations.json"), default_system=LOINC)


@cache
def procedures() -> ValueSets:
    return ValueSets(_load("procedures.json"))


@cache
def order_codes() -> ValueSets:
    return ValueSets(_load("order_codes.json"))


@cache
def immunizations() -> ValueSets:
    return ValueSets(_load("immunizations.json"), default_system="http://hl7.org/fhir/sid/cvx")


@cache
def observations_words(name: str) -> tuple[str, ...]:
    """Lower-case words that name an observation concept that has no verified code."""
    return tuple(word.lower() for word in _load("observations.json")[name].get("words", ()))
