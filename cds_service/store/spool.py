"""The card spool: issued cards the database could not take in time, kept in a local file
and written to the database when it answers again.

A card goes here when the writer's queue is full, or when the process stops with cards
still unwritten (the database away, or slower than the stop allows). Each process appends
to its own file (JSON lines, fsynced); a file is replayed by the first writer that claims
it (an atomic rename), only into the database it was spooled for, and deleted once
written. Writing is idempotent (a card's uuid once), so a card spooled twice is stored
once. If even the spool cannot be written, the cards are counted and logged as lost.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from .. import logs
from ..metrics import metrics

SUFFIX = ".jsonl"


def default_folder(url: str) -> Path:
    """Beside the SQLite file (``cards.sqlite.spool``), else ``alpha1-cds-spool`` in the
    working directory."""
    parsed = sa.engine.make_url(url)
    if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:"):
        return Path(f"{parsed.database}.spool")
    return Path("alpha1-cds-spool")


class Spool:
    def __init__(self, folder: Path, database_url: str) -> None:
        self.folder = folder
        where = sa.engine.make_url(database_url).render_as_string(hide_password=True)
        # Files are named for their database, so a spool is never replayed into another.
        self.tag = hashlib.sha256(where.encode()).hexdigest()[:12]
        self.lost = 0  # cards that could not be spooled either
        self.waiting = False  # this process has spooled cards not yet replayed
        self._lock = threading.Lock()

    def keep(self, rows: Sequence[Mapping[str, Any]], reason: str) -> bool:
        """Append ``rows`` (JSON-ready) to this process's file; False if that failed."""
        if not rows:
            return True
        lines = "".join(json.dumps(row, separators=(",", ":")) + "\n" for row in rows)
        try:
            with self._lock:
                self.folder.mkdir(parents=True, exist_ok=True)
                with self._own_file().open("a", encoding="utf-8") as spool:
                    spool.write(lines)
                    spool.flush()
                    os.fsync(spool.fileno())
        except OSError as error:
            self.lost += len(rows)
            metrics().audit_lost.inc(len(rows))
            logs.event(
                "card-log-lost",
                logging.CRITICAL,
                cards=len(rows),
                lost=self.lost,
                reason=reason,
                error=type(error).__name__,
            )
            return False
        self.waiting = True
        metrics().audit_spooled.labels(reason).inc(len(rows))
        logs.event("card-log-spooled", logging.WARNING, cards=len(rows), reason=reason)
        return True

    def replay(
        self, write: Callable[[list[dict[str, Any]]], None], prefix: str = "cards", own: bool = True
    ) -> int:
        """Write every claimable file through ``write`` (which raises if the database cannot
        take them: the file is then released for a later try); the cards replayed.
        ``prefix``: the files' kind (``cards``: spooled; ``journal``: a killed process's
        journal, claimed only from a process that is gone, ``own=False``)."""
        replayed = 0
        if prefix == "cards":
            self.waiting = False
        for claimed in self._claim(prefix, own):
            rows = [json.loads(line) for line in claimed.read_text(encoding="utf-8").splitlines()]
            try:
                write(rows)
            except Exception:
                self.waiting = True
                # Released under a name of no process: any writer may claim it later, and a
                # file this process has started since is never overwritten.
                released = f"{prefix}-{self.tag}-released{uuid.uuid4().hex}{SUFFIX}"
                claimed.rename(self.folder / released)
                raise
            claimed.unlink()
            replayed += len(rows)
        if replayed:
            logs.event("card-log-replayed", cards=replayed)
        return replayed

    def _own_file(self) -> Path:
        return self.folder / f"cards-{self.tag}-{os.getpid()}{SUFFIX}"

    def _claim(self, prefix: str = "cards", own: bool = True) -> Iterator[Path]:
        """Files of this database whose process is gone, or this process's own when ``own``
        (taken under its lock, so no line is appended to a file being replayed)."""
        if not self.folder.is_dir():
            return
        for path in sorted(self.folder.glob(f"{prefix}-{self.tag}-*{SUFFIX}*")):
            owner = _owner(path.name)
            if owner == os.getpid() and not own:
                continue
            if owner != os.getpid() and _alive(owner):
                continue
            claimed = path.with_name(f"{path.name.split('.claimed-')[0]}.claimed-{os.getpid()}")
            try:
                with self._lock:
                    path.rename(claimed)
            except OSError:  # another process claimed it first
                continue
            yield claimed


def _owner(name: str) -> int | None:
    """The pid that wrote (or claimed) a spool file."""
    if ".claimed-" in name:
        digits = name.rsplit(".claimed-", 1)[1]
    else:
        digits = name.removesuffix(SUFFIX).rsplit("-", 1)[1]
    return int(digits) if digits.isdigit() else None


def _alive(pid: int | None) -> bool:
    if pid is None:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
