"""``alpha1-cds screen``: the whole export through the rules, over processes, to worklists.

Patients are read one at a time from the filed export (``export.py``) and sent to worker
processes (or a Dask cluster's workers, ``--scheduler``) in batches of at most BATCH
patients and BATCH_BYTES (a patient bigger than that goes alone), at most WINDOW batches
per worker in flight, so memory does not grow with the population.
Outputs, in the ``--out`` folder:

- ``<category>.csv`` and ``<category>.list.json`` (a FHIR ``List`` of the patients) per
  worklist, unless ``--aggregate-only``;
- ``report.html``: counts per category, the share of COPD or emphysema patients ever
  tested, and the testing gap by age group and by the year COPD was first recorded;
- ``README.txt``: what the files hold, and that the worklists name patients;
- one JSON line on stdout with the counts; a progress line on stderr when it is a terminal.
"""

from __future__ import annotations

import csv
import json
import logging
import os
import sys
import time
import traceback
from collections import Counter, deque
from collections.abc import Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any, TextIO

from .. import logs
from .export import Export, Filed, one_patient
from .worklists import CATEGORIES, Screened, screen_patient

BATCH = 32  # patients per task sent to a worker process, at most
# ... and at most this many bytes of JSON lines: a generated record of 2,000 resources is
# about 1.5 MB, so a batch of 32 such patients, WINDOW deep per worker, would hold
# hundreds of MB in flight where the fixtures' patients hold a few.
BATCH_BYTES = 4 * 1024 * 1024
WINDOW = 4  # batches in flight per worker process
# Why a patient was not screened (counted in the summary and the report).
CONFLICTING, FAILED = "conflicting", "failed"
FIELDS = ("patient", "category", "summary", "facts", "latest_fact_date")
PHI_NOTE = (
    "These worklists name patients (Patient/<id> of the source system) because clinicians act "
    "on them: keep them where patient data may be kept. --aggregate-only writes counts only."
)


@dataclass
class Tally:
    """What the report counts: nothing that names a patient."""

    patients: int = 0
    per_category: Counter[str] = field(default_factory=Counter)
    copd: int = 0
    copd_tested: int = 0
    by_age: dict[str, list[int]] = field(default_factory=dict)  # band -> [copd, tested]
    by_year: dict[int, list[int]] = field(default_factory=dict)

    def add(self, screened: Screened) -> None:
        self.patients += 1
        self.per_category.update(screened.rows.keys())
        if not screened.copd or screened.deceased:
            return
        self.copd += 1
        self.copd_tested += screened.tested
        band = _band(screened.age)
        counts = self.by_age.setdefault(band, [0, 0])
        counts[0] += 1
        counts[1] += screened.tested
        if screened.first_copd_year is not None:
            year = self.by_year.setdefault(screened.first_copd_year, [0, 0])
            year[0] += 1
            year[1] += screened.tested


def _band(age: int | None) -> str:
    if age is None:
        return "unknown"
    low = min(age // 10 * 10, 80)
    return "80+" if low == 80 else f"{low}-{low + 9}"


def screen(
    export_dir: Path,
    as_of: date,
    out: Path,
    workers: int = 1,
    aggregate_only: bool = False,
    progress: TextIO | None = None,
    scheduler: str | None = None,
    previous: Path | None = None,
    merged_to: Path | None = None,
) -> dict[str, Any]:
    """Screen every patient of the export; the summary (also written by the CLI). With
    ``previous``, ``export_dir`` holds the changes since that earlier export: they are
    filed over it, and the merged whole is written to ``merged_to`` for the next run."""
    started = time.monotonic()
    out.mkdir(parents=True, exist_ok=True)
    tally = Tally()
    with Export(export_dir, scratch=out, previous=previous) as export:
        filed = export.file()
        filed.export_errors = _export_errors(export_dir)
        if merged_to is not None:
            export.write(merged_to)
        writers = None if aggregate_only else _Writers(out)
        try:
            for screened in _screened(export, as_of, workers, scheduler):
                tally.add(screened)
                if writers is not None:
                    writers.add(screened)
                if progress is not None:
                    _progress(progress, tally.patients, filed.patients, started)
        finally:
            if writers is not None:
                writers.close(as_of)
    if progress is not None:
        progress.write("\n")
    _write_report(out, tally, filed, as_of, aggregate_only)
    seconds = time.monotonic() - started
    return {
        "date": as_of.isoformat(),
        "patients": tally.patients,
        "categories": {c.name: tally.per_category[c.name] for c in CATEGORIES},
        "copd": tally.copd,
        "copdTested": tally.copd_tested,
        "unreadableLines": filed.unreadable_lines,
        "withoutPatient": filed.without_patient,
        "exportErrors": filed.export_errors,
        "notScreened": filed.conflicting,
        "failed": filed.failed,
        **({"replaced": filed.replaced, "deleted": filed.deleted} if previous else {}),
        "seconds": round(seconds, 2),
        "patientsPerSecond": round(tally.patients / seconds, 1) if seconds else None,
    }


def _export_errors(export_dir: Path) -> int:
    """Entries of the export's error files (a Bulk Data manifest's ``error``, downloaded to
    ``errors/``): records the server could not export, so absent here."""
    folder = export_dir / "errors"
    if not folder.is_dir():
        return 0
    return sum(
        1
        for path in folder.glob("*.ndjson")
        for line in path.read_text(encoding="utf-8").splitlines()
        if line.strip()
    )


def _screened(
    export: Export, as_of: date, workers: int, scheduler: str | None = None
) -> Iterator[Screened]:
    """Each patient screened, in export order; in ``workers`` processes, patients sent in
    batches (``_batches``) as their JSON lines, at most WINDOW batches per worker in flight
    (one process: here); with ``scheduler``, on that Dask cluster instead."""
    if scheduler is not None:
        yield from _on_dask(export, as_of, scheduler)
        return
    if workers <= 1:
        for patient, resources in export.patients():
            yield from _settled([_screen_one(patient, resources, as_of)], export)
        return
    medications = export.medications()
    with ProcessPoolExecutor(workers, initializer=_share, initargs=(medications,)) as pool:
        flight: deque[Future[list[Screened | str]]] = deque()
        for batch in _batches(export.raw_patients()):
            flight.append(pool.submit(_screen_batch, batch, as_of))
            if len(flight) >= WINDOW * workers:
                yield from _settled(flight.popleft().result(), export)
        while flight:
            yield from _settled(flight.popleft().result(), export)


def _on_dask(export: Export, as_of: date, scheduler: str) -> Iterator[Screened]:
    """The same batches on a Dask ``distributed`` cluster (``tcp://host:port``): the
    Medications sent once to every worker, WINDOW batches per worker thread in flight.
    The parent files the export and writes the outputs, as with local processes."""
    from distributed import Client

    with Client(scheduler, timeout=30) as client:
        # In a list: scattered as one object (a dict alone is scattered key by key).
        [medications] = client.scatter([export.medications()], broadcast=True)
        window = WINDOW * max(1, sum(client.nthreads().values()))
        flight: deque[Any] = deque()
        for batch in _batches(export.raw_patients()):
            flight.append(client.submit(_screen_batch, batch, as_of, medications, pure=False))
            if len(flight) >= window:
                yield from _settled(flight.popleft().result(), export)
        while flight:
            yield from _settled(flight.popleft().result(), export)


def _batches(
    patients: Iterator[tuple[str, list[bytes]]],
) -> Iterator[list[tuple[str, list[bytes]]]]:
    """Patients in batches of at most BATCH, closed early once BATCH_BYTES are in."""
    batch: list[tuple[str, list[bytes]]] = []
    size = 0
    for patient in patients:
        batch.append(patient)
        size += sum(len(body) for body in patient[1])
        if len(batch) == BATCH or size >= BATCH_BYTES:
            yield batch
            batch, size = [], 0
    if batch:
        yield batch


_MEDICATIONS: dict[str, bytes] = {}


def _share(medications: dict[str, bytes]) -> None:
    """In each worker process, once: the export's Medications by reference."""
    _MEDICATIONS.update(medications)


def _screen_batch(
    batch: list[tuple[str, list[bytes]]], as_of: date, medications: dict[str, bytes] | None = None
) -> list[Screened | str]:
    """A batch screened in a worker (``medications``: given by Dask; else the process
    pool's shared copy); a patient not screened is the reason why (``_settled``)."""
    found: list[Screened | str] = []
    for patient, bodies in batch:
        resources = one_patient(bodies, _MEDICATIONS if medications is None else medications)
        found.append(CONFLICTING if resources is None else _screen_one(patient, resources, as_of))
    return found


def _screen_one(patient: str, resources: list[dict[str, Any]], as_of: date) -> Screened | str:
    """One patient screened; an error in alpha1-cds on one record is counted and logged
    (its type and where, never the record's values) and the run goes on: a population's
    lists must not end at one patient, and that patient is said to be missing from them."""
    try:
        return screen_patient(patient, resources, as_of)
    except Exception as error:
        place = traceback.extract_tb(error.__traceback__)[-1]
        logs.event(
            "screen-patient-failed",
            logging.ERROR,
            error=type(error).__name__,
            at=f"{Path(place.filename).name}:{place.lineno}",
        )
        return FAILED


def _settled(batch: list[Screened | str], export: Export) -> Iterator[Screened]:
    for screened in batch:
        if screened == CONFLICTING:  # two differing copies of one resource: not screened
            export.filed.conflicting += 1
        elif screened == FAILED:
            export.filed.failed += 1
        elif isinstance(screened, Screened):
            yield screened


class _Writers:
    """One CSV per category, written as patients come; the FHIR Lists at the end."""

    def __init__(self, out: Path) -> None:
        self.out = out
        self.files = {
            c.name: (out / f"{c.name}.csv").open("w", newline="", encoding="utf-8")
            for c in CATEGORIES
        }
        self.csv = {name: csv.DictWriter(f, FIELDS) for name, f in self.files.items()}
        for writer in self.csv.values():
            writer.writeheader()
        self.members: dict[str, list[str]] = {c.name: [] for c in CATEGORIES}

    def add(self, screened: Screened) -> None:
        for name, row in screened.rows.items():
            self.csv[name].writerow(row)
            self.members[name].append(row["patient"])

    def close(self, as_of: date) -> None:
        for handle in self.files.values():
            handle.close()
        for category in CATEGORIES:
            listed = {
                "resourceType": "List",
                "status": "current",
                "mode": "snapshot",
                "title": f"alpha1-cds: {category.title}",
                "code": {"coding": [{"system": "urn:alpha1-cds:worklist", "code": category.name}]},
                "date": as_of.isoformat(),
                "note": [{"text": PHI_NOTE}],
            }
            members = self.members[category.name]
            if members:
                listed["entry"] = [{"item": {"reference": ref}} for ref in members]
            else:
                listed["emptyReason"] = {"text": "no patient in this category"}
            path = self.out / f"{category.name}.list.json"
            path.write_text(json.dumps(listed, indent=1), encoding="utf-8")


def _progress(stream: TextIO, done: int, total: int, started: float) -> None:
    if done % 10 and done != total:
        return
    elapsed = time.monotonic() - started
    rate = done / elapsed if elapsed else 0.0
    left = (total - done) / rate if rate else 0.0
    width = 30
    filled = int(width * done / total) if total else width
    stream.write(
        f"\r[{'#' * filled}{'.' * (width - filled)}] {done}/{total} patients, "
        f"{rate:.1f}/s, {left:.0f} s left "
    )
    stream.flush()


def _write_report(out: Path, tally: Tally, filed: Filed, as_of: date, aggregate_only: bool) -> None:
    from .report import html_report

    (out / "report.html").write_text(html_report(tally, filed, as_of), encoding="utf-8")
    lists = (
        ""
        if aggregate_only
        else "\n".join(f"  {c.name}.csv, {c.name}.list.json: {c.title}" for c in CATEGORIES)
    )
    readme = [
        f"alpha1-cds screen, as of {as_of.isoformat()},"
        f" written {datetime.now(UTC):%Y-%m-%d %H:%M} UTC",
        "",
        "report.html: counts only (no patient is named).",
    ]
    if lists:
        readme += ["Worklists:", lists, "", PHI_NOTE]
    (out / "README.txt").write_text("\n".join(readme) + "\n", encoding="utf-8")


def interactive() -> TextIO | None:
    """stderr when it is a terminal (the progress line), else nothing."""
    return sys.stderr if sys.stderr.isatty() and os.environ.get("TERM") != "dumb" else None
