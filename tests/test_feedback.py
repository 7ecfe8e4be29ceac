"""Feedback: the endpoint, the issuance log, storage on SQLite and PostgreSQL, the report."""

from __future__ import annotations

import json
import os
import time
import uuid
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser

import pytest
import sqlalchemy as sa

from cds_service import create_app, report
from cds_service.cli import main
from cds_service.store import (
    CARDS,
    FEEDBACK,
    JTIS,
    MIGRATIONS,
    SCHEMA_VERSION,
    SNOOZES,
    IssuedCard,
    Store,
    migrate,
)

from .conftest import TEST_SETTINGS, ConformanceClient
from .support.builders import hook_request, load_bundle

POSTGRES_URL = os.environ.get("ALPHA1_CDS_TEST_POSTGRES_URL")
FEEDBACK_URL = "/cds-services/aatd-patient-view/feedback"


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request, tmp_path):
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'alpha1.sqlite'}"
    if not POSTGRES_URL:
        pytest.skip("no PostgreSQL: set ALPHA1_CDS_TEST_POSTGRES_URL (.ci/run starts one)")
    engine = sa.create_engine(POSTGRES_URL)
    migrate(engine)
    with engine.begin() as connection:  # every test starts from empty tables
        for table in (FEEDBACK, CARDS, SNOOZES, JTIS):
            connection.execute(table.delete())
    engine.dispose()
    return POSTGRES_URL


@pytest.fixture
def app(database_url):
    app = create_app(
        {**TEST_SETTINGS, "database_url": database_url, "patient_hash_key": "test-key-not-a-secret"}
    )
    app.test_client_class = ConformanceClient
    yield app
    app.extensions["alpha1_cds"].store.close()


@pytest.fixture
def client(app):
    return app.test_client()


CHECKLIST = "aatd-care-checklist"


def issue_cards(app, client, fixture: str = "seed-002-lung-transplant") -> list[dict]:
    response = client.post(
        "/cds-services/aatd-patient-view", json=hook_request(load_bundle(fixture))
    )
    app.extensions["alpha1_cds"].store.flush()
    return response.json["cards"]


def accepted(card: dict, at: str = "2026-11-21T10:00:00Z") -> dict:
    return {
        "card": card["uuid"],
        "outcome": "accepted",
        "outcomeTimestamp": at,
        "acceptedSuggestions": [{"id": s["uuid"]} for s in card.get("suggestions", [])[:1]]
        or [{"id": "none"}],
    }


def overridden(
    card: dict,
    reason: str = "already-addressed",
    display: str = "Already addressed",
    at: str = "2026-11-21T10:05:00Z",
) -> dict:
    return {
        "card": card["uuid"],
        "outcome": "overridden",
        "outcomeTimestamp": at,
        "overrideReason": {
            "reason": {
                "system": "urn:alpha1-cds:override-reason",
                "code": reason,
                "display": display,
            },
            "userComment": "done last week",
        },
    }


def rows(app, table) -> list:
    with app.extensions["alpha1_cds"].store.engine.connect() as connection:
        return connection.execute(sa.select(table)).all()


def test_issued_cards_are_logged_without_patient_data(app, client):
    cards = issue_cards(app, client)
    logged = {row.card_uuid: row for row in rows(app, CARDS)}
    assert set(logged) == {card["uuid"] for card in cards}
    for card in cards:
        row = logged[card["uuid"]]
        assert row.topic == card["source"]["topic"]["code"]
        assert row.indicator == card["indicator"]
        assert json.loads(row.suggestion_uuids) == [s["uuid"] for s in card.get("suggestions", [])]
        assert row.patient_key != "seed-002"  # a keyed hash, never the id
        assert len(row.patient_key) == 64


def test_single_feedback_is_stored(app, client):
    card = issue_cards(app, client)[0]
    response = client.post(FEEDBACK_URL, json={"feedback": [accepted(card)]})
    assert response.status_code == 200
    assert response.json == {"received": 1, "new": 1}
    [row] = rows(app, FEEDBACK)
    assert (row.card_uuid, row.outcome, row.service) == (
        card["uuid"],
        "accepted",
        "aatd-patient-view",
    )


def test_feedback_right_after_the_hook_call_finds_its_card(app, client):
    """The writer gathers issued cards for a moment before writing them; feedback sent at
    once (no flush by the test) must still find its card and hide the topic."""
    response = client.post(
        "/cds-services/aatd-patient-view",
        json=hook_request(load_bundle("seed-002-lung-transplant")),
    )
    checklist = next(c for c in response.json["cards"] if c["source"]["topic"]["code"] == CHECKLIST)
    answer = client.post(FEEDBACK_URL, json={"feedback": [overridden(checklist)]})
    assert answer.status_code == 200
    assert "unknownCards" not in answer.json
    again = client.post(
        "/cds-services/aatd-patient-view",
        json=hook_request(load_bundle("seed-002-lung-transplant")),
    )
    assert CHECKLIST not in [c["source"]["topic"]["code"] for c in again.json["cards"]]


def test_batched_and_repeated_feedback_is_idempotent(app, client):
    cards = issue_cards(app, client)
    batch = {"feedback": [accepted(cards[0]), overridden(cards[1]), overridden(cards[2])]}
    assert client.post(FEEDBACK_URL, json=batch).json == {"received": 3, "new": 3}
    assert client.post(FEEDBACK_URL, json=batch).json == {"received": 3, "new": 0}
    later = {"feedback": [overridden(cards[0], at="2026-11-22T09:00:00Z")]}
    assert client.post(FEEDBACK_URL, json=later).json == {"received": 1, "new": 1}
    assert len(rows(app, FEEDBACK)) == 4


def test_a_bad_entry_rejects_the_whole_request(app, client):
    cards = issue_cards(app, client)
    batch = {
        "feedback": [
            accepted(cards[0]),
            {
                "card": cards[1]["uuid"],
                "outcome": "accepted",
                "outcomeTimestamp": "2026-11-21T10:00:00Z",
            },
        ]
    }
    response = client.post(FEEDBACK_URL, json=batch)
    assert response.status_code == 400
    assert response.json["issue"][0]["expression"] == ["feedback[1].acceptedSuggestions"]
    assert rows(app, FEEDBACK) == []


@pytest.mark.parametrize(
    ("entry", "where"),
    [
        ({"outcome": "ignored"}, "feedback[0].outcome"),
        ({"outcomeTimestamp": "yesterday"}, "feedback[0].outcomeTimestamp"),
        ({"overrideReason": {}}, "feedback[0].overrideReason"),
        ({"card": None}, "feedback[0].card"),
    ],
)
def test_invalid_feedback_names_the_field(client, entry, where):
    base = {"card": "c1", "outcome": "overridden", "outcomeTimestamp": "2026-11-21T10:00:00Z"}
    response = client.post(FEEDBACK_URL, json={"feedback": [{**base, **entry}]})
    assert response.status_code == 400
    assert where in {e for issue in response.json["issue"] for e in issue.get("expression", [])}


def test_epic_variants_are_understood(app, client):
    cards = issue_cards(app, client)
    plural = {
        "card": cards[0]["uuid"],
        "outcome": "overridden",
        "outcomeTimestamp": "2026-11-21T10:00:00Z",
        "overrideReasons": [
            {"reason": {"code": "patient-declined", "display": "Patient declined"}}
        ],
    }
    extension = {
        "card": cards[1]["uuid"],
        "outcome": "overridden",
        "outcomeTimestamp": "2026-11-21T10:00:00Z",
        "extension": {
            "com.epic.cdshooks.feedback.overrideReason.reasonCategory": "3",
            "com.epic.cdshooks.feedback.overrideReason.reasonDisplay": "Not relevant",
        },
    }
    assert client.post(FEEDBACK_URL, json={"feedback": [plural, extension]}).json["new"] == 2
    stored = {row.card_uuid: row for row in rows(app, FEEDBACK)}
    assert stored[cards[0]["uuid"]].override_display == "Patient declined"
    assert stored[cards[1]["uuid"]].override_code == "3"
    assert stored[cards[1]["uuid"]].override_display == "Not relevant"


def test_unknown_cards_are_stored_and_reported(app, client):
    stranger = str(uuid.uuid4())
    response = client.post(FEEDBACK_URL, json={"feedback": [overridden({"uuid": stranger})]})
    assert response.json == {"received": 1, "new": 1, "unknownCards": [stranger]}


def test_unknown_service_feedback_is_404(client):
    assert client.post("/cds-services/nope/feedback", json={"feedback": []}).status_code == 404


def test_migrations_are_versioned_and_rerunnable(app):
    engine = app.extensions["alpha1_cds"].store.engine
    assert migrate(engine) == MIGRATIONS[-1][0]
    with engine.connect() as connection:
        versions = connection.scalars(sa.select(SCHEMA_VERSION.c.version)).all()
    assert versions == [version for version, _ in MIGRATIONS]


@pytest.fixture
def seeded(app, client):
    """Cards from two patients (each with a care checklist); four answered."""
    seed_002 = issue_cards(app, client)
    seed_000 = issue_cards(app, client, "seed-000-zz-emphysema")
    by_topic = {card["source"]["topic"]["code"]: card for card in seed_002 + seed_000}
    checklists = [c for c in seed_002 + seed_000 if c["source"]["topic"]["code"] == CHECKLIST]
    assert len(checklists) == 2
    feedback = [
        accepted(by_topic["augmentation-candidate"]),
        accepted(by_topic["immunoglobulin-trough-low"]),
        overridden(checklists[0]),
        overridden(checklists[1], "not-applicable", "Does not apply to this patient"),
    ]
    client.post(FEEDBACK_URL, json={"feedback": feedback})
    return app


def test_report_counts_rates_and_reasons(seeded):
    built = report.build(seeded.extensions["alpha1_cds"].store.engine)
    by_topic = {(row.topic, row.indicator): row for row in built.rows}
    candidate = by_topic[("augmentation-candidate", "info")]
    assert (candidate.issued, candidate.accepted, candidate.acceptance_rate) == (1, 1, 1.0)
    checklist = by_topic[(CHECKLIST, "info")]
    assert (checklist.issued, checklist.overridden, checklist.override_rate) == (2, 2, 1.0)
    assert dict(built.reasons) == {"Already addressed": 1, "Does not apply to this patient": 1}
    assert built.never_answered == sum(row.issued for row in built.rows) - 4


class _Text(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.cells: list[str] = []

    def handle_data(self, data: str) -> None:
        if data.strip():
            self.cells.append(data.strip())


def test_html_report_shows_the_rates_and_reasons(seeded, tmp_path):
    url = str(
        seeded.extensions["alpha1_cds"].store.engine.url.render_as_string(hide_password=False)
    )
    out = tmp_path / "report.html"
    assert (
        main(["feedback-report", "--database", url, "--format", "html", "--output", str(out)]) == 0
    )
    page = out.read_text()
    assert "<svg" in page
    parser = _Text()
    parser.feed(page)
    cells = parser.cells
    row = cells.index("augmentation-candidate")
    assert cells[row + 1 : row + 6] == ["info", "1", "100%", "0%", "0"]
    assert "Already addressed: 1" in cells
    assert "Does not apply to this patient: 1" in cells


def test_text_and_json_reports(seeded, capsys):
    url = str(
        seeded.extensions["alpha1_cds"].store.engine.url.render_as_string(hide_password=False)
    )
    assert main(["feedback-report", "--database", url]) == 0
    assert "augmentation-candidate" in capsys.readouterr().out
    assert (
        main(["feedback-report", "--database", url, "--format", "json", "--since", "2000-01-01"])
        == 0
    )
    body = json.loads(capsys.readouterr().out)
    candidate = next(t for t in body["topics"] if t["topic"] == "augmentation-candidate")
    assert candidate["acceptanceRate"] == 1.0


def test_workers_starting_at_once_on_a_fresh_database_all_start(tmp_path):
    """Eight workers migrating a fresh SQLite file at the same moment: none fails."""
    from concurrent.futures import ThreadPoolExecutor

    from cds_service.store import Store

    url = f"sqlite:///{tmp_path}/fresh.sqlite"
    with ThreadPoolExecutor(8) as pool:
        stores = list(pool.map(lambda _: Store(url), range(8)))
    keys = {store.patient_key("p1") for store in stores}
    assert len(keys) == 1  # one generated key, shared by all
    for store in stores:
        assert migrate(store.engine) == MIGRATIONS[-1][0]
        store.close()


# --- reliability (issue 17) ------------------------------------------------------------------


def test_the_same_instant_written_three_ways_is_one_entry(app, client):
    card = issue_cards(app, client)[0]
    moments = ["2026-11-21T10:00:00Z", "2026-11-21T10:00:00.000Z", "2026-11-21T11:00:00+01:00"]
    feedback = [overridden(card, at=moment) for moment in moments]
    answer = client.post(FEEDBACK_URL, json={"feedback": feedback})
    assert answer.json["new"] == 1


def test_feedback_while_the_store_is_down_is_a_503_with_retry_after(app, client, monkeypatch):
    store = app.extensions["alpha1_cds"].store
    card = issue_cards(app, client)[0]

    def down(*_args, **_kwargs):
        raise sa.exc.OperationalError("INSERT", {}, Exception("server closed the connection"))

    monkeypatch.setattr(store.engine, "begin", down)
    answer = client.post(FEEDBACK_URL, json={"feedback": [overridden(card)]})
    assert answer.status_code == 503
    assert answer.headers["Retry-After"] == "30"
    assert answer.json["resourceType"] == "OperationOutcome"


@pytest.fixture
def sqlite_app(tmp_path, monkeypatch):
    """A service on SQLite whose feedback waits 2 s for the store (1 + 1), not 4."""
    monkeypatch.setattr("cds_service.store.feedback_log.STORE_WAIT_SECONDS", 1)
    app = create_app({**TEST_SETTINGS, "database_url": f"sqlite:///{tmp_path / 'f.sqlite'}"})
    app.test_client_class = ConformanceClient
    yield app
    app.extensions["alpha1_cds"].store.close()


def test_a_503_saying_nothing_was_kept_is_true_after_the_store_answers(sqlite_app):
    """Issue 24 item 5: the store answered after the request had given up, and the row
    was stored although the EHR had been told 'nothing was kept'."""
    client = sqlite_app.test_client()
    card = issue_cards(sqlite_app, client)[0]
    store = sqlite_app.extensions["alpha1_cds"].store
    blocker = store.engine.raw_connection()
    blocker.execute("BEGIN EXCLUSIVE")  # another writer holds the database for 3 s
    try:
        answer = client.post(FEEDBACK_URL, json={"feedback": [overridden(card)]})
        time.sleep(1.0)
    finally:
        blocker.rollback()
        blocker.close()
    assert answer.status_code == 503
    assert "nothing was kept" in answer.json["issue"][0]["diagnostics"]
    store.close()  # the lane's write has finished (or been rolled back)
    assert rows(sqlite_app, FEEDBACK) == []


def test_a_commit_under_way_when_the_wait_ends_is_waited_for(sqlite_app, monkeypatch):
    """The near miss: the write had begun committing when the request's wait ran out; its
    outcome (stored) is the answer, not a 503 that would contradict it."""
    from cds_service.store import CommitGate

    client = sqlite_app.test_client()
    card = issue_cards(sqlite_app, client)[0]
    real_commit = CommitGate.commit

    def slow_commit(self):
        decided = real_commit(self)
        time.sleep(2.5)  # past the 2 s wait, within the 1 s more a begun commit is given
        return decided

    monkeypatch.setattr(CommitGate, "commit", slow_commit)
    answer = client.post(FEEDBACK_URL, json={"feedback": [overridden(card)]})
    assert answer.status_code == 200, answer.json
    assert answer.json["new"] == 1
    assert len(rows(sqlite_app, FEEDBACK)) == 1


def test_issued_cards_are_retried_not_dropped(app, client, monkeypatch):
    store = app.extensions["alpha1_cds"].store
    real_begin, failures = store.engine.begin, {"left": 2}

    def flaky_begin():
        if failures["left"]:
            failures["left"] -= 1
            raise sa.exc.OperationalError("INSERT", {}, Exception("database is locked"))
        return real_begin()

    store.cards.retry_first = 0.0  # retried at once
    monkeypatch.setattr(store.engine, "begin", flaky_begin)
    cards = issue_cards(app, client)
    monkeypatch.setattr(store.engine, "begin", real_begin)
    stored = {row.card_uuid for row in rows(app, CARDS)}
    assert {card["uuid"] for card in cards} <= stored


def test_instants_at_the_edge_of_the_calendar_are_kept_as_sent():
    from cds_service.feedback import normalised_instant

    assert normalised_instant("0001-01-01T00:00:00+01:00") == "0001-01-01T00:00:00+01:00"
    assert normalised_instant("2026-11-21T11:00:00+01:00") == "2026-11-21T10:00:00.000Z"


def test_old_cards_and_feedback_are_purged_and_recent_ones_kept(app, client):
    """Issue 17 item 13: retention. Feedback older than retention_days (400) goes; issued
    cards, the audit trail, stay until audit_retention_days (2190, six years: issue 28)."""
    cards = issue_cards(app, client)
    client.post(FEEDBACK_URL, json={"feedback": [accepted(cards[0])]})
    store = app.extensions["alpha1_cds"].store
    assert store.purge(datetime.now(UTC))["cards"] == 0  # nothing is old yet
    assert len(rows(app, CARDS)) == len(cards)
    counts = store.purge(datetime.now(UTC) + timedelta(days=401))
    assert counts["feedback"] == 1
    assert counts["cards"] == 0  # a year on, the audit trail is still whole
    assert rows(app, FEEDBACK) == []
    counts = store.purge(datetime.now(UTC) + timedelta(days=2191))
    assert counts["cards"] == len(cards)
    assert rows(app, CARDS) == []


def test_the_purge_runs_by_itself(database_url):
    store = Store(database_url, "k", audit_retention_days=1, purge_every=0.1)
    old = datetime.now(UTC) - timedelta(days=2)
    card = IssuedCard("c" * 36, "aatd-patient-view", "family-testing", "info", (), "h", None, old)
    store.log_issued([card])
    store.flush()
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        with store.engine.connect() as connection:
            if connection.scalar(sa.select(sa.func.count()).select_from(CARDS)) == 0:
                break
        time.sleep(0.1)
    else:
        pytest.fail("the old card was not purged")
    store.close()


def test_a_read_only_sqlite_connection_is_reopened_and_nothing_is_lost(tmp_path):
    """Issue 17 item 6. A connection that opened the file read-only (simulated with SQLite's
    query_only, as the tests run as root) kept failing until the worker restarted; now the
    failed write's retry opens a fresh connection and the cards are written."""
    store = Store(f"sqlite:///{tmp_path}/cards.sqlite", "k")
    with store.engine.connect() as connection:  # back to the pool, read-only
        connection.exec_driver_sql("PRAGMA query_only = ON")
    card = IssuedCard(
        "d" * 36, "aatd-patient-view", "family-testing", "info", (), "h", None, datetime.now(UTC)
    )
    store.log_issued([card])
    store.flush(timeout=15)
    with store.engine.connect() as connection:
        assert connection.scalar(sa.select(sa.func.count()).select_from(CARDS)) == 1
    store.close()


def test_rows_the_database_refuses_are_not_retried_for_ever(tmp_path):
    """Only a database that cannot be reached is waited for: a batch it refuses is dropped,
    counted and logged, and the writer goes on with the next cards."""
    store = Store(f"sqlite:///{tmp_path}/cards.sqlite", "k")
    now = datetime.now(UTC)
    bad = IssuedCard("e" * 36, "s", "t", "info", (), "h", None, now)
    with store.engine.begin() as connection:  # a trigger: the database refuses such a row
        connection.exec_driver_sql(
            "CREATE TRIGGER refuse BEFORE INSERT ON alpha1_cards_issued "
            "WHEN NEW.topic = 't' BEGIN SELECT RAISE(ABORT, 'refused'); END"
        )
    store.log_issued([bad])
    store.flush(timeout=5)
    good = IssuedCard("f" * 36, "s", "family-testing", "info", (), "h", None, now)
    store.log_issued([good])
    store.flush(timeout=5)
    assert store.dropped == 1
    with store.engine.connect() as connection:
        assert list(connection.scalars(sa.select(CARDS.c.card_uuid))) == ["f" * 36]
    store.close()


# --- what the schema accepts, the store can hold (data integrity) ---------------------------

EPIC = "com.epic.cdshooks.feedback.overrideReason."
UNSTORABLE = {
    "a card id longer than its column": ({"card": "c" * 80}, "card"),
    "a NUL in a comment": (
        {"overrideReason": {"userComment": "declined\u0000"}},
        "overrideReason.userComment",
    ),
    "a long Epic reason code": ({"extension": {f"{EPIC}reasonCategory": "z" * 300}}, "reason.code"),
    "a long checklist item": (
        {"extension": {"urn:alpha1-cds:checklist": ["i" * 200]}},
        "urn:alpha1-cds:checklist",
    ),
}


@pytest.mark.parametrize("shape", UNSTORABLE)
def test_feedback_the_store_cannot_hold_is_400_naming_the_field(client, database_url, shape):
    """Was a 503 'retry' for ever on PostgreSQL, whose columns refuse what SQLite keeps."""
    change, field = UNSTORABLE[shape]
    entry = {
        "card": "4c8a5b1e-0000-4000-8000-000000000000",
        "outcome": "overridden",
        "outcomeTimestamp": "2026-11-21T10:00:00Z",
        **change,
    }
    response = client.post(FEEDBACK_URL, json={"feedback": [entry]})
    assert response.status_code == 400, response.json
    assert field in response.json["issue"][0]["expression"][0]
    engine = sa.create_engine(database_url)
    with engine.connect() as connection:
        assert connection.execute(sa.select(sa.func.count()).select_from(FEEDBACK)).scalar() == 0
    engine.dispose()
