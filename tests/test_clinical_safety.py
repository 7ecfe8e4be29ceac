"""Clinical safety on records written the way real EHRs and Synthea write them (issue 12).

Each case is a fixture that triggers the rule and a near miss that must not, judged at
patient-view and, where an order can be signed, at order-sign with an A1PI draft.
Fixtures ``safety-*`` are derived by ``fixtures/derive.py`` (read it for what each holds).
"""

from __future__ import annotations

import pytest

import hooks
from fhir_mappings.fhirjson import bundle_resources
from hooks import Conclusion, Recommendation

from .support.builders import hook_request, load_bundle
from .support.inprocess import facts_of, with_a1pi_draft

CANDIDATE = "augmentation-candidate"


def view(fixture: str) -> dict[str, Recommendation]:
    facts = facts_of(list(bundle_resources(load_bundle(fixture))))
    found = {}
    for r in hooks.evaluate("patient-view", facts):
        found[r.topic] = r
        found |= {item.topic: item for item in r.items}
    return found


def signing(fixture: str, dosage: dict | None = None) -> Recommendation:
    _, facts = with_a1pi_draft(fixture, dosage)
    return next(r for r in hooks.evaluate("order-sign", facts) if r.necessity is not None)


def row(card: Recommendation, name: str):
    assert card.necessity is not None
    return next(j for j in card.necessity.criteria if j.name == name)


def text_of(card: Recommendation) -> str:
    parts = [card.summary, card.advice, *(r.text for r in card.reasons), *card.missing]
    return " ".join(parts)


# --- 1. anti-IgA antibodies ------------------------------------------------------------------


def test_anti_iga_above_its_range_contraindicates_a1pi():
    cards = view("safety-anti-iga-elisa-high")
    assert CANDIDATE not in cards
    assert "contraindication" in cards["augmentation-specialist-review"].summary
    order = signing("safety-anti-iga-elisa-high")
    assert (order.topic, order.indicator) == ("augmentation-contraindicated", "critical")
    assert order.necessity.conclusion is Conclusion.NOT_SUPPORTED
    assert row(order, "No contraindication to A1PI").status == "not met"


def test_anti_iga_within_its_range_is_negative():
    assert CANDIDATE in view("safety-anti-iga-elisa-normal")
    assert signing("safety-anti-iga-elisa-normal").necessity.conclusion is Conclusion.SUPPORTED


def test_an_unreadable_anti_iga_result_is_never_negative():
    cards = view("safety-anti-iga-unreadable")
    assert CANDIDATE not in cards
    workup = cards["augmentation-workup-incomplete"]
    assert any("could not be read" in m for m in workup.missing)
    assert any(a.label == "Order anti-IgA antibodies" for a in workup.actions)
    order = signing("safety-anti-iga-unreadable")
    assert order.necessity.conclusion is Conclusion.NEEDS_DOCUMENTATION
    assert row(order, "No contraindication to A1PI").status == "unknown"


def test_anti_iga_is_asked_for_in_the_prefetch_and_fetch_queries(client):
    discovery = client.get("/cds-services").json
    for service in discovery["services"]:
        assert "13312-4" in str(service["prefetch"]), service["id"]


# --- 2. post-bronchodilator values decide -----------------------------------------------------


def test_obstruction_only_before_bronchodilator_is_not_a_candidate():
    cards = view("safety-zz-asthma-post-bd-normal")
    assert CANDIDATE not in cards
    not_indicated = cards["augmentation-not-indicated"]
    assert "FEV1/FVC 0.78" in text_of(not_indicated)
    order = signing("safety-zz-asthma-post-bd-normal")
    assert order.necessity.conclusion is Conclusion.NOT_SUPPORTED


def test_obstruction_after_bronchodilator_is_a_candidate():
    cards = view("safety-zz-asthma-post-bd-obstructed")
    assert "FEV1 58 % predicted" in text_of(cards[CANDIDATE])


# --- 3. no start order on a level alone -------------------------------------------------------


def test_a_level_alone_asks_for_the_genotype_first():
    cards = view("safety-copd-level-only")
    assert not {t for t in cards if t.startswith("augmentation-")}
    assert "genotype-recommended" in cards
    order = signing("safety-copd-level-only")
    assert order.necessity.conclusion is Conclusion.NEEDS_DOCUMENTATION
    assert (
        "genotype or phenotype first" in row(order, "Severe AAT deficiency established").fact.text
    )
    assert any("phenotype" in a.label for a in order.actions)


# --- 4. allele results in every shape ---------------------------------------------------------


@pytest.mark.parametrize(
    ("fixture", "label"),
    [
        ("safety-variant-hgvs-coding", "ZZ"),
        ("safety-variants-s-and-z", "SZ"),
        ("safety-pi-annotated", "ZZ"),
    ],
)
def test_alleles_are_read_from_real_world_shapes(fixture, label):
    facts = facts_of(list(bundle_resources(load_bundle(fixture))))
    assert facts.genotype is not None
    assert facts.genotype.label == label
    assert "genotype-recommended" not in view(fixture)


def test_an_unreadable_genotype_is_said_and_never_taken_as_absent():
    cards = view("safety-genotype-unreadable")
    card = cards["genotype-recommended"]
    assert card.summary.startswith("A genotype or phenotype result on record could not be read")
    assert not card.actions  # no repeat test ordered on top of a result nobody read
    assert CANDIDATE not in cards
    order = signing("safety-genotype-unreadable")
    assert order.necessity.conclusion is Conclusion.NEEDS_DOCUMENTATION


# --- 5. deceased -----------------------------------------------------------------------------


def test_a_deceased_patient_gets_family_testing_only():
    cards = view("safety-deceased-zz")
    assert set(cards) - {"aatd-care-checklist"} == {"family-testing"}
    assert "deceased on 2026-08-02" in text_of(cards["family-testing"])
    _, facts = with_a1pi_draft("safety-deceased-zz")
    assert not [r for r in hooks.evaluate("order-sign", facts) if r.necessity]
    assert CANDIDATE in view("seed-000-zz-emphysema")  # near miss: alive


# --- 6 and 7. the dose and its interval ---------------------------------------------------------

WEEKLY = {"timing": {"repeat": {"frequency": 1, "period": 1, "periodUnit": "wk"}}}


def test_an_order_off_the_labelled_dose_is_never_supported():
    underdosed = {**WEEKLY, "doseAndRate": [{"doseQuantity": {"value": 3000, "unit": "mg"}}]}
    order = signing("seed-000-zz-emphysema", underdosed)
    assert order.topic == "augmentation-dose-check"
    assert order.necessity.conclusion is Conclusion.NOT_SUPPORTED
    assert any(a.label.startswith("Change to 4,320 mg") for a in order.actions)


def test_an_unreadable_dose_unit_is_named_and_not_blamed_on_the_weight():
    sandbox = {
        "text": "1 {pill} daily",
        "timing": {"repeat": {"frequency": 1, "period": 1, "periodUnit": "d"}},
        "doseAndRate": [{"doseQuantity": {"value": 1, "unit": "{pill}", "code": "{pill}"}}],
    }
    order = signing("seed-000-zz-emphysema", sandbox)
    assert order.necessity.conclusion is Conclusion.NEEDS_DOCUMENTATION
    dose_row = row(order, "Labelled dose (mg/kg, once weekly)")
    assert "dose unit '{pill}' cannot be read" in dose_row.fact.text
    assert "weight" not in dose_row.fact.text


def test_a_double_dose_every_two_weeks_is_not_the_labelled_regimen():
    biweekly = {
        "timing": {"repeat": {"frequency": 1, "period": 2, "periodUnit": "wk"}},
        "doseAndRate": [{"doseQuantity": {"value": 8640, "unit": "mg"}}],
    }
    order = signing("seed-000-zz-emphysema", biweekly)
    assert order.necessity.conclusion is Conclusion.NOT_SUPPORTED
    assert "every 14 days" in row(order, "Labelled dose (mg/kg, once weekly)").fact.text
    # Near miss: the labelled dose, once weekly.
    assert signing("seed-000-zz-emphysema").necessity.conclusion is Conclusion.SUPPORTED


# --- 8. a "discuss" card carries no treatment order ---------------------------------------------


def test_discuss_suggests_the_specialist_not_the_infusion():
    discuss = view("candidate-zz-fev1-72")[CANDIDATE]
    assert discuss.summary.startswith("Discuss")
    kinds = {type(a).__name__ for a in discuss.actions}
    assert "PrescribeAugmentation" not in kinds
    assert any(a.label == "Refer to an AATD specialist" for a in discuss.actions)
    start = view("seed-000-zz-emphysema")[CANDIDATE]
    assert "PrescribeAugmentation" in {type(a).__name__ for a in start.actions}


# --- 9. after a liver transplant ----------------------------------------------------------------


def test_after_a_liver_transplant_a_normal_level_is_expected():
    cards = view("safety-zz-liver-transplant")
    assert "results-discordant" not in cards
    assert "liver-monitoring" not in cards
    assert "augmentation-not-indicated" in cards
    assert "results-discordant" in view("discordant-zz-normal-level")  # near miss


# --- 10. FEV1 % predicted from litres -----------------------------------------------------------


def test_fev1_percent_is_computed_from_measured_and_predicted_litres():
    card = view("safety-fev1-litres-and-predicted")[CANDIDATE]
    assert "FEV1 42.2 % predicted" in text_of(card)
    assert "computed from FEV1 1.52 L / predicted 3.6 L" in text_of(card)
    assert "augmentation-workup-incomplete" in view("safety-fev1-litres-only")  # near miss


# --- 11. an AAT result with only an interpretation ----------------------------------------------


def test_a_level_reported_only_as_low_asks_for_the_alleles():
    cards = view("safety-copd-aat-flagged-low")
    assert cards["genotype-recommended"].summary.startswith("AAT reported as low")
    assert "aatd-testing-recommended" not in cards
    cards = view("safety-copd-aat-text-normal")
    assert not {"genotype-recommended", "aatd-testing-recommended"} & cards.keys()


# --- 12. comparators -----------------------------------------------------------------------------


def test_comparators_are_carried_into_facts_and_card_text():
    card = view("safety-aat-comparator-below")["genotype-recommended"]
    assert "AAT < 0.2 g/L (< 3.8 umol/L, < 20 mg/dL)" in text_of(card)
    bound = facts_of(list(bundle_resources(load_bundle("safety-aat-comparator-bound"))))
    assert bound.latest_aat.below(11) is None  # "< 60 mg/dL": neither above nor below 57
    assert bound.genotype is None  # so no severe deficiency is inferred from it
    assert "genotype-recommended" not in view("safety-aat-comparator-above")


# --- 13. smaller -----------------------------------------------------------------------------


def test_weights_are_shown_without_false_precision():
    card = view("safety-precise-weight")[CANDIDATE]
    assert "79.8 kg" in card.summary
    assert "79.8323" not in text_of(card)


def test_an_outside_infusion_is_a_statement_not_an_order():
    card = view("safety-statement-outside-infusion")["augmentation-dose-check"]
    assert "active medication statement (given elsewhere" in text_of(card)
    assert not card.actions  # a MedicationStatement is not ours to change


def test_the_candidate_card_asks_what_the_first_dose_needs(client):
    card = view("seed-000-zz-emphysema")[CANDIDATE]
    assert any("serum IgA before the first dose" in m for m in card.missing)
    assert any("hepatitis A and B" in m for m in card.missing)
    labels = {a.label for a in card.actions}
    assert {"Refer to an AATD specialist", "Order serum IgA"} <= labels
    response = client.post(
        "/cds-services/aatd-patient-view", json=hook_request(load_bundle("seed-000-zz-emphysema"))
    )
    assert response.status_code == 200


# --- records as real systems send them ------------------------------------------------------


def test_weight_in_pounds_gives_the_same_dose():
    card = view("safety-weight-pounds")[CANDIDATE]
    assert card.summary.startswith("Start A1PI augmentation: 4,320 mg IV weekly")


def test_duplicated_resources_change_nothing():
    assert view("safety-duplicated-resources").keys() == view("seed-000-zz-emphysema").keys()


def test_an_order_coded_only_by_its_rxnorm_display_is_recognised():
    facts = facts_of(list(bundle_resources(load_bundle("safety-a1pi-rxnorm-display-only"))))
    assert [o.product for o in facts.orders_of("a1pi", "active")] == ["a1pi"]
    assert CANDIDATE not in view("safety-a1pi-rxnorm-display-only")  # already on it


def test_an_iga_below_detection_limit_asks_for_anti_iga():
    workup = view("safety-iga-below-detection")["augmentation-workup-incomplete"]
    assert any("IgA <20 mg/dL" in m and "anti-IgA" in m for m in workup.missing)


# --- therapy on record by any NDC form; products never all pre-selected (issue 23) -------

A1PI_NDC_FORMS = ["13533-0705-01", "13533070501", "13533-705-01", "1353370501"]


def _with_active_order(fixture: str, ndc: str) -> list[dict]:
    """The fixture with an active MedicationRequest coded only by ``ndc``, no text: how an
    infusion pharmacy's order often arrives."""
    resources = list(bundle_resources(load_bundle(fixture)))
    patient = next(r for r in resources if r["resourceType"] == "Patient")
    order = {
        "resourceType": "MedicationRequest",
        "id": "ndc-only-order",
        "status": "active",
        "intent": "order",
        "subject": {"reference": f"Patient/{patient['id']}"},
        "authoredOn": "2026-10-01",
        "medicationCodeableConcept": {
            "coding": [{"system": "http://hl7.org/fhir/sid/ndc", "code": ndc}]
        },
    }
    return [*resources, order]


@pytest.mark.parametrize("ndc", A1PI_NDC_FORMS)
def test_a_patient_on_a1pi_coded_by_any_ndc_form_is_not_told_to_start_it(ndc):
    facts = facts_of(_with_active_order("seed-000-zz-emphysema", ndc))
    found = {r.topic for r in hooks.evaluate("patient-view", facts)}
    assert CANDIDATE not in found


def test_near_miss_another_products_ndc_leaves_the_candidate_card():
    facts = facts_of(_with_active_order("seed-000-zz-emphysema", "13533-0706-01"))
    found = {r.topic for r in hooks.evaluate("patient-view", facts)}
    assert CANDIDATE in found


def test_the_candidate_card_pre_selects_no_a1pi_product(client):
    request = hook_request(load_bundle("seed-000-zz-emphysema"))
    response = client.post("/cds-services/aatd-patient-view", json=request)
    [card] = [c for c in response.json["cards"] if c["source"]["topic"]["code"] == CANDIDATE]
    products = [
        s
        for s in card["suggestions"]
        if s["actions"][0]["resource"]["resourceType"] == "MedicationRequest"
    ]
    assert len(products) == 4
    assert not any(s["isRecommended"] for s in products)


# --- result status: preliminary and amended results are used and said (issue 23) --------


def _candidate_card(client, fixture: str) -> dict:
    request = hook_request(load_bundle(fixture))
    response = client.post("/cds-services/aatd-patient-view", json=request)
    [card] = [c for c in response.json["cards"] if c["source"]["topic"]["code"] == CANDIDATE]
    return card


def _orders(card: dict) -> list[dict]:
    return [
        s
        for s in card.get("suggestions", [])
        if s["actions"][0].get("resource", {}).get("resourceType") == "MedicationRequest"
    ]


def test_a_preliminary_genotype_is_said_and_starts_nothing(client):
    card = _candidate_card(client, "safety-genotype-preliminary")
    assert "preliminary" in card["summary"]
    assert "(preliminary)" in card["detail"]
    assert _orders(card) == []


def test_near_miss_an_amended_genotype_is_final_and_said(client):
    card = _candidate_card(client, "safety-genotype-amended")
    assert card["summary"].startswith("Start A1PI augmentation")
    assert "(amended)" in card["detail"]
    assert len(_orders(card)) == 4


# --- liver disease in AATD (issue 23) ------------------------------------------------------


def _cards(client, fixture: str) -> dict[str, dict]:
    request = hook_request(load_bundle(fixture))
    found = {}
    for card in client.post("/cds-services/aatd-patient-view", json=request).json["cards"]:
        found[card["source"]["topic"]["code"]] = card
        for item in card.get("extension", {}).get("urn:alpha1-cds:checklist", []):
            found[item["topic"]] = card
    return found


def test_severe_aatd_with_cirrhosis_is_referred_to_hepatology(client):
    card = _cards(client, "safety-zz-cirrhosis")["advanced-disease-referral"]
    assert card["summary"].startswith("Severe AATD with cirrhosis")
    assert "hepatology" in card["summary"]
    assert "alcohol" in card["detail"]
    assert "HCC surveillance" in card["detail"]
    labels = {s["label"] for s in card["suggestions"]}
    assert "Refer to hepatology" in labels


def test_a_carrier_with_cirrhosis_is_never_called_aatd(client):
    cards = _cards(client, "safety-mz-cirrhosis")
    text = " ".join(f"{c['summary']} {c.get('detail', '')}" for c in cards.values())
    assert "PI*MZ with liver findings" in text
    assert "AATD with liver" not in text
    assert "advanced-disease-referral" not in cards


def test_a_raised_alt_asks_for_the_next_step_without_reordering_it(client):
    card = _cards(client, "safety-zz-alt-high")["liver-monitoring"]
    assert "PI*ZZ with liver findings" in card["detail"]
    assert "last ALT 85" in card["detail"]
    labels = {s["label"] for s in card["suggestions"]}
    assert "Order ALT" not in labels
    assert "Order abdominal ultrasound (liver)" in labels


# --- smaller wording faults (issue 23) -------------------------------------------------------


def test_an_igg_before_any_replacement_is_a_baseline_not_a_trough(client):
    import json

    from .support.builders import FIXTURES

    path = FIXTURES / "requests" / "order-sign-ivig-normal-igg.json"
    request = json.loads(path.read_text(encoding="utf-8"))
    response = client.post("/cds-services/aatd-order-sign", json=request)
    [row] = [
        line
        for card in response.json["cards"]
        for line in card["detail"].splitlines()
        if line.startswith("| Trough IgG monitored")
    ]
    assert "a baseline before replacement, not a trough" in row


def test_a_smoker_under_the_adult_age_is_not_given_the_adult_text():
    import copy

    bundle = copy.deepcopy(load_bundle("smoking-mz-current-smoker"))
    for entry in bundle["entry"]:
        if entry["resource"]["resourceType"] == "Patient":
            entry["resource"]["birthDate"] = "2010-05-01"
    facts = facts_of(list(bundle_resources(bundle)))
    [card] = [r for r in hooks.evaluate("patient-view", facts) if r.topic == "smoking-cessation"]
    assert card.advice.startswith("Under 18")
    assert "pharmacotherapy plus counselling" not in card.advice


def test_near_miss_an_adult_smoker_keeps_the_adult_text():
    facts = facts_of(list(bundle_resources(load_bundle("smoking-mz-current-smoker"))))
    [card] = [r for r in hooks.evaluate("patient-view", facts) if r.topic == "smoking-cessation"]
    assert "pharmacotherapy plus counselling" in card.advice


# --- therapy named by a Medication that was not sent (issue 23) ------------------------------


def test_an_unreadable_active_order_starts_nothing(client):
    card = _candidate_card(client, "safety-order-medication-unread")
    assert card["summary"].startswith("A1PI augmentation likely indicated: first check")
    assert "could not be read" in card["detail"]
    assert _orders(card) == []


def test_near_miss_a_reference_display_naming_another_drug_is_read(client):
    card = _candidate_card(client, "safety-order-display-other-drug")
    assert card["summary"].startswith("Start A1PI augmentation")


def test_near_miss_a_reference_display_naming_a1pi_is_therapy(client):
    request = hook_request(load_bundle("safety-order-display-a1pi"))
    response = client.post("/cds-services/aatd-patient-view", json=request)
    assert CANDIDATE not in {c["source"]["topic"]["code"] for c in response.json["cards"]}


@pytest.mark.parametrize(
    ("weeks", "mg_per_kg", "summary"),
    [
        (2, 120, "A1PI draft is 120 mg/kg every 14 days"),  # off the interval: as written
        (1, 40, "A1PI draft is 40 mg/kg/week"),  # near miss: weekly, off dose
    ],
)
def test_a_draft_off_the_labelled_regimen_is_summarised_as_written(weeks, mg_per_kg, summary):
    dosage = {
        "timing": {"repeat": {"frequency": 1, "period": weeks, "periodUnit": "wk"}},
        "doseAndRate": [{"doseQuantity": {"value": mg_per_kg, "unit": "mg/kg", "code": "mg/kg"}}],
    }
    _, facts = with_a1pi_draft(SEED_ZZ, dosage)
    [card] = [
        r for r in hooks.evaluate("order-sign", facts) if r.topic == "augmentation-dose-check"
    ]
    assert card.summary.startswith(summary)
    assert weeks == 1 or "mg/kg/week" not in card.summary


SEED_ZZ = "seed-000-zz-emphysema"
