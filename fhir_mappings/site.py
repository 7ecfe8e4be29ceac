"""Site codes: the local codes a hospital adds to a concept, without a fork.

A reference lab or an EHR build often codes results locally (an in-house AAT test code, a
local phenotype order) beside or instead of LOINC. The setting ``site_codes`` names a JSON
file of extra codes per concept:

    {"observations": {"aat_level": [{"system": "http://lab.example.org/codes",
                                     "code": "AAT-SER", "display": "Alpha-1 antitrypsin",
                                     "source": "the lab's catalogue, 2026"}]}}

Each code must name its system, code, display and source (who vouches for it). The codes
join their concept everywhere: the mapper reads them, the prefetch templates ask for them,
and the published ValueSets list them. Installing replaces any earlier overlay.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from . import queries, terminology

# Domains a site may extend: the data file each concept lives in.
DOMAINS = {
    "observations": "observations.json",
    "conditions": "conditions.json",
    "procedures": "procedures.json",
    "immunizations": "immunizations.json",
}
REQUIRED = ("system", "code", "display", "source")


class SiteCodesError(ValueError):
    """The site codes file cannot be used: what is wrong, and where."""


def read(path: str | Path) -> dict[str, dict[str, list[dict[str, str]]]]:
    """The file's codes, checked: known domains and concepts, complete codes."""
    try:
        given = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise SiteCodesError(f"site_codes {path}: cannot read it ({error})") from None
    return check(given, str(path))


def check(given: Any, where: str = "site_codes") -> dict[str, dict[str, list[dict[str, str]]]]:
    if not isinstance(given, Mapping):
        raise SiteCodesError(f"{where}: expected an object of domain -> concept -> codes")
    checked: dict[str, dict[str, list[dict[str, str]]]] = {}
    for domain, concepts in given.items():
        if domain.startswith("_"):
            continue  # notes, as in the data files
        if domain not in DOMAINS:
            raise SiteCodesError(f"{where}: unknown domain {domain!r} ({', '.join(DOMAINS)})")
        known = terminology.load_data(DOMAINS[domain], overlay=False)
        if not isinstance(concepts, Mapping):
            raise SiteCodesError(f"{where}: {domain} must map concepts to lists of codes")
        for concept, codes in concepts.items():
            if concept not in known:
                raise SiteCodesError(f"{where}: {domain} has no concept {concept!r}")
            if not isinstance(codes, list) or not codes:
                raise SiteCodesError(f"{where}: {domain}.{concept} must be a list of codes")
            for index, code in enumerate(codes):
                missing = [
                    k
                    for k in REQUIRED
                    if not isinstance(code, Mapping) or not str(code.get(k, "")).strip()
                ]
                if missing:
                    raise SiteCodesError(
                        f"{where}: {domain}.{concept}[{index}] needs {', '.join(missing)}"
                    )
            checked.setdefault(domain, {})[concept] = [
                {k: str(code[k]).strip() for k in REQUIRED} | {"site": "true"} for code in codes
            ]
    return checked


def install(overlay: Mapping[str, Mapping[str, Sequence[Mapping[str, str]]]] | None) -> None:
    """Use ``overlay`` (None or empty: the bundled codes only) from now on, in this process:
    the value sets and the queries built from them are made again."""
    files = {
        DOMAINS[domain]: {
            concept: [dict(code) for code in codes] for concept, codes in concepts.items()
        }
        for domain, concepts in (overlay or {}).items()
    }
    if files == terminology.overlay():
        return
    terminology.set_overlay(files)
    queries.rebuild()
