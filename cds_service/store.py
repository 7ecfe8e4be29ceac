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
import secrets
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
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
# A topic a clinician overrode for a patient (keyed hash), hidden until ``until``.
SNOOZES = sa.Table(
    "alpha1_snoozes",
    METADATA,
    sa.Column("patient_key", sa.String(64), nullable=False),
    sa.Column("topic", sa.String(100), nullable=False),
    sa.Column("until", sa.DateTime(timezone=True), nullable=False),
    sa.Column("card_uuid", sa.String(64), nullable=False),
    sa.UniqueConstraint("patient_key", "topic", "card_uuid", name="alpha1_snooze_once"),
)
sa.Index("alpha1_snoozes_patient", SNOOZES.c.patient_key, SNOOZES.c.until)
# Secrets the service makes for itself: the patient-hash key when none is configured, so
# that every instance sharing the database hashes alike.
SECRETS = sa.Table(
    "alpha1_secrets",
    METADATA,
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("value", sa.String(128), nullable=False),
)


# Client JWT ids seen (CDS Hooks "jti"), each until its token expires: one use across every
# worker and instance on this database.
JTIS = sa.Table(
    "alpha1_jtis",
    METADATA,
    sa.Column("iss", sa.String(255), primary_key=True),
    sa.Column("jti", sa.String(255), primary_key=True),
    sa.Column("expires", sa.Float, nullable=False),
)
sa.Index("alpha1_jtis_expires", JTIS.c.expires)


PURGE_SECONDS = 3600.0  # how often the background writer purges old rows


def _add_item_topics(connection: sa.Connection) -> None:
    """The reminders of a checklist card, so that overriding it hides each of them."""
    columns = {c["name"] for c in sa.inspect(connection).get_columns(CARDS.name)}
    if "item_topics" not in columns:
        connection.execute(sa.text(f"ALTER TABLE {CARDS.name} ADD COLUMN item_topics TEXT"))


# Numbered migrations: each runs once, in order, in its own transaction. Add, never edit.
Migration = Sequence[sa.Table] | Callable[[sa.Connection], None]
MIGRATIONS: list[tuple[int, Sequence[Migration]]] = [
    (1, ((CARDS, FEEDBACK),)),
    (2, ((SNOOZES, SECRETS), _add_item_topics)),
    (3, ((JTIS,),)),
]
ITEM_TOPICS = sa.Column("item_topics", sa.Text)
CARDS.append_column(ITEM_TOPICS)


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
    # A checklist card's items: (topic, the uuids of its suggestions), in card order.
    item_topics: tuple[tuple[str, tuple[str, ...]], ...] = ()


@dataclass(frozen=True, slots=True)
class FeedbackEntry:
    card_uuid: str
    outcome: str
    outcome_timestamp: str
    accepted_suggestions: tuple[str, ...] = ()
    override_code: str | None = None
    override_display: str | None = None
    user_comment: str | None = None
    # On a checklist card overridden in part: the items meant, by topic or suggestion uuid.
    items: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Stored:
    new: int
    unknown_cards: tuple[str, ...]


class Store:
    def __init__(
        self,
        url: str,
        patient_hash_key: str | None = None,
        snooze_days: Mapping[str, int] | None = None,
        retention_days: int = 0,
        purge_every: float = PURGE_SECONDS,
    ) -> None:
        """``retention_days``: issued cards and feedback older than this are deleted by the
        background writer every ``purge_every`` seconds (0: kept for ever)."""
        self.engine = _engine(url)
        self.retention_days = retention_days
        self.purge_every = purge_every
        self._purged = time.monotonic()
        migrate(self.engine)
        self._key = (patient_hash_key or generated_key(self.engine)).encode()
        self.snooze_days = dict(snooze_days or {})
        self._snoozes: dict[str, dict[str, datetime]] = {}
        self._snoozes_loaded = float("-inf")
        self._snoozes_lock = threading.Lock()  # guards updates from stored feedback
        self._reloading = threading.Lock()  # one reload at a time, never waited for
        self._queue: queue.Queue[IssuedCard | threading.Event] = queue.Queue(maxsize=10_000)
        # Calls from request threads (token ids, feedback) run here, each waited for a bounded
        # time: a frozen database (no answer at all, so no server-side timeout fires) then
        # holds at most these threads, never a request thread (issue 17 item 3).
        self._lane = ThreadPoolExecutor(STORE_LANE_THREADS, thread_name_prefix="store")
        self.dropped = 0  # issued cards dropped because the queue was full (logged)
        # After a call of one kind ("jti", "feedback") on the lane timed out or could not
        # reach the database, calls of that kind answer at once for BREAK_SECONDS (503, or
        # the worker's own jti memory) instead of each waiting out the same fault. Per kind:
        # a jti check that was merely slow (its wait is short) must not refuse feedback.
        self._down_until: dict[str, float] = {}
        self._writer = threading.Thread(target=self._write_issued, name="card-log", daemon=True)
        self._writer.start()
        atexit.register(self.close)

    # --- issued cards: queued, written in the background -----------------------------------

    def patient_key(self, patient_id: str) -> str:
        """A keyed hash of the patient id (HMAC-SHA256): never the id itself."""
        return hmac.new(self._key, patient_id.encode(), hashlib.sha256).hexdigest()

    def secret_for(self, purpose: str) -> bytes:
        """A key for ``purpose`` (e.g. signing the SMART app's launch cookie), derived from
        the patient-hash key so every worker and instance sharing the database agrees."""
        return hmac.new(self._key, f"alpha1-cds:{purpose}".encode(), hashlib.sha256).digest()

    # --- client JWT ids: one use across workers and instances -------------------------------

    def first_use(self, iss: str, jti: str, expires: float) -> bool | None:
        """True the first time (iss, jti) is seen, False for a replay, None when the store
        cannot say within JTI_WAIT_SECONDS (the caller then relies on its own memory)."""
        try:
            return self._on_lane("jti", JTI_WAIT_SECONDS, self._first_use, iss, jti, expires)
        except (FutureTimeout, StoreUnavailableError):
            logs.event("jti-store-failed", logging.ERROR, error="timeout or store down")
            return None

    def _on_lane(self, kind: str, wait: float, call: Callable[..., Any], *args: Any) -> Any:
        """``call(*args)`` on the store lane, waited for ``wait`` seconds at most (then
        LaneTimeoutError, which holds the call's future: it may still finish)."""
        if self._down(kind):
            raise StoreUnavailableError
        future = self._lane.submit(call, *args)
        try:
            return future.result(wait)
        except FutureTimeout:
            self._down_until[kind] = time.monotonic() + BREAK_SECONDS
            raise LaneTimeoutError(future) from None
        except (sa.exc.OperationalError, sa.exc.InterfaceError):
            self._down_until[kind] = time.monotonic() + BREAK_SECONDS
            raise

    def _down(self, kind: str) -> bool:
        return time.monotonic() < self._down_until.get(kind, 0.0)

    def _first_use(self, iss: str, jti: str, expires: float) -> bool | None:
        now = time.time()
        row = {"iss": iss[:255], "jti": jti[:255], "expires": expires}
        insert = _insert_ignoring_duplicates(self.engine, JTIS).returning(JTIS.c.jti)
        try:
            with self.engine.begin() as connection:
                if secrets.randbelow(100) == 0:  # now and then, forget expired ids
                    connection.execute(sa.delete(JTIS).where(JTIS.c.expires < now))
                inserted = connection.execute(insert, [row]).all()
                if inserted:
                    return True
                # Seen before: a replay, unless the earlier token has expired.
                earlier = connection.scalar(
                    sa.select(JTIS.c.expires).where(
                        JTIS.c.iss == row["iss"], JTIS.c.jti == row["jti"]
                    )
                )
                if earlier is not None and earlier < now:
                    connection.execute(
                        sa.update(JTIS)
                        .where(JTIS.c.iss == row["iss"], JTIS.c.jti == row["jti"])
                        .values(expires=expires)
                    )
                    return True
                return False
        except sa.exc.SQLAlchemyError as error:
            logs.event("jti-store-failed", logging.ERROR, **describe(error))
            return None

    # --- overrides honoured: topics hidden per patient for a period -------------------------

    def hidden_topics(self, patient_key: str, now: datetime | None = None) -> frozenset[str]:
        """Topics a clinician overrode for this patient, still within their period.

        Read from an in-process snapshot of the active snoozes (a dictionary lookup on the
        hook path), reloaded from the database at most every ``SNOOZE_REFRESH_SECONDS`` and
        updated at once by the feedback this process stores: another worker or instance
        sees an override within that time. A store fault keeps the last snapshot and is
        logged: an override is a convenience, a card is safety."""
        now = now or datetime.now(UTC)
        snapshot = self._snoozes_now()
        return frozenset(
            topic for topic, until in snapshot.get(patient_key, {}).items() if until > now
        )

    def _snoozes_now(self) -> dict[str, dict[str, datetime]]:
        """The current snapshot. One thread reloads it when it is due; the others keep using
        the one they have and never wait, so a slow or frozen database never holds a hook."""
        if time.monotonic() - self._snoozes_loaded < SNOOZE_REFRESH_SECONDS:
            return self._snoozes
        if self._reloading.acquire(blocking=False):
            try:
                if time.monotonic() - self._snoozes_loaded >= SNOOZE_REFRESH_SECONDS:
                    self._reload_snoozes()
            finally:
                self._reloading.release()
        return self._snoozes

    def _reload_snoozes(self) -> None:
        now = datetime.now(UTC)
        query = sa.select(SNOOZES.c.patient_key, SNOOZES.c.topic, SNOOZES.c.until).where(
            SNOOZES.c.until > now
        )
        try:
            with self.engine.connect() as connection:
                rows = connection.execute(query).all()
        except sa.exc.SQLAlchemyError as error:
            logs.event("snooze-read-failed", logging.ERROR, **describe(error))
            self._snoozes_loaded = time.monotonic()  # retried after the refresh period
            return
        snapshot: dict[str, dict[str, datetime]] = {}
        for patient_key, topic, until in rows:
            _remember(snapshot, patient_key, topic, _aware(until))
        self._snoozes = snapshot
        self._snoozes_loaded = time.monotonic()

    def _snooze(
        self, connection: sa.Connection, entries: Sequence[FeedbackEntry], now: datetime
    ) -> list[dict[str, Any]]:
        """Feedback 'overridden' on a card hides its topic (a checklist: each of its items, or
        only the items the entry names) for the patient it was issued for, for the topic's
        period (0: never hidden)."""
        named = {e.card_uuid: set(e.items) for e in entries if e.outcome == "overridden"}
        overridden = set(named)
        if not overridden:
            return []
        issued = connection.execute(
            sa.select(
                CARDS.c.card_uuid, CARDS.c.topic, CARDS.c.item_topics, CARDS.c.patient_key
            ).where(CARDS.c.card_uuid.in_(overridden))
        ).all()
        rows = []
        for card_uuid, topic, item_topics, patient_key in issued:
            if patient_key is None:
                continue
            for hidden in _hidden_topics(topic, item_topics, named[card_uuid]):
                days = self.snooze_days.get(hidden, self.snooze_days.get("default", 0))
                if days > 0:
                    rows.append(
                        {
                            "patient_key": patient_key,
                            "topic": hidden,
                            "until": now + timedelta(days=days),
                            "card_uuid": card_uuid,
                        }
                    )
        if rows:
            connection.execute(_insert_ignoring_duplicates(self.engine, SNOOZES), rows)
        return rows

    def log_issued(self, cards: Iterable[IssuedCard]) -> None:
        for card in cards:
            try:
                self._queue.put_nowait(card)
            except queue.Full:
                self.dropped += 1
                logs.event(
                    "card-log-full", logging.ERROR, card=card.card_uuid, dropped=self.dropped
                )

    def flush(self, timeout: float = 10.0) -> None:
        """Wait until every card queued before this call is written (tests, shutdown)."""
        done = threading.Event()
        self._queue.put(done)
        done.wait(timeout)

    def close(self) -> None:
        if self._writer.is_alive():
            self.flush()
        self._lane.shutdown(wait=True)  # their connections go back to the pool, then closed
        self.engine.dispose()

    def _write_issued(self) -> None:
        """Drain the queue in batches; flush markers are released once what precedes is written."""
        while True:
            try:
                batch = [self._queue.get(timeout=self.purge_every)]
            except queue.Empty:
                batch = []
            if time.monotonic() - self._purged >= self.purge_every:
                self._purged = time.monotonic()
                self.purge()
            self._gather(batch)
            cards = [item for item in batch if isinstance(item, IssuedCard)]
            if cards:
                self._insert_cards(cards)
            for item in batch:
                if isinstance(item, threading.Event):
                    item.set()
                self._queue.task_done()

    def _gather(self, batch: list[IssuedCard | threading.Event]) -> None:
        """Add to ``batch`` what arrives within WRITE_WINDOW_SECONDS of its first card: one
        transaction for many hook calls costs the request threads far less of the GIL than
        one per call. A flush marker (feedback about a card just issued, shutdown) ends the
        wait at once."""
        deadline = time.monotonic() + WRITE_WINDOW_SECONDS
        while batch and len(batch) < WRITE_BATCH_MAX:
            if isinstance(batch[-1], threading.Event):
                return
            remaining = deadline - time.monotonic()
            try:
                item = self._queue.get(timeout=remaining) if remaining > 0 else None
            except queue.Empty:
                item = None
            if item is None:
                return
            batch.append(item)

    def purge(self, now: datetime | None = None) -> dict[str, int]:
        """Delete what is past its time: issued cards and feedback older than the retention
        period, expired overrides and token ids. Several instances may purge alike."""
        now = now or datetime.now(UTC)
        deletes = {
            "snoozes": sa.delete(SNOOZES).where(SNOOZES.c.until < now),
            "jtis": sa.delete(JTIS).where(JTIS.c.expires < now.timestamp()),
        }
        if self.retention_days > 0:
            cutoff = now - timedelta(days=self.retention_days)
            deletes["cards"] = sa.delete(CARDS).where(CARDS.c.issued_at < cutoff)
            deletes["feedback"] = sa.delete(FEEDBACK).where(FEEDBACK.c.received_at < cutoff)
        try:
            with self.engine.begin() as connection:
                counts = {name: connection.execute(d).rowcount for name, d in deletes.items()}
        except sa.exc.SQLAlchemyError as error:
            self._reopen_after(error)
            logs.event("store-purge-failed", logging.ERROR, **describe(error))
            return {}
        if any(counts.values()):
            logs.event("store-purged", **counts)
        return counts

    def _reopen_after(self, error: sa.exc.SQLAlchemyError) -> None:
        """After an operational failure, open fresh connections next time: a connection that
        was opened while the SQLite file was read-only stays read-only for good, and one to a
        restarted PostgreSQL is dead (issue 17 item 6)."""
        if isinstance(error, sa.exc.OperationalError | sa.exc.InterfaceError):
            self.engine.dispose()

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
                "item_topics": json.dumps(dict(c.item_topics)) if c.item_topics else None,
            }
            for c in cards
        ]
        attempt = 0
        while True:
            try:
                with self.engine.begin() as connection:
                    connection.execute(_insert_ignoring_duplicates(self.engine, CARDS), rows)
                if attempt:
                    logs.event("card-log-recovered", cards=len(rows), attempts=attempt + 1)
                return
            except (sa.exc.OperationalError, sa.exc.InterfaceError) as error:
                self._reopen_after(error)
                attempt += 1
                if attempt & (attempt - 1) == 0:  # attempts 1, 2, 4, 8...: a line each
                    logs.event(
                        "card-log-retry",
                        logging.WARNING,
                        cards=len(rows),
                        attempt=attempt,
                        queued=self._queue.qsize(),
                        **describe(error),
                    )
                # The writer thread waits, never a hook call: cards issued meanwhile queue
                # up (bounded; past it they are dropped and counted, card-log-full).
                time.sleep(min(0.5 * 2 ** (attempt - 1), RETRY_MAX_SECONDS))
            except sa.exc.SQLAlchemyError as error:  # the rows, not the database: no retry
                self.dropped += len(rows)
                logs.event("card-log-failed", logging.ERROR, cards=len(rows), **describe(error))
                return

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
        if self._down("feedback"):
            logs.event("feedback-store-failed", logging.ERROR, error="store down")
            raise StoreUnavailableError
        if self._queue.unfinished_tasks:  # queued, or in the writer's hands, not yet written
            self.flush(timeout=2.0)  # a card issued moments ago is known, not "unknown"
        gate = CommitGate()
        try:
            return self._on_lane(
                "feedback",
                STORE_WAIT_SECONDS + 1,
                self._store_feedback,
                rows,
                entries,
                uuids,
                now,
                gate,
            )
        except LaneTimeoutError as timeout:
            return self._after_timeout(timeout.future, gate)
        except sa.exc.SQLAlchemyError as error:
            self._reopen_after(error)
            logs.event("feedback-store-failed", logging.ERROR, **describe(error))
            raise StoreUnavailableError from None

    def _after_timeout(self, future: Any, gate: CommitGate) -> Stored:
        """The request stopped waiting for its feedback. If the write had not reached its
        commit, it never will (the gate is shut): nothing was stored, a 503 says retry. If
        the commit had begun, its outcome is the answer: waited for a little longer, and
        only if even that runs out is the outcome unknown (said so; resending is safe, an
        entry is kept once)."""
        if gate.abandon():
            logs.event("feedback-store-failed", logging.ERROR, error="timeout")
            raise StoreUnavailableError from None
        try:
            stored: Stored = future.result(STORE_WAIT_SECONDS)
            return stored
        except FutureTimeout:
            logs.event("feedback-store-failed", logging.ERROR, error="commit outcome unknown")
            raise StoreOutcomeUnknownError from None

    def _store_feedback(
        self,
        rows: list[dict[str, Any]],
        entries: Sequence[FeedbackEntry],
        uuids: set[str],
        now: datetime,
        gate: CommitGate,
    ) -> Stored:
        # RETURNING yields only the rows inserted: duplicates are skipped, not counted.
        insert = _insert_ignoring_duplicates(self.engine, FEEDBACK).returning(FEEDBACK.c.id)
        with self.engine.begin() as connection:
            new = len(connection.execute(insert, rows).all())
            snoozed = self._snooze(connection, entries, now)
            known = set(
                connection.scalars(sa.select(CARDS.c.card_uuid).where(CARDS.c.card_uuid.in_(uuids)))
            )
            if not gate.commit():  # the request has answered 503: roll back, keep nothing
                raise AbandonedError
        with self._snoozes_lock:  # committed: this process sees it at once
            for row in snoozed:
                _remember(self._snoozes, row["patient_key"], row["topic"], row["until"])
        return Stored(new=new, unknown_cards=tuple(sorted(uuids - known)))


SNOOZE_REFRESH_SECONDS = 30.0
WRITE_WINDOW_SECONDS = 0.1  # issued cards gathered into one write (see _gather)
WRITE_BATCH_MAX = 500
STORE_WAIT_SECONDS = 3
STORE_LANE_THREADS = 2
JTI_WAIT_SECONDS = 0.5  # a hook call waits no longer for the shared replay check
RETRY_MAX_SECONDS = 5.0  # the longest pause between attempts to write issued cards
BREAK_SECONDS = 5.0  # how long the store is taken as down after a call timed out or failed


class StoreUnavailableError(Exception):
    """The store could not take the feedback; nothing of the request was stored."""


class StoreOutcomeUnknownError(StoreUnavailableError):
    """The feedback's commit began but did not finish in time: it may have been stored."""


class LaneTimeoutError(FutureTimeout):
    """A call on the store lane outlived its wait; ``future`` is the call, still running."""

    def __init__(self, future: Any) -> None:
        super().__init__()
        self.future = future


class AbandonedError(Exception):
    """Raised inside a transaction whose caller gave up: the transaction rolls back."""


class CommitGate:
    """Decides once, between a write reaching its commit and its caller giving up, which
    came first, so that a request never answers "nothing was kept" for a write that
    then commits (issue 24 item 5)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._decided: str | None = None

    def commit(self) -> bool:
        """The writer asks to commit: True unless the caller has already given up."""
        return self._decide("commit")

    def abandon(self) -> bool:
        """The caller gives up: True unless the writer is already committing."""
        return self._decide("abandon")

    def _decide(self, choice: str) -> bool:
        with self._lock:
            self._decided = self._decided or choice
            return self._decided == choice


def _hidden_topics(topic: str, stored_items: str | None, named: set[str]) -> list[str]:
    """The topics an override hides: the card's own, or its checklist items (all of them,
    or those named by topic or by one of their suggestions' uuids)."""
    if not stored_items:
        return [topic]
    items = json.loads(stored_items)
    if isinstance(items, list):  # rows written before items kept their suggestions
        items = {item: [] for item in items}
    if not named:
        return list(items)
    return [item for item, uuids in items.items() if item in named or named & set(uuids)]


def describe(error: BaseException) -> dict[str, str]:
    """A store error for the log: its class and the driver's first line, without the SQL
    parameters SQLAlchemy appends (they could hold a clinician's comment)."""
    original = getattr(error, "orig", None) or error
    first = str(original).strip().splitlines()[0] if str(original).strip() else ""
    return {"error": type(original).__name__, "message": first[:300]}


def _remember(
    snapshot: dict[str, dict[str, datetime]], patient_key: str, topic: str, until: datetime
) -> None:
    topics = snapshot.setdefault(patient_key, {})
    topics[topic] = max(until, topics.get(topic, until))


def _aware(moment: datetime) -> datetime:
    """SQLite returns naive datetimes for what was stored in UTC."""
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


class StoreStartError(Exception):
    """The database could not be reached at start-up: one line, password hidden."""


def prepare_store(
    url: str,
    timeout: float = 30.0,
    say: Callable[[str], None] = print,
    sleep: Callable[[float], None] = time.sleep,
) -> None:
    """Migrate the database and make the patient-hash key if there is none: what a server
    runs once before its workers start. A database that cannot be reached (PostgreSQL not
    up yet) is retried with back-off for ``timeout`` seconds, each try said in one line;
    then StoreStartError says why, never a traceback."""
    where = sa.engine.make_url(url).render_as_string(hide_password=True)
    waited, wait = 0.0, 1.0
    while True:
        engine = _engine(url)
        try:
            migrate(engine)
            generated_key(engine)
            return
        except sa.exc.DBAPIError as error:
            reason = str(error.orig or error).strip().splitlines()[0][:300]
            problem = f"the database {where} cannot be reached"
            if waited + wait > timeout:
                raise StoreStartError(f"{problem}: {reason}") from None
            say(f"alpha1-cds: {problem} ({reason}); retrying in {wait:g} s")
        finally:
            engine.dispose()
        sleep(wait)
        waited, wait = waited + wait, wait * 2


def generated_key(engine: sa.Engine) -> str:
    """The patient-hash key made at first start and kept in the database (insert-or-keep),
    so that it works out of the box and every instance sharing the database hashes alike."""
    with engine.begin() as connection:
        insert = _insert_ignoring_duplicates(engine, SECRETS)
        connection.execute(insert, [{"name": "patient_hash_key", "value": secrets.token_hex(32)}])
        stored = connection.scalar(
            sa.select(SECRETS.c.value).where(SECRETS.c.name == "patient_hash_key")
        )
    return str(stored)


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
    # Bounded waits: a database that does not answer fails a call in seconds instead of
    # holding its thread (connect, each statement, and a free connection from the pool).
    return sa.create_engine(
        url,
        pool_pre_ping=True,
        pool_timeout=STORE_WAIT_SECONDS,
        connect_args={
            "connect_timeout": STORE_WAIT_SECONDS,
            "options": f"-c statement_timeout={STORE_WAIT_SECONDS * 1000}",
        },
    )


def _insert_ignoring_duplicates(engine: sa.Engine, table: sa.Table) -> Any:
    dialect = postgresql if engine.dialect.name == "postgresql" else sqlite
    return dialect.insert(table).on_conflict_do_nothing()


def migrate(engine: sa.Engine, attempts: int = 5) -> int:
    """Apply the migrations not yet applied; the schema version after it.

    Several workers may start at once on a fresh database: when another one wins the race
    (a table or version row that already exists), this one waits a moment and reads again,
    so a first start never dies on it."""
    for attempt in range(attempts):
        try:
            return _migrate(engine)
        except (sa.exc.IntegrityError, sa.exc.OperationalError, sa.exc.ProgrammingError):
            if attempt == attempts - 1:
                raise
            time.sleep(0.05 * (attempt + 1))
    raise AssertionError("unreachable")


def _migrate(engine: sa.Engine) -> int:
    with engine.begin() as connection:
        SCHEMA_VERSION.create(connection, checkfirst=True)
        current = connection.scalar(sa.select(sa.func.max(SCHEMA_VERSION.c.version))) or 0
        for version, steps in MIGRATIONS:
            if version <= current:
                continue
            for step in steps:
                if callable(step):
                    step(connection)
                else:
                    for table in step:
                        table.create(connection, checkfirst=True)
            connection.execute(SCHEMA_VERSION.insert().values(version=version))
            current = version
    return current
