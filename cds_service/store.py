"""Where issued cards and clinicians' feedback are kept: SQLAlchemy over SQLite or PostgreSQL.

An embedded SQLite file by default, so the service runs with no database to set up;
PostgreSQL by URL when several instances share one store. The schema is created and
upgraded by the numbered migrations below, recorded in ``alpha1_schema_version``.

Issued cards are written by a background thread from a queue, so that logging them never
slows a hook response; feedback is written in the request, in one transaction, and
idempotently (the same card, outcome and time once).
"""

from __future__ import annotations

import atexit
import hashlib
import hmac
import json
import logging
import queue
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from . import logs

METADATA = sa.MetaData()

SCHEMA_VERSION = sa.Table(
    "alpha1_schema_version", METADATA, sa.Column("version", sa.Integer, primary_key=True)
)
CARDS = sa.Table(
    "alpha1_cards_issued",
    METADATA,
    sa.Column("card_uuid", sa.String(64), primary_key=True),
    sa.Column("service", sa.String(100), nullable=False),
    sa.Column("topic", sa.String(100), nullable=False),
    sa.Column("indicator", sa.String(20), nullable=False),
    sa.Column("suggestion_uuids", sa.Text, nullable=False),
    sa.Column("hook_instance", sa.String(64), nullable=False),
    sa.Column("patient_key", sa.String(64)),  # keyed hash, only when a key is configured
    sa.Column("issued_at", sa.DateTime(timezone=True), nullable=False),
)
FEEDBACK = sa.Table(
    "alpha1_feedback",
    METADATA,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("card_uuid", sa.String(64), nullable=False),
    sa.Column("service", sa.String(100), nullable=False),
    sa.Column("outcome", sa.String(20), nullable=False),
    sa.Column("accepted_suggestions", sa.Text),
    sa.Column("override_code", sa.String(200)),
    sa.Column("override_display", sa.String(500)),
    sa.Column("user_comment", sa.Text),
    sa.Column("outcome_timestamp", sa.String(40), nullable=False),
    sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
    sa.UniqueConstraint("card_uuid", "outcome", "outcome_timestamp", name="alpha1_feedback_once"),
)
sa.Index("alpha1_feedback_card", FEEDBACK.c.card_uuid)
sa.Index("alpha1_cards_issued_at", CARDS.c.issued_at)

# Numbered migrations: each runs once, in order, in its own transaction. Add, never edit.
MIGRATIONS: list[tuple[int, Sequence[sa.Table]]] = [
    (1, (CARDS, FEEDBACK)),
]


@dataclass(frozen=True, slots=True)
class IssuedCard:
    card_uuid: str
    service: str
    topic: str
    indicator: str
    suggestion_uuids: tuple[str, ...]
    hook_instance: str
    patient_key: str | None
    issued_at: datetime


@dataclass(frozen=True, slots=True)
class FeedbackEntry:
    card_uuid: str
    outcome: str
    outcome_timestamp: str
    accepted_suggestions: tuple[str, ...] = ()
    override_code: str | None = None
    override_display: str | None = None
    user_comment: str | None = None


@dataclass(frozen=True, slots=True)
class Stored:
    new: int
    unknown_cards: tuple[str, ...]


class Store:
    def __init__(self, url: str, patient_hash_key: str | None = None) -> None:
        self.engine = _engine(url)
        self._key = patient_hash_key.encode() if patient_hash_key else None
        migrate(self.engine)
        self._queue: queue.Queue[IssuedCard | threading.Event] = queue.Queue(maxsize=10_000)
        self._writer = threading.Thread(target=self._write_issued, name="card-log", daemon=True)
        self._writer.start()
        atexit.register(self.close)

    # --- issued cards: queued, written in the background -----------------------------------

    def patient_key(self, patient_id: str) -> str | None:
        """A keyed hash of the patient id (never the id itself), or None without a key."""
        if self._key is None:
            return None
        return hmac.new(self._key, patient_id.encode(), hashlib.sha256).hexdigest()

    def log_issued(self, cards: Iterable[IssuedCard]) -> None:
        for card in cards:
            try:
                self._queue.put_nowait(card)
            except queue.Full:
                logs.event("card-log-full", logging.WARNING, card=card.card_uuid)

    def flush(self, timeout: float = 10.0) -> None:
        """Wait until every card queued before this call is written (tests, shutdown)."""
        done = threading.Event()
        self._queue.put(done)
        done.wait(timeout)

    def close(self) -> None:
        if self._writer.is_alive():
            self.flush()
        self.engine.dispose()

    def _write_issued(self) -> None:
        """Drain the queue in batches; flush markers are released once what precedes is written."""
        while True:
            batch = [self._queue.get()]
            while not self._queue.empty() and len(batch) < 500:
                batch.append(self._queue.get_nowait())
            cards = [item for item in batch if isinstance(item, IssuedCard)]
            if cards:
                self._insert_cards(cards)
            for item in batch:
                if isinstance(item, threading.Event):
                    item.set()

    def _insert_cards(self, cards: list[IssuedCard]) -> None:
        rows = [
            {
                "card_uuid": c.card_uuid,
                "service": c.service,
                "topic": c.topic,
                "indicator": c.indicator,
                "suggestion_uuids": json.dumps(list(c.suggestion_uuids)),
                "hook_instance": c.hook_instance,
                "patient_key": c.patient_key,
                "issued_at": c.issued_at,
            }
            for c in cards
        ]
        try:
            with self.engine.begin() as connection:
                connection.execute(_insert_ignoring_duplicates(self.engine, CARDS), rows)
        except sa.exc.SQLAlchemyError as error:
            logs.event(
                "card-log-failed", logging.ERROR, cards=len(rows), error=type(error).__name__
            )

    # --- feedback: written in the request, idempotently ------------------------------------

    def store_feedback(self, service: str, entries: Sequence[FeedbackEntry]) -> Stored:
        now = datetime.now(UTC)
        rows = [
            {
                "card_uuid": e.card_uuid,
                "service": service,
                "outcome": e.outcome,
                "accepted_suggestions": json.dumps(list(e.accepted_suggestions)),
                "override_code": e.override_code,
                "override_display": e.override_display,
                "user_comment": e.user_comment,
                "outcome_timestamp": e.outcome_timestamp,
                "received_at": now,
            }
            for e in entries
        ]
        uuids = {e.card_uuid for e in entries}
        # RETURNING yields only the rows inserted: duplicates are skipped, not counted.
        insert = _insert_ignoring_duplicates(self.engine, FEEDBACK).returning(FEEDBACK.c.id)
        with self.engine.begin() as connection:
            new = len(connection.execute(insert, rows).all())

            known = set(
                connection.scalars(sa.select(CARDS.c.card_uuid).where(CARDS.c.card_uuid.in_(uuids)))
            )
        return Stored(new=new, unknown_cards=tuple(sorted(uuids - known)))


def _engine(url: str) -> sa.Engine:
    if url.startswith("sqlite"):
        engine = sa.create_engine(url, connect_args={"timeout": 10, "check_same_thread": False})

        @sa.event.listens_for(engine, "connect")
        def _pragmas(connection: Any, _record: Any) -> None:
            cursor = connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")  # readers never block the writer
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.close()

        return engine
    return sa.create_engine(url, pool_pre_ping=True)


def _insert_ignoring_duplicates(engine: sa.Engine, table: sa.Table) -> Any:
    dialect = postgresql if engine.dialect.name == "postgresql" else sqlite
    return dialect.insert(table).on_conflict_do_nothing()


def migrate(engine: sa.Engine) -> int:
    """Apply the migrations not yet applied; the schema version after it."""
    with engine.begin() as connection:
        SCHEMA_VERSION.create(connection, checkfirst=True)
        current = connection.scalar(sa.select(sa.func.max(SCHEMA_VERSION.c.version))) or 0
        for version, tables in MIGRATIONS:
            if version <= current:
                continue
            for table in tables:
                table.create(connection, checkfirst=True)
            connection.execute(SCHEMA_VERSION.insert().values(version=version))
            current = version
    return current
