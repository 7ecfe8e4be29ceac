"""Where issued cards and clinicians' feedback are kept: SQLAlchemy over SQLite or PostgreSQL.

One module per job, behind the ``Store`` facade the rest of the service uses:

- ``schema``: tables, numbered migrations, opening an engine;
- ``keys``: the patient-hash key (what is kept instead of a patient id);
- ``lane``: the bounded threads on which request threads' store calls run;
- ``card_log`` and ``spool``: issued cards, written in the background, spooled to a
  local file when the database cannot take them in time;
- ``feedback_log`` and ``overrides``: feedback, and the topics it hides per patient;
- ``replay_ids``: client JWT ids, one use across workers and instances;
- ``retention``: deleting what is past its time;
- ``startup``: what a server runs once before its workers start.
"""

from __future__ import annotations

import atexit
import os
import threading
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from pathlib import Path

import sqlalchemy as sa

from .card_log import STOP_SECONDS, Audit, CardLog, IssuedCard
from .feedback_log import CommitGate, FeedbackEntry, FeedbackLog, Stored
from .keys import PatientKeys, generated_key
from .lane import Lane, StoreOutcomeUnknownError, StoreUnavailableError
from .overrides import Overrides, SnoozePolicy
from .replay_ids import ReplayIds
from .retention import PURGE_SECONDS, Retention
from .schema import (
    CARDS,
    FEEDBACK,
    JTIS,
    MIGRATIONS,
    SCHEMA_VERSION,
    SNOOZES,
    describe,
    migrate,
    open_engine,
)
from .spool import Spool, default_folder
from .startup import StoreStartError, prepare_store

__all__ = [
    "CARDS",
    "FEEDBACK",
    "JTIS",
    "MIGRATIONS",
    "SCHEMA_VERSION",
    "SNOOZES",
    "Audit",
    "CommitGate",
    "FeedbackEntry",
    "IssuedCard",
    "SnoozePolicy",
    "Store",
    "StoreOutcomeUnknownError",
    "StoreStartError",
    "StoreUnavailableError",
    "Stored",
    "describe",
    "migrate",
    "prepare_store",
]


class Store:
    """The store as the service uses it. How its parts meet, all here:

    - One engine for every part. After an operational failure a part disposes of the
      engine's pool (``schema.reopen_after``): calls under way finish on their connections,
      the next ones open fresh.
    - Feedback first waits (2 s at most) for the card log to write what is queued, so a card
      issued moments ago is known to the feedback about it, not "unknown".
    - The card log's writer thread also runs the retention purge, every ``purge_every``
      seconds: one background thread per process.
    - Feedback writes the overrides it makes in its own transaction, and the override
      snapshot learns them at once.
    - Threads (the card writer, the lane) and pooled connections belong to one process:
      each part starts its threads on first use in each process, and the engine's
      connections inherited over a fork are left to the parent (``_here``).
    """

    def __init__(
        self,
        url: str,
        patient_hash_key: str | None = None,
        snooze: SnoozePolicy | Mapping[str, int] | None = None,
        retention_days: int = 0,
        purge_every: float = PURGE_SECONDS,
        spool_dir: str | Path | None = None,
        audit_retention_days: int = 0,
    ) -> None:
        self.engine = open_engine(url)
        migrate(self.engine)
        self._pid = os.getpid()
        self._pid_lock = threading.Lock()
        self.keys = PatientKeys(patient_hash_key or generated_key(self.engine))
        self.lane = Lane()
        if not isinstance(snooze, SnoozePolicy):  # a table of topic -> days, no reasons
            snooze = SnoozePolicy(dict(snooze or {}))
        self.overrides = Overrides(self.engine, snooze)
        self.retention = Retention(self.engine, retention_days, audit_retention_days)
        self.spool = Spool(Path(spool_dir) if spool_dir else default_folder(url), url)
        self.cards = CardLog(
            self.engine, self.spool, on_idle=self.retention.purge, idle_every=purge_every
        )
        self.feedback = FeedbackLog(self.engine, self.lane, self.overrides)
        self.replay_ids = ReplayIds(self.engine, self.lane)
        atexit.register(self.close)

    # --- keys ---------------------------------------------------------------------------------

    def patient_key(self, patient_id: str) -> str:
        """A keyed hash of the patient id (HMAC-SHA256): never the id itself."""
        return self.keys.patient_key(patient_id)

    def secret_for(self, purpose: str) -> bytes:
        return self.keys.secret_for(purpose)

    def audit_key(self, kind: str, value: str | None) -> str | None:
        """A keyed hash of a user or encounter id (None stays None)."""
        return self.keys.audit_key(kind, value) if value else None

    # --- the hook path --------------------------------------------------------------------------

    def start(self) -> None:
        """Start this process's card writer now (a worker once loaded): cards spooled by a
        stopped process are written without waiting for the first hook call."""
        self._here()
        self.cards.start()

    def first_use(self, iss: str, jti: str, expires: float) -> bool | None:
        self._here()
        return self.replay_ids.first_use(iss, jti, expires)

    def hidden_topics(self, patient_key: str, now: datetime | None = None) -> frozenset[str]:
        self._here()
        return self.overrides.hidden_topics(patient_key, now)

    def log_issued(self, cards: Iterable[IssuedCard]) -> None:
        self._here()
        self.cards.log(cards)

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until every card queued before this call is written (tests, shutdown)."""
        return self.cards.flush(timeout)

    # --- feedback -------------------------------------------------------------------------------

    def store_feedback(self, service: str, entries: Sequence[FeedbackEntry]) -> Stored:
        self._here()
        if self.cards.pending():  # queued, or in the writer's hands, not yet written
            self.cards.flush(timeout=2.0)
        return self.feedback.store(service, entries)

    # --- readiness ------------------------------------------------------------------------------

    def schema_state(self, wait: float) -> dict[str, object]:
        """For ``/readyz``: does the database answer within ``wait`` seconds, at the schema
        version this code expects? ``status``: ok, unreachable, or behind / ahead (a
        migration not run, or a newer version's database)."""
        self._here()
        expected = MIGRATIONS[-1][0]
        try:
            version = self.lane.run("ready", wait, self._schema_version)
        except Exception as error:  # a timeout, a refused connection, a dropped table
            return {"status": "unreachable", "expected": expected, "error": type(error).__name__}
        status = "ok" if version == expected else "behind" if version < expected else "ahead"
        return {"status": status, "version": version, "expected": expected}

    def _schema_version(self) -> int:
        with self.engine.connect() as connection:
            return int(connection.scalar(sa.select(sa.func.max(SCHEMA_VERSION.c.version))) or 0)

    # --- upkeep ---------------------------------------------------------------------------------

    def purge(self, now: datetime | None = None) -> dict[str, int]:
        self._here()
        return self.retention.purge(now)

    @property
    def dropped(self) -> int:
        """Issued cards neither written nor spooled (each logged ``card-log-lost``)."""
        return self.spool.lost

    def close(self, timeout: float = STOP_SECONDS) -> None:
        """Write what is queued within ``timeout`` (the rest is spooled), let calls under way
        finish, close the connections. Safe to call twice. In a forked process this closes
        only its own connections, never the parent's (``_here`` first)."""
        self._here()
        self.cards.close(timeout)
        self.lane.close()
        self.engine.dispose()

    def _here(self) -> None:
        """In a process forked after this store was made, the pooled connections are the
        parent's: forget them without closing (the parent still uses them)."""
        if self._pid == os.getpid():
            return
        with self._pid_lock:
            if self._pid != os.getpid():
                self.engine.dispose(close=False)
                self._pid = os.getpid()
