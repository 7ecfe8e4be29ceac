"""Chart-open (issue 13): few cards that each ask for something, one care checklist,
overrides honoured per patient, suggestions a clinician can sign."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from importlib import resources

import pytest

from benchmarks.burden import measure
from cds_service import create_app
from hooks.actions import ACTIONS
from hooks.checklist import REMINDERS

from .conftest import TEST_SETTINGS, ConformanceClient
from .support.builders import hook_request, load_bundle
from .test_feedback import overridden

CHECKLIST = "aatd-care-checklist"
EXTENSION = "urn:alpha1-cds:checklist"
PATIENT_VIEW = "/cds-services/aatd-patient-view"


@pytest.fixture
def app(tmp_path):
    """A database of its own: overrides are remembered, and must not leak between tests."""
    app = create_app({**TEST_SETTINGS, "database_url": f"sqlite:///{tmp_path}/cards.sqlite"})
    app.test_client_class = ConformanceClient
    return app


def chart_open(client, fixture: str) -> list[dict]:
    response = client.post(PATIENT_VIEW, json=hook_request(load_bundle(fixture)))
    assert response.status_code == 200
    return response.json["cards"]


def by_topic(cards: list[dict]) -> dict[str, dict]:
    return {card["source"]["topic"]["code"]: card for card in cards}


# --- the checklist card -----------------------------------------------------------------------


def test_reminders_are_items_of_one_checklist_card(client):
    cards = by_topic(chart_open(client, "seed-000-zz-emphysema"))
    assert not set(REMINDERS) & cards.keys()
    checklist = cards[CHECKLIST]
    items = checklist["extension"][EXTENSION]
    assert [i["topic"] for i in items] == ["liver-monitoring", "vaccinations-due", "family-testing"]
    assert checklist["summary"] == "Due: liver tests and 2 more"
    # The shared fact once at the top, then one plain line per item (no checkbox glyphs).
    above = checklist["detail"].split("\n---\n")[0].splitlines()
    assert above[0] == "PI*ZZ (genotype, severe), 14 May 2025"
    assert [line.split("**")[1] for line in above[1:]] == [i["summary"] for i in items]
    assert "[ ]" not in checklist["detail"]
    # Every item's suggestions are the card's suggestions, listed by uuid.
    listed = [uuid for item in items for uuid in item["suggestions"]]
    assert listed == [s["uuid"] for s in checklist["suggestions"]]
    assert all(item["suggestions"] for item in items)


def test_reminders_cards_setting_gives_a_card_per_reminder():
    app = create_app({**TEST_SETTINGS, "reminders": "cards"})
    app.test_client_class = ConformanceClient
    cards = by_topic(chart_open(app.test_client(), "seed-000-zz-emphysema"))
    assert CHECKLIST not in cards
    assert {"liver-monitoring", "vaccinations-due", "family-testing"} <= cards.keys()


def test_no_checklist_when_nothing_is_due(client):
    assert CHECKLIST not in by_topic(chart_open(client, "testing-copd-untested"))


# --- only cards that ask for something ----------------------------------------------------------


def test_not_indicated_only_where_the_question_arises(client):
    assert "augmentation-not-indicated" not in by_topic(
        chart_open(client, "not-indicated-zz-no-obstruction")
    )
    assert "augmentation-not-indicated" in by_topic(chart_open(client, "seed-001-ms-obstruction"))


def test_replacement_indicated_is_not_repeated_for_a_patient_on_it(client):
    assert "immunoglobulin-replacement-indicated" not in by_topic(
        chart_open(client, "seed-002-lung-transplant")
    )
    assert "immunoglobulin-replacement-indicated" in by_topic(
        chart_open(client, "immunoglobulin-severe-untreated")
    )


def test_family_testing_resolves_when_relatives_results_are_on_record(client):
    bundle = load_bundle("seed-000-zz-emphysema")
    bundle["entry"].append(
        {
            "resource": {
                "resourceType": "FamilyMemberHistory",
                "id": "seed-000-sister",
                "status": "completed",
                "patient": {"reference": "Patient/seed-000"},
                "relationship": {"text": "sister"},
                "condition": [
                    {"code": {"coding": [{"system": "http://snomed.info/sct", "code": "47461006"}]}}
                ],
            }
        }
    )
    response = client.post(PATIENT_VIEW, json=hook_request(bundle))
    items = by_topic(response.json["cards"])[CHECKLIST]["extension"][EXTENSION]
    assert "family-testing" not in [i["topic"] for i in items]


def test_burden_over_the_bundled_fixtures():
    found = measure()
    assert found["max"] <= 3
    assert found["reminder_cards"] == 0
    assert found["decision_cards"] + found["checklist_cards"] == found["cards"]
    assert found["checklist_cards"] <= found["chart_opens"]  # one checklist per chart-open
    cards = measure("cards")
    assert found["mean"] < cards["mean"]
    assert cards["decision_cards"] == found["decision_cards"]  # the setting moves reminders only


# --- overrides honoured ---------------------------------------------------------------------------


def test_an_overridden_checklist_hides_its_reminders_for_that_patient_only(app, client):
    checklist = by_topic(chart_open(client, "seed-000-zz-emphysema"))[CHECKLIST]
    app.extensions["alpha1_cds"].store.flush()
    answer = client.post(f"{PATIENT_VIEW}/feedback", json={"feedback": [overridden(checklist)]})
    assert answer.status_code == 200
    again = by_topic(chart_open(client, "seed-000-zz-emphysema"))
    assert CHECKLIST not in again  # liver, vaccines and family testing are snoozed
    assert "augmentation-candidate" in again  # a decision not overridden stays
    other = by_topic(chart_open(client, "candidate-zz-fev1-72"))
    assert CHECKLIST in other  # another patient still sees them


@pytest.mark.parametrize("by", ["topic", "suggestion"])
def test_one_checklist_item_can_be_overridden_alone(app, client, by):
    """Feedback on the checklist card naming one item (by its topic or by the uuid of one of
    its suggestions, in extension urn:alpha1-cds:checklist) hides that item only."""
    checklist = by_topic(chart_open(client, "seed-000-zz-emphysema"))[CHECKLIST]
    family = next(i for i in checklist["extension"][EXTENSION] if i["topic"] == "family-testing")
    named = family["topic"] if by == "topic" else family["suggestions"][0]
    app.extensions["alpha1_cds"].store.flush()
    entry = overridden(checklist) | {"extension": {EXTENSION: [named]}}
    assert client.post(f"{PATIENT_VIEW}/feedback", json={"feedback": [entry]}).status_code == 200
    again = by_topic(chart_open(client, "seed-000-zz-emphysema"))[CHECKLIST]
    assert [i["topic"] for i in again["extension"][EXTENSION]] == [
        "liver-monitoring",
        "vaccinations-due",
    ]


def test_a_snooze_expires(app, client):
    checklist = by_topic(chart_open(client, "seed-000-zz-emphysema"))[CHECKLIST]
    store = app.extensions["alpha1_cds"].store
    store.flush()
    client.post(f"{PATIENT_VIEW}/feedback", json={"feedback": [overridden(checklist)]})
    key = store.patient_key("seed-000")
    assert "family-testing" in store.hidden_topics(key)
    in_100_days = datetime.now(UTC) + timedelta(days=100)
    assert store.hidden_topics(key, in_100_days) == {"family-testing", "liver-monitoring"}
    assert store.hidden_topics(key, datetime.now(UTC) + timedelta(days=400)) == frozenset()


def _dismissed(card: dict, reason: str | None, items: list[str] | None = None) -> dict:
    """Feedback 'overridden' on a card: with a reason code, or a plain "Dismiss" (none)."""
    entry = overridden(card, reason=reason or "x")
    if reason is None:
        del entry["overrideReason"]
    if items is not None:
        entry["extension"] = {EXTENSION: items}
    return entry


def _hidden_after(app, client, entry: dict, days: int) -> frozenset[str]:
    store = app.extensions["alpha1_cds"].store
    store.flush()
    assert client.post(f"{PATIENT_VIEW}/feedback", json={"feedback": [entry]}).status_code == 200
    when = datetime.now(UTC) + timedelta(days=days)
    return store.hidden_topics(store.patient_key("seed-000"), when)


REMINDED = {"liver-monitoring", "vaccinations-due", "family-testing"}


@pytest.mark.parametrize(
    ("reason", "hidden_at_2_days", "hidden_at_4_days", "hidden_at_200_days"),
    [
        # A plain "Dismiss": briefly (dismiss_snooze_days, 3): the clinician in a hurry has
        # not decided that vaccines are not due.
        (None, REMINDED, set(), set()),
        # The record used is wrong: ask again soon, as for a dismissal.
        ("record-incorrect", REMINDED, set(), set()),
        # Done elsewhere: each topic's own period (family 365, liver 180, vaccines 90).
        ("already-addressed", REMINDED, REMINDED, {"family-testing"}),
        # The patient declined: as for done elsewhere, the topic's own period.
        ("patient-declined", REMINDED, REMINDED, {"family-testing"}),
        # Does not apply: 365 days, never longer than a reminder's interval (liver tests
        # here every 180 days, spirometry 365, vaccines the schedule's shortest, 365).
        ("not-applicable", REMINDED, REMINDED, {"family-testing", "vaccinations-due"}),
        # A reason the service does not know (an EHR's own list): the topic's period.
        ("epic-local-reason", REMINDED, REMINDED, {"family-testing"}),
    ],
)
def test_an_override_hides_for_what_its_reason_means(
    tmp_path, reason, hidden_at_2_days, hidden_at_4_days, hidden_at_200_days
):
    """Issue 25: one plain 'Dismiss' of the checklist hid every item for its full period
    (family testing and vaccines alike)."""
    settings = {
        **TEST_SETTINGS,
        "database_url": f"sqlite:///{tmp_path}/cards.sqlite",
        "lookback_liver_tests_days": 180,
    }
    app = create_app(settings)
    client = app.test_client()
    try:
        checklist = by_topic(chart_open(client, "seed-000-zz-emphysema"))[CHECKLIST]
        entry = _dismissed(checklist, reason)
        assert _hidden_after(app, client, entry, 2) == hidden_at_2_days
        store = app.extensions["alpha1_cds"].store
        key = store.patient_key("seed-000")
        later = {
            d: store.hidden_topics(key, datetime.now(UTC) + timedelta(days=d)) for d in (4, 200)
        }
        assert later[4] == hidden_at_4_days
        assert later[200] == hidden_at_200_days
    finally:
        app.extensions["alpha1_cds"].store.close()


def test_a_plain_dismissal_of_one_checklist_item_hides_that_item_briefly(app, client):
    checklist = by_topic(chart_open(client, "seed-000-zz-emphysema"))[CHECKLIST]
    entry = _dismissed(checklist, None, items=["vaccinations-due"])
    assert _hidden_after(app, client, entry, 2) == {"vaccinations-due"}
    store = app.extensions["alpha1_cds"].store
    key = store.patient_key("seed-000")
    assert store.hidden_topics(key, datetime.now(UTC) + timedelta(days=4)) == frozenset()


@pytest.mark.parametrize(
    ("reason", "hidden_at_4_days", "hidden_at_200_days"),
    [
        (None, set(), set()),
        ("already-addressed", {"family-testing"}, {"family-testing"}),
        ("not-applicable", {"family-testing"}, {"family-testing"}),
        ("patient-declined", {"family-testing"}, {"family-testing"}),
        ("record-incorrect", set(), set()),
    ],
)
def test_an_override_of_one_checklist_item_with_a_reason_hides_that_item_only(
    app, client, reason, hidden_at_4_days, hidden_at_200_days
):
    checklist = by_topic(chart_open(client, "seed-000-zz-emphysema"))[CHECKLIST]
    entry = _dismissed(checklist, reason, items=["family-testing"])
    assert _hidden_after(app, client, entry, 2) == {"family-testing"}
    store = app.extensions["alpha1_cds"].store
    key = store.patient_key("seed-000")
    for days, hidden in ((4, hidden_at_4_days), (200, hidden_at_200_days)):
        assert store.hidden_topics(key, datetime.now(UTC) + timedelta(days=days)) == hidden


@pytest.mark.parametrize(
    ("reason", "hidden_at_4_days", "hidden_at_40_days"),
    [
        (None, False, False),  # dismiss_snooze_days, 3
        ("patient-declined", True, False),  # the topic's period: augmentation-candidate, 30
        ("not-applicable", True, True),  # 365 days
    ],
)
def test_an_override_of_a_decision_card_hides_it_for_its_reasons_period(
    app, client, reason, hidden_at_4_days, hidden_at_40_days
):
    card = by_topic(chart_open(client, "seed-000-zz-emphysema"))["augmentation-candidate"]
    store = app.extensions["alpha1_cds"].store
    hidden = _hidden_after(app, client, _dismissed(card, reason), 2)
    assert "augmentation-candidate" in hidden
    assert hidden == {"augmentation-candidate"}  # that card only
    key = store.patient_key("seed-000")
    for days, expected in ((4, hidden_at_4_days), (40, hidden_at_40_days)):
        later = store.hidden_topics(key, datetime.now(UTC) + timedelta(days=days))
        assert ("augmentation-candidate" in later) is expected


def test_each_card_offers_the_override_reasons_that_fit_it(client):
    """A contraindication is not 'does not apply' nor for the patient to decline; a 'not
    indicated' card asks for nothing to address; the checklist offers each item's reasons
    in its extension entry (hooks/data/override_reasons.json)."""

    def codes(reasons: list[dict]) -> list[str]:
        return [r["code"] for r in reasons]

    contraindicated = by_topic(chart_open(client, "contraindicated-anaphylaxis-on-a1pi"))
    assert codes(contraindicated["augmentation-contraindicated"]["overrideReasons"]) == [
        "already-addressed",
        "record-incorrect",
    ]
    not_indicated = by_topic(chart_open(client, "seed-001-ms-obstruction"))
    assert codes(not_indicated["augmentation-not-indicated"]["overrideReasons"]) == [
        "not-applicable",
        "record-incorrect",
    ]
    checklist = by_topic(chart_open(client, "seed-000-zz-emphysema"))[CHECKLIST]
    for item in checklist["extension"][EXTENSION]:
        assert "patient-declined" in codes(item["overrideReasons"]), item["topic"]
        assert all(r["display"] for r in item["overrideReasons"])
    assert codes(checklist["overrideReasons"]) == [
        "already-addressed",
        "not-applicable",
        "record-incorrect",
        "patient-declined",
    ]


def test_a_contraindication_is_never_snoozed(app, client):
    card = by_topic(chart_open(client, "contraindicated-anaphylaxis-on-a1pi"))[
        "augmentation-contraindicated"
    ]
    app.extensions["alpha1_cds"].store.flush()
    client.post(f"{PATIENT_VIEW}/feedback", json={"feedback": [overridden(card)]})
    again = by_topic(chart_open(client, "contraindicated-anaphylaxis-on-a1pi"))
    assert "augmentation-contraindicated" in again


def test_no_patient_id_is_stored_in_clear(app, client):
    chart_open(client, "seed-000-zz-emphysema")
    store = app.extensions["alpha1_cds"].store
    store.flush()
    with store.engine.connect() as connection:
        dump = "\n".join(connection.connection.driver_connection.iterdump())
    assert "seed-000'" not in dump
    assert "Patient/seed-000" not in dump


# --- suggestions a clinician can sign -----------------------------------------------------------


def test_a1pi_is_offered_per_product_with_its_ndc_and_rate(client):
    candidate = by_topic(chart_open(client, "seed-000-zz-emphysema"))["augmentation-candidate"]
    orders = [
        s["actions"][0]["resource"]
        for s in candidate["suggestions"]
        if s["actions"][0]["resource"]["resourceType"] == "MedicationRequest"
    ]
    ndcs = {o["medicationCodeableConcept"]["coding"][0]["code"] for o in orders}
    assert ndcs == {"13533-705", "0944-2815", "0053-7202", "0944-2884"}
    glassia = next(o for o in orders if "Glassia" in o["medicationCodeableConcept"]["text"])
    dose = glassia["dosageInstruction"][0]["doseAndRate"][0]
    assert dose["doseQuantity"]["value"] == 4320
    assert dose["rateQuantity"] == {
        "value": 0.04,
        "unit": "mL/kg/min",
        "system": "http://unitsofmeasure.org",
        "code": "mL/kg/min",
    }
    assert glassia["dosageInstruction"][0]["route"]["coding"][0]["code"] == "47625008"


# A vaccine due is named by its group (the product is chosen when it is given).
VACCINE = "Vaccination due:"


def uncoded_texts() -> set[str]:
    """The texts of orderables the data file lists as uncoded, each with its reason."""
    data = resources.files("fhir_mappings").joinpath("data", "order_codes.json").read_text()
    listed = json.loads(data)["_uncoded"]
    assert all(reason.strip() for reason in listed.values())
    return {ACTIONS(f"{key}.text") for key in listed if key != "vaccinate"}


@pytest.mark.parametrize(
    "fixture",
    [
        "seed-000-zz-emphysema",
        "seed-002-lung-transplant",
        "advanced-zz-fev1-20",
        "candidate-zz-current-smoker",
        "discordant-mm-low-level",
        "workup-zz-no-spirometry",
    ],
)
def test_every_suggested_resource_is_coded_or_listed_as_uncoded(client, fixture):
    allowed = uncoded_texts()
    for card in chart_open(client, fixture):
        for suggestion in card.get("suggestions", []):
            for action in suggestion["actions"]:
                resource = action.get("resource")
                if action["type"] != "create":
                    continue
                concept = resource.get("code") or resource.get("medicationCodeableConcept")
                if concept.get("coding"):
                    continue
                text = concept["text"]
                assert text in allowed or text.startswith(VACCINE), text


def test_spirometry_is_ordered_by_its_snomed_code(client):
    cards = chart_open(client, "workup-zz-no-spirometry")
    spirometry = [
        s["actions"][0]["resource"]
        for card in cards
        for s in card.get("suggestions", [])
        if s["label"] == "Order spirometry with DLCO"
    ]
    assert spirometry
    assert spirometry[0]["code"]["coding"][0]["code"] == "127783003"


def test_genetic_counselling_is_ordered_by_its_snomed_code(client):
    checklist = by_topic(chart_open(client, "seed-000-zz-emphysema"))[CHECKLIST]
    item = next(i for i in checklist["extension"][EXTENSION] if i["topic"] == "family-testing")
    suggestions = {s["uuid"]: s for s in checklist["suggestions"]}
    [order] = [suggestions[uuid]["actions"][0]["resource"] for uuid in item["suggestions"]]
    assert order["code"]["coding"] == [
        {
            "system": "http://snomed.info/sct",
            "code": "788339009",
            "display": "Genetic consultation (procedure)",
        }
    ]


def test_each_checklist_item_offers_the_one_order_that_settles_it(client):
    """Issue 25: one button per item. The liver tests are the hepatic function panel by its
    LOINC panel code; every vaccine due is one order; each suggestion one action (Epic)."""
    checklist = by_topic(chart_open(client, "seed-000-zz-emphysema"))[CHECKLIST]
    suggestions = {s["uuid"]: s for s in checklist["suggestions"]}
    orders = {}
    for item in checklist["extension"][EXTENSION]:
        [uuid] = item["suggestions"]
        [action] = suggestions[uuid]["actions"]
        orders[item["topic"]] = action["resource"]
    liver = orders["liver-monitoring"]
    assert liver["code"]["coding"][0]["code"] == "24325-3"  # Hepatic function 2000 panel
    assert liver["category"][0]["coding"][0]["code"] == "108252007"  # Laboratory procedure
    assert orders["vaccinations-due"]["code"]["text"] == "Vaccination due: COVID-19"
    assert len(checklist["suggestions"]) == len(orders) <= 5


def test_every_vaccine_due_is_one_order_in_the_checklist(client):
    checklist = by_topic(chart_open(client, "dose-check-correct"))[CHECKLIST]
    labels = [s["label"] for s in checklist["suggestions"]]
    assert labels.count("Vaccinate: COVID-19, hepatitis A, hepatitis B") == 1
    assert not any(label.startswith("Vaccinate: hepatitis") for label in labels)


def test_the_liver_work_up_on_its_own_card_is_one_orderable_per_resource():
    """With reminders as cards: the panel and GGT (which the panel lacks) by LOINC, the
    ultrasound by SNOMED CT, the elastography in words (no verified code, order_codes.json
    says why)."""
    app = create_app({**TEST_SETTINGS, "reminders": "cards"})
    app.test_client_class = ConformanceClient
    card = by_topic(chart_open(app.test_client(), "seed-000-zz-emphysema"))["liver-monitoring"]
    orders = [s["actions"][0]["resource"] for s in card["suggestions"]]
    codes = [o["code"].get("coding", [{}])[0].get("code") for o in orders]
    assert codes == ["24325-3", "2324-2", "45036003", None]  # panel, GGT, ultrasound, VCTE
    assert orders[-1]["code"]["text"] == "Liver elastography (VCTE liver stiffness)"
    assert all(len(s["actions"]) == 1 for s in card["suggestions"])


def test_a_stuck_snapshot_reload_holds_no_other_hook():
    """A frozen database may hold the one thread that reloads overrides; every other hook
    call goes on with the snapshot it has."""
    import threading
    from concurrent.futures import ThreadPoolExecutor

    from cds_service.store.overrides import Overrides, SnoozePolicy

    started, release = threading.Event(), threading.Event()

    def stuck_load(_now):
        started.set()
        release.wait(10)
        return []

    overrides = Overrides(engine=None, snooze=SnoozePolicy({}), load=stuck_load)
    reloading = threading.Thread(target=overrides.hidden_topics, args=("a-patient-key",))
    reloading.start()
    try:
        assert started.wait(5)
        with ThreadPoolExecutor(1) as pool:
            other = pool.submit(overrides.hidden_topics, "a-patient-key")
            assert other.result(timeout=5) == frozenset()  # answered while the reload is stuck
    finally:
        release.set()
        reloading.join(5)


def test_a_fifth_a1pi_product_is_one_row_of_one_data_file(client, monkeypatch):
    """Issue 27: adding a product took ten files (two product lists, six prose copies of
    the brand list, a constant in suggestions.py). Now one row of
    fhir_mappings/data/medications.json is offered on the candidate card, named wherever
    the brands are listed, and read on orders (a made-up product, for this test only)."""
    import copy

    from fhir_mappings import medications, terminology
    from hooks import actions, knowledge

    row = {
        "code": "99999-001",
        "display": "Exampla 1 g",
        "brand": "Exampla",
        "word": "exampla",
        "offer": True,
        "rate_ml_per_kg_min": 0.05,
        "source": "a test row",
    }
    real_load = terminology._load

    def with_fifth(name: str, overlay: bool = True):
        data = copy.deepcopy(real_load(name, overlay))
        if name == "medications.json":
            data["a1pi"]["ndc_products"].append(row)
        return data

    cached = (
        medications._classes,
        medications._ndc_index,
        medications.offered_products,
        medications.brands,
        actions.a1pi_products,
        knowledge.bound_numbers,
        knowledge.guidelines,
        knowledge.statement,
    )
    monkeypatch.setattr(terminology, "_load", with_fifth)
    for function in cached:
        function.cache_clear()
    try:
        # IgA on record: no IgA check to order, so five products fit the five buttons.
        cards = by_topic(chart_open(client, "safety-anti-iga-elisa-normal"))
        candidate = cards["augmentation-candidate"]
        ndcs = [
            s["actions"][0]["resource"]["medicationCodeableConcept"]["coding"][0]["code"]
            for s in candidate["suggestions"]
            if s["actions"][0]["resource"]["resourceType"] == "MedicationRequest"
        ]
        assert ndcs[-1] == "99999-001"
        assert len(ndcs) == 5
        assert "Prolastin-C, Aralast NP, Zemaira, Glassia, Exampla" in json.dumps(candidate)
        assert medications.product_of({"text": "Exampla 4,000 mg IV weekly"}) == "a1pi"
    finally:
        monkeypatch.undo()
        for function in cached:
            function.cache_clear()
