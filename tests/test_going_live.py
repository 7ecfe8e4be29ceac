"""Going live (issue 28 items 1, 4 and 5): the audit trail of each card, silent mode and the
report of what would have fired, topics off, indicator floors, and Epic's non-chart-open
triggers."""

from __future__ import annotations

import json
import logging
from datetime import date

import pytest
import sqlalchemy as sa

from cds_service import create_app
from cds_service.audit import knowledge_version
from cds_service.config import ConfigError
from cds_service.report import as_text, build
from cds_service.store import CARDS

from .conftest import TEST_SETTINGS
from .support.builders import hook_request, load_bundle

PATIENT_VIEW = "/cds-services/aatd-patient-view"
SEED = "seed-000-zz-emphysema"  # a candidate card and a checklist (liver, vaccines, family)


def _app(tmp_path, **settings):
    return create_app(TEST_SETTINGS | {"database_url": f"sqlite:///{tmp_path}/a.sqlite"} | settings)


def _open_chart(app, fixture: str = SEED, **request) -> list[dict]:
    answer = app.test_client().post(
        PATIENT_VIEW, json=hook_request(load_bundle(fixture), **request)
    )
    assert answer.status_code == 200
    return answer.json["cards"]


def _rows(app) -> list[dict]:
    store = app.extensions["alpha1_cds"].store
    store.flush()
    with store.engine.connect() as connection:
        return [dict(r._mapping) for r in connection.execute(sa.select(CARDS))]


def _topics(cards: list[dict]) -> set[str]:
    found = set()
    for card in cards:
        found.add(card["source"]["topic"]["code"])
        found |= {i["topic"] for i in card.get("extension", {}).get("urn:alpha1-cds:checklist", [])}
    return found


# --- the audit trail ----------------------------------------------------------------------------


def test_each_card_is_recorded_with_who_saw_it_on_what_knowledge_and_what_it_said(tmp_path, caplog):
    app = _app(tmp_path)
    with caplog.at_level(logging.INFO, logger="alpha1_cds"):
        cards = _open_chart(app)
    rows = {row["card_uuid"]: row for row in _rows(app)}
    store = app.extensions["alpha1_cds"].store
    user_id = hook_request(load_bundle(SEED))["context"]["userId"]
    for card in cards:
        row = rows[card["uuid"]]
        assert row["user_key"] == store.audit_key("user", user_id)
        assert row["user_key"] != store.patient_key(user_id)  # namespaced: never a patient's
        assert row["knowledge_version"] == knowledge_version()
        assert len(row["content_hash"]) == 64
        assert row["shown"] is True
    again = {c["source"]["topic"]["code"]: c for c in _open_chart(app)}
    hashes = {r["topic"]: r["content_hash"] for r in _rows(app)}
    first = {c["source"]["topic"]["code"]: rows[c["uuid"]]["content_hash"] for c in cards}
    assert first == hashes  # the same words give the same hash, call after call
    assert again.keys() == first.keys()
    line = next(r for r in caplog.records if r.getMessage() == "audit")  # the first call's
    event = line.fields["auditEvent"]
    assert event["resourceType"] == "AuditEvent"
    assert event["outcome"] == "0"
    assert event["subtype"][0]["code"] == "patient-view"
    identifiers = json.dumps(event)
    assert user_id not in identifiers
    assert "seed-000" not in identifiers  # the patient only as a keyed hash
    assert {c["uuid"] for c in cards} <= {
        e["what"]["identifier"]["value"]
        for e in event["entity"]
        if "card" in e["what"]["identifier"]["system"]
    }


def test_the_audit_line_validates_as_a_fhir_auditevent(tmp_path, caplog):
    from fhir.resources.R4B.auditevent import AuditEvent

    app = _app(tmp_path)
    with caplog.at_level(logging.INFO, logger="alpha1_cds"):
        _open_chart(app)
        app.test_client().post(PATIENT_VIEW, json={"hook": "patient-view"})  # refused: 400
    events = [r.fields["auditEvent"] for r in caplog.records if r.getMessage() == "audit"]
    assert [e["outcome"] for e in events] == ["0", "4"]
    for event in events:
        AuditEvent.model_validate(event)


def test_a_knowledge_edit_changes_the_knowledge_version(monkeypatch):
    from cds_service import audit

    before = knowledge_version()
    audit.knowledge_version.cache_clear()
    monkeypatch.setattr(audit, "_version", lambda: "9.9")
    try:
        assert knowledge_version().startswith("9.9+")
        assert knowledge_version().split("+")[1] == before.split("+")[1]  # same files
    finally:
        audit.knowledge_version.cache_clear()


# --- silent mode and switches -------------------------------------------------------------------


def test_silent_mode_answers_no_cards_records_them_and_the_report_counts_them(tmp_path):
    app = _app(tmp_path, display_mode="silent")
    assert _open_chart(app) == []
    rows = _rows(app)
    assert rows
    assert all(row["shown"] is False for row in rows)
    report = build(app.extensions["alpha1_cds"].store.engine)
    assert report.rows == []  # nothing was shown, so no acceptance rate
    silent = {topic: n for _, topic, n in report.silent}
    assert silent == {"augmentation-candidate": 1, "aatd-care-checklist": 1}
    assert "would have fired" in as_text(report)


def test_one_topic_silent_the_others_shown(tmp_path):
    app = _app(tmp_path, silent_topics=("vaccinations-due",))
    shown = _open_chart(app)
    assert "vaccinations-due" not in _topics(shown)
    assert {"augmentation-candidate", "liver-monitoring", "family-testing"} <= _topics(shown)
    silent = [row for row in _rows(app) if row["shown"] is False]
    assert [json.loads(row["item_topics"]).keys() for row in silent] == [{"vaccinations-due"}]


def test_a_topic_turned_off_is_not_decided_and_near_miss_its_neighbours_stay(tmp_path):
    app = _app(tmp_path, topics_off=("vaccinations-due",))
    topics = _topics(_open_chart(app))
    assert "vaccinations-due" not in topics
    assert {"liver-monitoring", "family-testing", "augmentation-candidate"} <= topics
    assert not any("vaccinations-due" in (row["item_topics"] or "") for row in _rows(app))


def test_a_topic_off_still_suppresses_what_it_contradicts(tmp_path):
    """Turning off 'augmentation-contraindicated' must not let 'start A1PI' through."""
    app = _app(tmp_path, topics_off=("augmentation-contraindicated",))
    topics = _topics(_open_chart(app, "contraindicated-anaphylaxis-on-a1pi"))
    assert "augmentation-contraindicated" not in topics
    assert "augmentation-candidate" not in topics


def test_an_indicator_floor_raises_never_lowers(tmp_path):
    app = _app(
        tmp_path,
        indicator_floor={
            "augmentation-candidate": "warning",
            "augmentation-contraindicated": "info",
        },
    )
    cards = {c["source"]["topic"]["code"]: c for c in _open_chart(app)}
    assert cards["augmentation-candidate"]["indicator"] == "warning"
    critical = {
        c["source"]["topic"]["code"]: c
        for c in _open_chart(app, "contraindicated-anaphylaxis-on-a1pi")
    }
    assert critical["augmentation-contraindicated"]["indicator"] == "critical"


@pytest.mark.parametrize(
    "settings",
    [
        {"topics_off": ("no-such-topic",)},
        {"silent_topics": ("no-such-topic",)},
        {"indicator_floor": {"augmentation-candidate": "urgent"}},
        {"display_mode": "quiet"},
    ],
)
def test_switches_that_name_nothing_real_stop_the_service_at_start(tmp_path, settings):
    with pytest.raises(ConfigError):
        _app(tmp_path, **settings)


# --- Epic's other triggers ----------------------------------------------------------------------


def _epic(action: str) -> dict:
    return {"extension": {"com.epic.cdshooks.request.bpa-trigger-action": action}}


def test_a_patient_view_fired_by_another_epic_trigger_gets_no_reminders(tmp_path):
    app = _app(tmp_path)
    other = _topics(_open_chart(app, **_epic("18")))
    assert "augmentation-candidate" in other  # the decision stands
    assert "aatd-care-checklist" not in other
    assert not other & {"liver-monitoring", "vaccinations-due", "family-testing"}


def test_near_miss_the_chart_open_trigger_and_no_trigger_get_the_checklist(tmp_path):
    app = _app(tmp_path)
    assert "aatd-care-checklist" in _topics(_open_chart(app, **_epic("60")))
    assert "aatd-care-checklist" in _topics(_open_chart(app))


def test_other_triggers_may_show_the_reminders_when_the_site_says_so(tmp_path):
    app = _app(tmp_path, other_trigger_reminders="show")
    assert "aatd-care-checklist" in _topics(_open_chart(app, **_epic("18")))


def test_explain_names_what_the_site_turned_off_and_what_it_decided_silently():
    from dataclasses import replace

    import hooks
    from cds_service.explain import format_explanation
    from fhir_mappings import map_patient
    from fhir_mappings.fhirjson import bundle_resources

    resources = list(bundle_resources(load_bundle(SEED)))
    facts = map_patient(resources, date(2026, 11, 21))
    policy = replace(
        hooks.Policy(),
        topics_off=frozenset({"family-testing"}),
        silent_topics=frozenset({"augmentation-candidate"}),
    )
    text = format_explanation(hooks.explain("patient-view", facts, policy))
    off = text.split("Turned off by the site")[1].split("\n\n")[0]
    silent = text.split("Decided silently")[1].split("\n\n")[0]
    assert "family-testing" in off
    assert "augmentation-candidate" in silent
