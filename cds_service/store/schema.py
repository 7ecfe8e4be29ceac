"""The store's tables, their numbered migrations, and how an engine is opened.

An embedded SQLite file by default, so the service runs with no database to set up;
PostgreSQL by URL when several instances share one store. The schema is created and
upgraded by the numbered migrations below, recorded in ``alpha1_schema_version``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

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


def _add_item_topics(connection: sa.Connection) -> None:
    """The reminders of a checklist card, so that overriding it hides each of them."""
    columns = {c["name"] for c in sa.inspect(connection).get_columns(CARDS.name)}
    if "item_topics" not in columns:
        connection.execute(sa.text(f"ALTER TABLE {CARDS.name} ADD COLUMN item_topics TEXT"))


# The audit trail (issue 28): who was shown each card, by which client, on which knowledge,
# what it said, and whether it was shown at all (silent mode records without showing).
AUDIT_COLUMNS = (
    ("user_key", sa.String(64)),  # keyed hash of context.userId
    ("encounter_key", sa.String(64)),  # keyed hash of context.encounterId
    ("client_iss", sa.String(255)),
    ("client_tenant", sa.String(255)),
    ("knowledge_version", sa.String(64)),
    ("content_hash", sa.String(64)),
    ("shown", sa.Boolean()),  # NULL on rows from before: they were shown
)


def _add_audit_columns(connection: sa.Connection) -> None:
    columns = {c["name"] for c in sa.inspect(connection).get_columns(CARDS.name)}
    dialect = connection.dialect
    for name, kind in AUDIT_COLUMNS:
        if name not in columns:
            compiled = kind.compile(dialect=dialect)
            connection.execute(sa.text(f"ALTER TABLE {CARDS.name} ADD COLUMN {name} {compiled}"))


# Numbered migrations: each runs once, in order, in its own transaction. Add, never edit.
Migration = Sequence[sa.Table] | Callable[[sa.Connection], None]
MIGRATIONS: list[tuple[int, Sequence[Migration]]] = [
    (1, ((CARDS, FEEDBACK),)),
    (2, ((SNOOZES, SECRETS), _add_item_topics)),
    (3, ((JTIS,),)),
    (4, (_add_audit_columns,)),
]
CARDS.append_column(sa.Column("item_topics", sa.Text))
for _name, _kind in AUDIT_COLUMNS:
    CARDS.append_column(sa.Column(_name, _kind))

# Bounded waits: a database that does not answer fails a call in seconds instead of
# holding its thread (connect, each statement, and a free connection from the pool).
STORE_WAIT_SECONDS = 3


def open_engine(url: str) -> sa.Engine:
    """An engine for ``url``: SQLite in WAL mode (readers never block the writer), or
    PostgreSQL with every wait bounded by STORE_WAIT_SECONDS."""
    if url.startswith("sqlite"):
        engine = sa.create_engine(url, connect_args={"timeout": 10, "check_same_thread": False})

        @sa.event.listens_for(engine, "connect")
        def _pragmas(connection: Any, _record: Any) -> None:
            cursor = connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.close()

        return engine
    return sa.create_engine(
        url,
        pool_pre_ping=True,
        pool_timeout=STORE_WAIT_SECONDS,
        connect_args={
            "connect_timeout": STORE_WAIT_SECONDS,
            "options": f"-c statement_timeout={STORE_WAIT_SECONDS * 1000}",
        },
    )


def insert_ignoring_duplicates(engine: sa.Engine, table: sa.Table) -> Any:
    """INSERT ... ON CONFLICT DO NOTHING in the engine's dialect: every write of the store
    is idempotent, so a retry, a replayed spool or a second worker changes nothing."""
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


def describe(error: BaseException) -> dict[str, str]:
    """A store error for the log: its class and the driver's first line, without the SQL
    parameters SQLAlchemy appends (they could hold a clinician's comment)."""
    original = getattr(error, "orig", None) or error
    first = str(original).strip().splitlines()[0] if str(original).strip() else ""
    return {"error": type(original).__name__, "message": first[:300]}


def reopen_after(engine: sa.Engine, error: BaseException) -> None:
    """After an operational failure, open fresh connections next time: a connection that
    was opened while the SQLite file was read-only stays read-only for good, and one to a
    restarted PostgreSQL is dead. Connections in use elsewhere (the lane, the card writer)
    finish on the old pool; the next ones come from the new."""
    if isinstance(error, sa.exc.OperationalError | sa.exc.InterfaceError):
        engine.dispose()
