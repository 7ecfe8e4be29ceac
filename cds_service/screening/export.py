"""A FHIR Bulk Data export, grouped by patient without holding it in memory.

``$export`` writes NDJSON files, one resource a line, one file or several per resource type
(``Observation.ndjson``, ``Observation.2.ndjson``; gzip when asked). The rules need each
patient's resources together, so every line is filed in a temporary SQLite database by the
patient it belongs to (``subject`` or ``patient``; a Patient by its id) and read back one
patient at a time, in order: memory holds a page of rows, never the population. Resources
of no patient (``Medication``) are kept by id and given to each patient whose orders name
them. A line that is not JSON, or a resource that names no patient, is counted and said,
never guessed.

An incremental export (``_since``) holds only what changed, so it is never screened alone:
a patient whose AAT result is older than ``_since`` would look untested. It is filed over
the previous export (``previous``, the whole population as last screened): a resource in
the changes replaces the previous copy of the same ``Type/id`` (wherever it was filed: a
result moved to another patient leaves the first), the resources its ``deleted/`` files
name are removed, and ``write`` saves the merged whole as the next run's ``previous``.
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
DELETED = "deleted"  # the subfolder of an incremental export naming deleted resources
# Beside the NDJSON: where and when an export was taken (``transactionTime``), so the next
# incremental run knows its ``_since`` and that it asks the same server.
ABOUT = "export.json"


class ExportError(Exception):
    """An export that cannot be screened as given: what to give instead."""


@dataclass
class Filed:
    """What was read: resources per type, and what could not be filed and why."""

    resources: dict[str, int] = field(default_factory=dict)
    patients: int = 0
    unreadable_lines: int = 0
    without_patient: int = 0
    conflicting: int = 0  # patients with two different copies of one resource: not screened
    failed: int = 0  # patients whose screening met an error in alpha1-cds: not screened
    export_errors: int = 0  # records the server said it could not export (its error files)
    replaced: int = 0  # previous copies a later export replaced (incremental runs)
    deleted: int = 0  # previous resources a later export's deleted files removed


def export_files(folder: Path) -> list[Path]:
    """The NDJSON files of an export folder (plain or gzip), in a stable order."""
    found = [p for p in folder.iterdir() if p.name.endswith((".ndjson", ".ndjson.gz"))]
    return sorted(found)


def is_incremental(folder: Path) -> bool:
    """An export taken with ``_since`` (so holding only what changed): its ``deleted/``
    files, or its ``export.json`` saying so."""
    if (folder / DELETED).is_dir():
        return True
    about = read_about(folder)
    return bool(about.get("since"))


def read_about(folder: Path) -> dict[str, Any]:
    """What ``export.json`` says of an export (empty when there is none or it is unreadable)."""
    try:
        found = orjson.loads((folder / ABOUT).read_bytes())
    except (OSError, orjson.JSONDecodeError):
        return {}
    return found if isinstance(found, dict) else {}


class Export:
    """An export folder filed by patient in a temporary database (deleted on close); with
    ``previous``, filed over that earlier, whole export (the folder holds changes)."""

    def __init__(self, folder: Path, scratch: Path | None = None, previous: Path | None = None):
        if previous is None and is_incremental(folder):
            raise ExportError(
                f"{folder} holds only what changed since an earlier export (_since): give "
                "--previous with that earlier export, so unchanged records are screened too"
            )
        self.folder = folder
        self.previous = previous
        self._dir = tempfile.TemporaryDirectory(prefix="alpha1-screen-", dir=scratch)
        self._db = sqlite3.connect(Path(self._dir.name) / "export.sqlite")
        self._db.execute("PRAGMA journal_mode=OFF")
        self._db.execute("PRAGMA synchronous=OFF")
        self._db.execute(
            "CREATE TABLE res (patient TEXT NOT NULL, kind TEXT NOT NULL, rid TEXT,"
            " gen INTEGER NOT NULL, body BLOB NOT NULL)"
        )
        self._db.execute("CREATE TABLE shared (ref TEXT PRIMARY KEY, body BLOB NOT NULL)")
        self.filed = Filed()

    def file(self) -> Filed:
        """Read every file once (the previous export's first); rows go to disk in batches."""
        sources = [self.folder] if self.previous is None else [self.previous, self.folder]
        for gen, folder in enumerate(sources):
            for path in export_files(folder):
                self._file_lines(path, gen)
        if self.previous is not None:
            self._merge()
        self._db.execute("CREATE INDEX res_patient ON res (patient)")
        self._db.commit()
        self.filed.patients = self._db.execute(
            "SELECT COUNT(DISTINCT patient) FROM res"
        ).fetchone()[0]
        return self.filed

    def _file_lines(self, path: Path, gen: int) -> None:
        with _open(path) as lines:
            batch: list[tuple[str, str, str | None, int, bytes]] = []
            for line in lines:
                row = self._row(line, gen)
                if row is not None:
                    batch.append(row)
                if len(batch) >= PAGE:
                    self._db.executemany("INSERT INTO res VALUES (?, ?, ?, ?, ?)", batch)
                    batch.clear()
            self._db.executemany("INSERT INTO res VALUES (?, ?, ?, ?, ?)", batch)

    def _merge(self) -> None:
        """The changes over the previous export: later copies replace earlier ones of the
        same ``Type/id``, and what the deleted files name is removed."""
        db = self._db
        db.execute("CREATE INDEX res_ref ON res (kind, rid, gen)")
        self.filed.replaced = db.execute(
            "DELETE FROM res WHERE gen = 0 AND rid IS NOT NULL AND EXISTS"
            " (SELECT 1 FROM res AS later WHERE later.gen = 1"
            " AND later.kind = res.kind AND later.rid = res.rid)"
        ).rowcount
        for kind, rid in self._deleted():
            if kind in SHARED:
                gone = db.execute("DELETE FROM shared WHERE ref = ?", (f"{kind}/{rid}",))
            else:
                gone = db.execute("DELETE FROM res WHERE kind = ? AND rid = ?", (kind, rid))
            self.filed.deleted += gone.rowcount

    def _deleted(self) -> Iterator[tuple[str, str]]:
        """``(type, id)`` of each resource the changes' deleted files name: transaction
        Bundles whose entries are ``DELETE Type/id`` (Bulk Data Access, ``deleted``)."""
        folder = self.folder / DELETED
        paths = export_files(folder) if folder.is_dir() else []
        for path in paths:
            with _open(path) as lines:
                for line in lines:
                    if not line.strip():
                        continue
                    named = _deleted_refs(line)
                    if named is None:
                        self.filed.unreadable_lines += 1
                        continue
                    yield from named

    def write(self, folder: Path) -> None:
        """The filed export (merged, for an incremental run) as NDJSON per type, with
        ``export.json`` from the changes' own: the next incremental run's ``previous``."""
        folder.mkdir(parents=True, exist_ok=True)
        handles: dict[str, io.BufferedWriter] = {}
        try:
            rows = self._db.execute("SELECT kind, body FROM res")
            shared = self._db.execute(
                "SELECT substr(ref, 1, instr(ref, '/') - 1), body FROM shared"
            )
            for source in (rows, shared):
                while page := source.fetchmany(PAGE):
                    for kind, body in page:
                        if kind not in handles:
                            handles[kind] = (folder / f"{kind}.ndjson").open("wb")
                        handles[kind].write(body + b"\n")
        finally:
            for handle in handles.values():
                handle.close()
        about = read_about(self.folder) | {"since": None, "mergedOver": True}
        (folder / ABOUT).write_bytes(orjson.dumps(about, option=orjson.OPT_INDENT_2))

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

    def _row(self, line: bytes, gen: int) -> tuple[str, str, str | None, int, bytes] | None:
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
        rid = resource.get("id") if isinstance(resource.get("id"), str) else None
        if kind in SHARED:
            if rid is not None:
                self._db.execute(
                    "INSERT OR REPLACE INTO shared VALUES (?, ?)", (f"{kind}/{rid}", line)
                )
            return None
        patient = patient_of(resource)
        if patient is None:
            self.filed.without_patient += 1
            return None
        return patient, kind, rid, gen, line

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


def _deleted_refs(line: bytes) -> list[tuple[str, str]] | None:
    """The ``(type, id)`` pairs a deleted-file line names; None when it is not a Bundle of
    ``DELETE Type/id`` entries (counted as unreadable: a deletion not understood is said)."""
    try:
        bundle = orjson.loads(line)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(bundle, dict) or bundle.get("resourceType") != "Bundle":
        return None
    entries = bundle.get("entry")
    if not isinstance(entries, list):
        return None
    found = []
    for entry in entries:
        request = entry.get("request") if isinstance(entry, dict) else None
        if not isinstance(request, dict) or request.get("method") != "DELETE":
            return None
        url = request.get("url")
        if not isinstance(url, str):
            return None
        parts = url.split("?")[0].strip("/").split("/")  # "Type/id", or a full URL to it
        if len(parts) < 2 or not parts[-2].isalpha() or not parts[-1]:
            return None
        found.append((parts[-2], parts[-1]))
    return found


def _open(path: Path) -> io.BufferedIOBase:
    return gzip.open(path, "rb") if path.name.endswith(".gz") else path.open("rb")
