"""``alpha1-cds screen``: the whole export through the rules, over processes, to worklists.

Patients are read one at a time from the filed export (``export.py``) and sent to worker
processes in a bounded window (``WINDOW`` per worker in flight), so memory does not grow
with the population. Outputs, in the ``--out`` folder:

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
import os
import sys
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any, TextIO

from .export import Export, Filed
from .worklists import CATEGORIES, Screened, screen_patient

WINDOW = 16  # patients in flight per worker process
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
) -> dict[str, Any]:
    """Screen every patient of the export; the summary (also written by the CLI)."""
    started = time.monotonic()
    out.mkdir(parents=True, exist_ok=True)
    tally = Tally()
    with Export(export_dir, scratch=out) as export:
        filed = export.file()
        writers = None if aggregate_only else _Writers(out)
        try:
            for screened in _screened(export.patients(), as_of, workers):
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
        "notScreened": filed.conflicting,
        "seconds": round(seconds, 2),
        "patientsPerSecond": round(tally.patients / seconds, 1) if seconds else None,
    }


def _screened(
    patients: Iterator[tuple[str, list[dict[str, Any]]]], as_of: date, workers: int
) -> Iterator[Screened]:
    """Each patient screened, in export order; in ``workers`` processes with a bounded
    window of patients in flight (one process: here, with nothing to pickle)."""
    if workers <= 1:
        for patient, resources in patients:
            yield screen_patient(patient, resources, as_of)
        return
    with ProcessPoolExecutor(workers) as pool:
        flight: list[Future[Screened]] = []
        for patient, resources in patients:
            flight.append(pool.submit(screen_patient, patient, resources, as_of))
            if len(flight) >= WINDOW * workers:
                yield flight.pop(0).result()
        for future in flight:
            yield future.result()


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
