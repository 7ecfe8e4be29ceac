"""A FHIR Bulk Data export, grouped by patient without holding it in memory.

``$export`` writes NDJSON files, one resource a line, one file or several per resource type
(``Observation.ndjson``, ``Observation.2.ndjson``; gzip when asked). The rules need each
patient's resources together, so every line is filed in a temporary SQLite database by the
patient it belongs to (``subject`` or ``patient``; a Patient by its id) and read back one
patient at a time, in order: memory holds a page of rows, never the population. Resources
of no patient (``Medication``) are kept by id and given to each patient whose orders name
them. A line that is not JSON, or a resource that names no patient, is counted and said,
never guessed.
"""

from __future__ import annotations

import gzip
import io
import sqlite3
import tempfile
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from ..prefetch import same_resource

SHARED = frozenset({"Medication"})  # resources of no patient, referenced by id
PAGE = 500  # rows fetched at a time when reading back


@dataclass
class Filed:
    """What was read: resources per type, and what could not be filed and why."""

    resources: dict[str, int] = field(default_factory=dict)
    patients: int = 0
    unreadable_lines: int = 0
    without_patient: int = 0
    conflicting: int = 0  # patients with two different copies of one resource: not screened


def export_files(folder: Path) -> list[Path]:
    """The NDJSON files of an export folder (plain or gzip), in a stable order."""
    found = [p for p in folder.iterdir() if p.name.endswith((".ndjson", ".ndjson.gz"))]
    return sorted(found)


class Export:
    """An export folder filed by patient in a temporary database (deleted on close)."""

    def __init__(self, folder: Path, scratch: Path | None = None) -> None:
        self.folder = folder
        self._dir = tempfile.TemporaryDirectory(prefix="alpha1-screen-", dir=scratch)
        self._db = sqlite3.connect(Path(self._dir.name) / "export.sqlite")
        self._db.execute("PRAGMA journal_mode=OFF")
        self._db.execute("PRAGMA synchronous=OFF")
        self._db.execute("CREATE TABLE res (patient TEXT NOT NULL, body BLOB NOT NULL)")
        self._db.execute("CREATE TABLE shared (ref TEXT PRIMARY KEY, body BLOB NOT NULL)")
        self.filed = Filed()

    def file(self) -> Filed:
        """Read every file once; rows go to disk in batches."""
        for path in export_files(self.folder):
            with _open(path) as lines:
                batch: list[tuple[str, bytes]] = []
                for line in lines:
                    row = self._row(line)
                    if row is not None:
                        batch.append(row)
                    if len(batch) >= PAGE:
                        self._db.executemany("INSERT INTO res VALUES (?, ?)", batch)
                        batch.clear()
                self._db.executemany("INSERT INTO res VALUES (?, ?)", batch)
        self._db.execute("CREATE INDEX res_patient ON res (patient)")
        self._db.commit()
        self.filed.patients = self._db.execute(
            "SELECT COUNT(DISTINCT patient) FROM res"
        ).fetchone()[0]
        return self.filed

    def patients(self) -> Iterator[tuple[str, list[dict[str, Any]]]]:
        """(patient id, its resources and the Medications they name), one patient at a
        time, in id order."""
        for patient, bodies in self.raw_patients():
            resources = parse(bodies)
            once = self._once(resources)
            if once is None:
                self.filed.conflicting += 1
                continue
            yield patient, self._with_medications(once)

    def raw_patients(self) -> Iterator[tuple[str, list[bytes]]]:
        """(patient id, its resources as the export's JSON lines): for worker processes,
        which parse them (bytes cross a process boundary far cheaper than dicts)."""
        cursor = self._db.execute("SELECT patient, body FROM res ORDER BY patient")
        current, bodies = None, []
        while rows := cursor.fetchmany(PAGE):
            for patient, body in rows:
                if patient != current and current is not None:
                    yield current, bodies
                    bodies = []
                current = patient
                bodies.append(body)
        if current is not None:
            yield current, bodies

    def medications(self) -> dict[str, bytes]:
        """Every shared Medication by ``Medication/<id>`` (a few hundred in an export)."""
        return dict(self._db.execute("SELECT ref, body FROM shared"))

    def close(self) -> None:
        self._db.close()
        self._dir.cleanup()

    def __enter__(self) -> Export:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _row(self, line: bytes) -> tuple[str, bytes] | None:
        line = line.strip()
        if not line:
            return None
        try:
            resource = orjson.loads(line)
        except orjson.JSONDecodeError:
            self.filed.unreadable_lines += 1
            return None
        kind = resource.get("resourceType") if isinstance(resource, dict) else None
        if not isinstance(kind, str):
            self.filed.unreadable_lines += 1
            return None
        self.filed.resources[kind] = self.filed.resources.get(kind, 0) + 1
        if kind in SHARED:
            if isinstance(resource.get("id"), str):
                self._db.execute(
                    "INSERT OR REPLACE INTO shared VALUES (?, ?)",
                    (f"{kind}/{resource['id']}", line),
                )
            return None
        patient = patient_of(resource)
        if patient is None:
            self.filed.without_patient += 1
            return None
        return patient, line

    @staticmethod
    def _once(resources: list[dict[str, Any]]) -> list[dict[str, Any]] | None:
        """Each resource once (copies alike in all but ``meta`` are one); None when two
        copies of one resource differ: which is the record cannot be told, so the patient
        is counted as not screened, never screened on a guess (the hooks answer 412)."""
        seen: dict[tuple[str, str], dict[str, Any]] = {}
        kept = []
        for resource in resources:
            rid = resource.get("id")
            if not isinstance(rid, str):
                kept.append(resource)
                continue
            key = (resource["resourceType"], rid)
            first = seen.setdefault(key, resource)
            if first is resource:
                kept.append(resource)
            elif not same_resource(first, resource):
                return None
        return kept

    def _with_medications(self, resources: list[dict[str, Any]]) -> list[dict[str, Any]]:
        found = self._db.execute
        return with_medications(
            resources,
            lambda ref: (
                found("SELECT body FROM shared WHERE ref = ?", (ref,)).fetchone() or [None]
            )[0],
        )


def parse(bodies: list[bytes]) -> list[dict[str, Any]]:
    return [orjson.loads(body) for body in bodies]


def one_patient(
    bodies: list[bytes], medications: Mapping[str, bytes]
) -> list[dict[str, Any]] | None:
    """A worker's side of ``Export.patients``: the resources parsed, each once, with the
    Medications they name; None when two copies of one resource differ."""
    once = Export._once(parse(bodies))
    if once is None:
        return None
    return with_medications(once, medications.get)


def with_medications(
    resources: list[dict[str, Any]], lookup: Callable[[str], bytes | None]
) -> list[dict[str, Any]]:
    """``resources`` with the Medications their orders name (``medicationReference``)."""
    named = {
        ref
        for r in resources
        if isinstance(ref := (r.get("medicationReference") or {}).get("reference"), str)
    }
    for ref in sorted(named):
        body = lookup(ref)
        if body is not None:
            resources.append(orjson.loads(body))
    return resources


def patient_of(resource: dict[str, Any]) -> str | None:
    """The id of the patient a resource is about: its own id for a Patient, else the
    ``Patient/<id>`` its ``subject`` or ``patient`` names."""
    if resource.get("resourceType") == "Patient":
        rid = resource.get("id")
        return rid if isinstance(rid, str) and rid else None
    for name in ("subject", "patient"):
        reference = (resource.get(name) or {}).get("reference")
        if isinstance(reference, str) and reference.startswith("Patient/"):
            rid = reference.removeprefix("Patient/")
            return rid or None
    return None


def _open(path: Path) -> io.BufferedIOBase:
    return gzip.open(path, "rb") if path.name.endswith(".gz") else path.open("rb")
