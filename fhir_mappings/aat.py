"""AAT levels and SERPINA1 genotypes: units, allele names and severity classes.

All numbers and names come from ``data/aat.json``, each with its source.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache
from typing import Any

from .terminology import load_data


@dataclass(frozen=True, slots=True)
class AatConstants:
    molecular_mass_kda: float
    protective_umol_l: float
    protective_mg_dl: float
    grey_zone_mg_dl: tuple[float, float]
    zz_unexpectedly_normal_umol_l: float
    mmol_l_plausible_below: float
    mass_units_to_mg_dl: dict[str, float]
    molar_units_to_umol_l: dict[str, float]


@cache
def constants() -> AatConstants:
    data = load_data("aat.json")
    return AatConstants(
        molecular_mass_kda=data["molecular_mass_kda"]["value"],
        protective_umol_l=data["protective_umol_l"]["value"],
        protective_mg_dl=data["protective_mg_dl"]["value"],
        grey_zone_mg_dl=tuple(data["grey_zone_mg_dl"]["value"]),
        zz_unexpectedly_normal_umol_l=data["zz_unexpectedly_normal_umol_l"]["value"],
        mmol_l_plausible_below=data["mmol_l_plausible_below"]["value"],
        mass_units_to_mg_dl=data["mass_units_to_mg_dl"]["value"],
        molar_units_to_umol_l=data["molar_units_to_umol_l"]["value"],
    )


class UnitError(ValueError):
    """An AAT value whose unit is unknown or impossible: a note, never a guess."""


UNIT_SPELLINGS = {
    "µmol/L": "umol/L",
    "μmol/L": "umol/L",
    "uM": "umol/L",
    "µM": "umol/L",
    "mg/dl": "mg/dL",
    "g/l": "g/L",
    "mg/l": "mg/L",
    "umol/l": "umol/L",
}


def normalise_unit(code: Any, text: Any) -> str | None:
    for candidate in (code, text):
        if isinstance(candidate, str) and candidate.strip():
            unit = candidate.strip()
            return UNIT_SPELLINGS.get(unit, unit)
    return None


def aat_in_both_units(value: float, unit: str | None) -> tuple[float, float, str | None]:
    """(umol/L, mg/dL, note) for an AAT value; UnitError when it cannot be read."""
    c = constants()
    per_umol = c.molecular_mass_kda / 10  # mg/dL per umol/L
    if unit in c.mass_units_to_mg_dl:
        mg_dl = value * c.mass_units_to_mg_dl[unit]
        return mg_dl / per_umol, mg_dl, None
    if unit == "mmol/L":
        if value >= c.mmol_l_plausible_below:
            raise UnitError(
                f"AAT {value} mmol/L is impossible (probably umol/L entered as mmol/L); not used"
            )
        umol = value * c.molar_units_to_umol_l[unit]
        return umol, umol * per_umol, f"AAT reported as {value} mmol/L, read as {umol:g} umol/L"
    if unit in c.molar_units_to_umol_l:
        umol = value * c.molar_units_to_umol_l[unit]
        return umol, umol * per_umol, None
    raise UnitError(f"AAT {value} has an unknown unit ({unit or 'none'}); not used")


@cache
def _alleles() -> tuple[dict[str, str], dict[str, str], dict[str, str], dict[str, str]]:
    data = load_data("aat.json")
    alias_to_allele = {
        alias.lower(): allele
        for allele, aliases in data["alleles"]["aliases"].items()
        for alias in aliases
    }
    severity = data["genotype_severity"]
    return alias_to_allele, data["alleles"]["kind"], severity["pairs"], severity["exceptions"]


def allele_of(name: str) -> str | None:
    """Canonical allele for a name (``Z``, ``c.1096G>A``, ``Q0granite falls`` -> ``null``)."""
    aliases = _alleles()[0]
    key = name.strip().lower()
    if key.startswith(("q0", "qo")):
        return "null"
    return aliases.get(key)


# Pi notation: "PI*ZZ", "Pi MZ", "Z/Z", "PI*Z/Q0", "MMmalton", "homozygous Z"
_TOKENS = re.compile(r"Q[0O][A-Za-z ]*|null|Null|M[a-z]{3,}|S[a-z]{3,}|M\d|[MSZI]")
# What labs add after the type: "PI*ZZ (homozygous Z)", "MZ (heterozygous)".
_ANNOTATION = re.compile(r"\([^)]*\)|\[[^\]]*\]")
_PREFIX = re.compile(r"^\s*(?:PI|Pi|pi|SERPINA1)\s*\*?\s*")


def parse_pi(text: str) -> tuple[str, ...] | None:
    """Two canonical alleles from a Pi type or genotype text, or None if not readable."""
    body = _PREFIX.sub("", _ANNOTATION.sub(" ", text).strip())
    if not body:
        return None
    homozygous = re.match(r"(?i)^homozygous\s+(\S+)$", body)
    if homozygous:
        body = f"{homozygous.group(1)}/{homozygous.group(1)}"
    if body.islower():
        body = body.upper()
    parts = [p for p in re.split(r"\s*[/,;]\s*", body) if p] if "/" in body else [body]
    tokens = [t.strip() for part in parts for t in _TOKENS.findall(part)]
    leftover = "".join(_TOKENS.sub("", part) for part in parts).strip(" *")
    alleles = tuple(allele_of(t) for t in tokens)
    if len(alleles) != 2 or None in alleles or leftover:
        return None
    return tuple(sorted(alleles, key=_order))  # type: ignore[arg-type]


# Allele kinds from the mildest to the most severe: alleles and pairs are written in this order
# (PI*MZ, not ZM), and the severity table's keys follow it.
KIND_ORDER = {"normal": 0, "mild": 1, "deficient": 2, "null": 3}


def _order(allele: str) -> tuple[int, str]:
    return KIND_ORDER.get(_alleles()[1].get(allele, ""), len(KIND_ORDER)), allele


def severity(alleles: tuple[str, ...]) -> str:
    """The CDS class of an allele pair (data/aat.json genotype_severity)."""
    _, kinds, pairs, exceptions = _alleles()
    exception = exceptions.get("+".join(sorted(alleles)))
    if exception:
        return exception
    pair = "+".join(sorted((kinds[a] for a in alleles), key=KIND_ORDER.__getitem__))
    return pairs[pair]
