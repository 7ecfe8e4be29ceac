"""The clinical knowledge the rules read and cite, loaded once from JSON data files.

- ``data/thresholds.json``: the numbers rules compare against, typed (``thresholds()``);
- ``data/statements.json``: guideline statements the cards quote (``statement(id)``);
- ``data/guidelines.json``, ``data/topics.json``, ``data/override_reasons.json``;
- card words (``Words``): templates beside the rules that use them, whose numbers are
  placeholders bound to the thresholds, so a number is never typed twice.
"""

from __future__ import annotations

import json
import string
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from functools import cache
from importlib import resources
from importlib.resources.abc import Traversable
from typing import Any

from fhir_mappings.aat import constants
from fhir_mappings.medications import brands

TOPIC_SYSTEM = "urn:alpha1-cds:topic"
OVERRIDE_REASON_SYSTEM = "urn:alpha1-cds:override-reason"


@dataclass(frozen=True, slots=True)
class Topic:
    code: str
    display: str
    indicator: str


@dataclass(frozen=True, slots=True)
class Guideline:
    id: str
    label: str
    title: str
    url: str


@dataclass(frozen=True, slots=True)
class Thresholds:
    """Every number a rule compares against (data/thresholds.json, each with its source)."""

    fev1_fvc_obstruction: float
    aat_below_normal_umol_l: float
    fev1_advanced_disease_percent: float
    adult_age_years: int
    a1pi_dose_mg_per_kg_week: float
    a1pi_dose_tolerance: float
    igg_very_low_mg_dl: float
    igg_severe_mg_dl: float
    igg_low_mg_dl: float
    igg_trough_target_mg_dl: float
    igg_trough_ideal_mg_dl: float
    igm_low_mg_dl: float
    iga_deficient_mg_dl: float
    ivig_usual_g_per_kg: tuple[float, float]
    ivig_escalation_g_per_kg: float
    recurrent_infections_count: int
    recurrent_infections_days: int


def read_json(*path: str) -> dict[str, Any]:
    """A data file of this package, without its ``_about`` notes."""
    return _without_notes(resources.files("hooks").joinpath(*path))


def _without_notes(file: Traversable) -> dict[str, Any]:
    data = json.loads(file.read_text(encoding="utf-8"))
    return {key: value for key, value in data.items() if not key.startswith("_")}


@cache
def thresholds() -> Thresholds:
    data = read_json("data", "thresholds.json")
    names = {f.name for f in fields(Thresholds)}
    if names != data.keys():
        raise ValueError(f"thresholds.json and Thresholds differ: {sorted(names ^ data.keys())}")
    values: dict[str, Any] = {
        k: tuple(v["value"]) if isinstance(v["value"], list) else v["value"]
        for k, v in data.items()
    }
    return Thresholds(**values)


@cache
def topics() -> dict[str, Topic]:
    return {code: Topic(code, **entry) for code, entry in read_json("data", "topics.json").items()}


@cache
def guidelines() -> dict[str, Guideline]:
    """The guidelines cited, their titles' placeholders bound (the A1PI brands)."""
    return {
        gid: Guideline(gid, **{**entry, "title": entry["title"].format_map(_Values({}))})
        for gid, entry in read_json("data", "guidelines.json").items()
    }


def listed(names: tuple[str, ...], last: str) -> str:
    """Names joined as in prose: "a, b or c"."""
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} {last} {names[-1]}"


@cache
def override_reasons(topic: str | None = None) -> dict[str, str]:
    """The reasons a card of ``topic`` offers (None: every reason): code -> display, in the
    order offered. A reason is left off the topics it does not fit (its ``not_on``)."""
    rows = read_json("data", "override_reasons.json").items()
    unknown = {t for _, e in rows for t in e.get("not_on", ())} - topics().keys()
    if unknown:
        raise ValueError(f"override_reasons.json names unknown topics: {sorted(unknown)}")
    return {
        code: e["display"] for code, e in rows if topic is None or topic not in e.get("not_on", ())
    }


@cache
def override_periods() -> dict[str, str | int]:
    """What each reason hides: "topic" (its period), "dismiss", or a number of days."""
    return {code: e["hides"] for code, e in read_json("data", "override_reasons.json").items()}


@cache
def bound_numbers() -> Mapping[str, Any]:
    """The names card words may use for numbers: thresholds and the AAT constants.

    A pair ``[low, high]`` is offered as ``name_low`` and ``name_high``; a fraction
    tolerance also as a percentage (``a1pi_dose_tolerance_percent``).
    """
    bound: dict[str, Any] = {}
    for name, value in asdict(thresholds()).items():
        if isinstance(value, tuple):
            bound[f"{name}_low"], bound[f"{name}_high"] = value
        else:
            bound[name] = value
    bound["a1pi_dose_tolerance_percent"] = round(thresholds().a1pi_dose_tolerance * 100)
    aat = constants()
    bound["protective_umol_l"] = aat.protective_umol_l
    bound["protective_mg_dl"] = aat.protective_mg_dl
    bound["zz_unexpectedly_normal_umol_l"] = aat.zz_unexpectedly_normal_umol_l
    # The A1PI brands, from the one product list: prose names them by this placeholder.
    bound["a1pi_brands"] = ", ".join(brands("a1pi"))
    bound["a1pi_brands_or"] = listed(brands("a1pi"), "or")
    for profile, window in read_json("data", "policy.json").items():
        prefix = profile.split("-")[0]  # a1f, cts
        bound[f"{prefix}_recommend_max"] = window["recommend_max"]
        bound[f"{prefix}_consider_max"] = window["consider_max"]
        bound[f"{prefix}_minimum"] = window.get("min")
    return bound


_FORMATTER = string.Formatter()


def template_fields(template: str) -> set[str]:
    """The placeholder names a template needs (``{dose:,.0f}`` -> ``dose``)."""
    return {
        name.split(".")[0].split("[")[0]
        for _, name, _, _ in _FORMATTER.parse(template)
        if name is not None
    }


def _flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    flat: dict[str, str] = {}
    for key, value in tree.items():
        if isinstance(value, Mapping):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


class Words:
    """The words a clinician reads for one area, from a JSON file beside its rules.

    ``words("candidate.summary", dose=4200)`` renders the template at that dotted key,
    with the rule's values first and the bound numbers (thresholds) after them. A missing
    value raises: the test suite renders every template through the rules that use it.
    """

    def __init__(self, package: str, *path: str) -> None:
        self.package = package
        self.path = path
        # The area the words belong to: their file's name ("a1pi", "diagnosis").
        self.area = path[-1].removesuffix(".json")

    @property
    def templates(self) -> dict[str, str]:
        return _templates(self.package, self.path)

    def __call__(self, key: str, /, **values: Any) -> str:  # a Said: text that knows its key
        # str.format_map (C) rather than string.Formatter (Python): card words are rendered
        # dozens of times per hook call.
        text = _templates(self.package, self.path)[key].format_map(_Values(values))
        return Said(text, f"{self.area}/{key}")


class Said(str):
    """Words rendered from a template that remember their key (``a1pi/candidate.summary``):
    a recommendation's summary names the branch of the rule that produced it, for
    ``alpha1-cds evaluate --explain`` and the integrator, without the rules saying it twice."""

    key: str

    def __new__(cls, text: str, key: str) -> Said:
        said = super().__new__(cls, text)
        said.key = key
        return said

    def __reduce__(self) -> tuple[type[Said], tuple[str, str]]:
        return (Said, (str(self), self.key))  # pickles and copies keep the key


class _Values(dict[str, Any]):
    """The rule's values, then the bound numbers for any name the rule did not give."""

    def __missing__(self, key: str) -> Any:
        return bound_numbers()[key]


@cache
def _templates(package: str, path: tuple[str, ...]) -> dict[str, str]:
    return _flatten(_without_notes(resources.files(package).joinpath(*path)))


@dataclass(frozen=True, slots=True)
class Evidence:
    """A guideline statement behind the advice and how strong it is."""

    guideline: str
    statement: str
    strength: str

    def __post_init__(self) -> None:
        if self.guideline not in guidelines():
            raise ValueError(f"unknown guideline {self.guideline!r}")


STATEMENTS = Words("hooks", "data", "statements.json")


@cache
def statement(key: str) -> Evidence:
    """A guideline statement by its id in data/statements.json, numbers bound."""
    guideline, strength = key.split(".")[0], _statement_strength(key)
    return Evidence(guideline, STATEMENTS(f"{key}.text"), strength)


def _statement_strength(key: str) -> str:
    return STATEMENTS.templates[f"{key}.strength"]


def statements(*keys: str) -> tuple[Evidence, ...]:
    return tuple(statement(key) for key in keys)
