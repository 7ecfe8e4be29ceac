"""order-select and order-sign: A1PI and immune globulin orders, with medical necessity."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from .support.builders import FIXTURES, searchset

# request fixture -> (topics with indicators that must appear, topics that must not)
TABLE: dict[str, tuple[dict[str, str], set[str]]] = {
    "order-sign-seed-002-prolastin-and-ivig": (
        {
            "augmentation-specialist-review": "warning",
            "immunoglobulin-replacement-indicated": "info",
        },
        {"augmentation-candidate", "immunoglobulin-replacement-not-indicated"},
    ),
    "order-select-ms-zemaira": (
        {"augmentation-not-indicated": "warning"},
        {"augmentation-candidate"},
    ),
    "order-select-only-ivig-selected": (
        {"immunoglobulin-replacement-not-indicated": "warning"},
        {"augmentation-candidate", "augmentation-dose-check", "augmentation-not-indicated"},
    ),
    "order-sign-seed-000-prolastin-supported": (
        {"augmentation-candidate": "info"},
        {"augmentation-dose-check", "augmentation-not-indicated"},
    ),
    "order-sign-seed-000-underdosed": ({"augmentation-dose-check": "warning"}, set()),
    "order-sign-anaphylaxis": (
        {"augmentation-contraindicated": "critical"},
        {"augmentation-candidate", "augmentation-dose-check"},
    ),
    "order-sign-lung-transplant-stable": (
        {"augmentation-not-indicated": "warning"},
        {"augmentation-candidate"},
    ),
    "order-sign-current-smoker": (
        {"augmentation-not-indicated": "warning"},
        {"augmentation-candidate"},
    ),
    "order-sign-ivig-normal-igg": (
        {"immunoglobulin-replacement-not-indicated": "warning"},
        {"immunoglobulin-replacement-indicated"},
    ),
}


def load_request(name: str) -> dict[str, Any]:
    return json.loads((FIXTURES / "requests" / f"{name}.json").read_text(encoding="utf-8"))


def cards_for(client, request: dict[str, Any]) -> dict[str, dict]:
    response = client.post(f"/cds-services/aatd-{request['hook']}", json=request)
    assert response.status_code == 200, response.json
    return {card["source"]["topic"]["code"]: card for card in response.json["cards"]}


@pytest.mark.parametrize(("name", "expected", "forbidden"), [(k, *v) for k, v in TABLE.items()])
def test_order_fixture_table(client, name, expected, forbidden):
    cards = cards_for(client, load_request(name))
    assert {topic: cards[topic]["indicator"] for topic in expected if topic in cards} == expected
    assert not forbidden & cards.keys()


@pytest.mark.parametrize("name", TABLE)
def test_every_order_card_carries_a_necessity_statement_or_a_dose(client, name):
    for topic, card in cards_for(client, load_request(name)).items():
        if topic != "augmentation-dose-check":
            assert "**Medical necessity:" in card["detail"]
            assert "| Criterion | Status | Fact |" in card["detail"]
            assert "**Conclusion:" in card["detail"]


def test_seed_002_ivig_criteria_met_and_prolastin_not_routine(client):
    cards = cards_for(client, load_request("order-sign-seed-002-prolastin-and-ivig"))
    ivig = cards["immunoglobulin-replacement-indicated"]
    assert "Privigen" in ivig["detail"]  # resolved through the Medication inside draftOrders
    assert "| AAAAI 2022 criteria (IgG with recurrent serious infections) | met |" in ivig["detail"]
    assert "**Conclusion: supported**" in ivig["detail"]
    assert "specialist-directed escalation" in ivig["detail"]  # 60 g / 71 kg = 0.85 g/kg
    prolastin = cards["augmentation-specialist-review"]
    assert (
        "Routine maintenance augmentation after lung transplant is not supported"
        in prolastin["detail"]
    )
    assert "transplant team" in prolastin["summary"]
    assert "Moderate acute cellular rejection" in prolastin["detail"]
    assert "**Conclusion: needs documentation**" in prolastin["detail"]


def test_ms_patient_gets_one_click_removal_of_the_zemaira_draft(client):
    card = cards_for(client, load_request("order-select-ms-zemaira"))["augmentation-not-indicated"]
    assert "PI*MS" in card["detail"]
    [suggestion] = card["suggestions"]
    assert suggestion["actions"] == [
        {
            "type": "delete",
            "description": "Remove the draft A1PI order",
            "resourceId": "MedicationRequest/draft-zemaira",
        },
    ]


def test_order_select_advises_on_the_selection_only(client):
    cards = cards_for(client, load_request("order-select-only-ivig-selected"))
    assert all("Gammagard" in card["detail"] for card in cards.values())
    assert all("Prolastin" not in card["detail"] for card in cards.values())


def test_same_drafts_signed_advise_on_both(client):
    request = load_request("order-select-only-ivig-selected")
    request["hook"] = "order-sign"
    del request["context"]["selections"]
    cards = cards_for(client, request)
    assert "augmentation-dose-check" in cards
    assert "immunoglobulin-replacement-not-indicated" in cards


def test_underdosed_draft_is_replaced_with_the_labelled_dose(client):
    card = cards_for(client, load_request("order-sign-seed-000-underdosed"))[
        "augmentation-dose-check"
    ]
    assert "42 mg/kg/week" in card["summary"]
    [action] = card["suggestions"][0]["actions"]
    assert action["type"] == "update"
    resource = action["resource"]
    assert (resource["id"], resource["status"]) == ("draft-prolastin", "draft")
    assert resource["dosageInstruction"][0]["doseAndRate"][0]["doseQuantity"]["value"] == 4320


def test_contraindication_is_critical_with_removal(client):
    card = cards_for(client, load_request("order-sign-anaphylaxis"))["augmentation-contraindicated"]
    assert "Anaphylaxis" in card["detail"]
    assert card["suggestions"][0]["actions"][0]["type"] == "delete"


def with_observation(
    request: dict[str, Any], observation: dict[str, Any], key: str = "immunology"
) -> dict[str, Any]:
    """The request with one more result under ``key`` (IgA and anti-IgA: "immunology")."""
    request = copy.deepcopy(request)
    searchset = request["prefetch"][key]
    searchset["entry"].append({"resource": observation})
    searchset["total"] = len(searchset["entry"])
    return request


IGA_LOW = {
    "resourceType": "Observation",
    "id": "iga-low",
    "status": "final",
    "code": {"coding": [{"system": "http://loinc.org", "code": "2458-8"}]},
    "subject": {"reference": "Patient/seed-000"},
    "effectiveDateTime": "2026-10-01",
    "valueQuantity": {
        "value": 5,
        "unit": "mg/dL",
        "system": "http://unitsofmeasure.org",
        "code": "mg/dL",
    },
}
ANTI_IGA_NEGATIVE = {
    "resourceType": "Observation",
    "id": "anti-iga",
    "status": "final",
    "code": {"text": "Anti-IgA antibodies"},
    "subject": {"reference": "Patient/seed-000"},
    "effectiveDateTime": "2026-10-02",
    "valueString": "Negative",
}


def test_iga_deficiency_with_unknown_anti_iga_asks_for_the_test(client):
    request = with_observation(load_request("order-sign-seed-000-prolastin-supported"), IGA_LOW)
    card = cards_for(client, request)["augmentation-contraindicated"]
    assert card["indicator"] == "warning"
    [suggestion] = card["suggestions"]
    assert suggestion["actions"][0]["resource"]["code"]["text"] == "Anti-IgA antibodies (serum)"


def test_iga_deficiency_with_negative_anti_iga_is_supported(client):
    request = with_observation(load_request("order-sign-seed-000-prolastin-supported"), IGA_LOW)
    request = with_observation(request, ANTI_IGA_NEGATIVE)
    cards = cards_for(client, request)
    assert set(cards) == {"augmentation-candidate"}
    # Not a contraindication, but the first infusion calls for care (reference row 35).
    assert "monitored setting for the first infusion" in cards["augmentation-candidate"]["detail"]


def test_near_miss_normal_iga_adds_no_caution(client):
    cards = cards_for(client, load_request("order-sign-seed-000-prolastin-supported"))
    assert "monitored setting" not in cards["augmentation-candidate"]["detail"]


def test_selection_of_an_unrelated_order_gives_no_cards(client):
    request = load_request("order-select-ms-zemaira")
    request["context"]["selections"] = ["MedicationRequest/seed-001-albuterol"]
    assert cards_for(client, request) == {}


def test_per_kg_draft_off_label_without_a_weight_still_gets_a_dose_card(client):
    """A draft in mg/kg needs no weight to be judged; the correction does, and is left out."""
    request = load_request("order-sign-seed-000-underdosed")
    request["prefetch"]["bodyWeight"] = searchset([])
    dose = request["context"]["draftOrders"]["entry"][0]["resource"]["dosageInstruction"][0]
    dose["doseAndRate"][0]["doseQuantity"] = {"value": 40, "unit": "mg/kg", "code": "mg/kg"}
    card = cards_for(client, request)["augmentation-dose-check"]
    assert "40 mg/kg/week" in card["summary"]
    assert "suggestions" not in card
    assert "a recent body weight" in card["detail"]


# --- duplicate A1PI therapy (issue 23): two drafts, or a draft beside an active order ------

SUPPORTED = "order-sign-seed-000-prolastin-supported"


def _second_a1pi(request: dict[str, Any], rid: str, status: str) -> dict[str, Any]:
    """A Glassia order beside the Prolastin-C draft, coded by its 11-digit NDC only."""
    draft = request["context"]["draftOrders"]["entry"][0]["resource"]
    other = copy.deepcopy(draft) | {"id": rid, "status": status}
    other["medicationCodeableConcept"] = {
        "coding": [{"system": "http://hl7.org/fhir/sid/ndc", "code": "00944288401"}]
    }
    return other


def test_two_a1pi_drafts_signed_together_are_duplicate_therapy(client):
    request = load_request(SUPPORTED)
    second = _second_a1pi(request, "draft-glassia", "draft")
    request["context"]["draftOrders"]["entry"].append({"resource": second})
    card = cards_for(client, request)["augmentation-dose-check"]
    assert card["indicator"] == "warning"
    assert card["summary"].startswith("Duplicate A1PI: 2 orders")
    [suggestion] = card["suggestions"]
    [action] = suggestion["actions"]
    assert (action["type"], action["resourceId"]) == ("delete", "MedicationRequest/draft-glassia")


def test_a_draft_beside_an_active_a1pi_order_is_duplicate_therapy(client):
    request = load_request(SUPPORTED)
    active = _second_a1pi(request, "active-glassia", "active")
    orders = request["prefetch"]["medicationRequests"]
    orders["entry"].append({"resource": active})
    orders["total"] = len(orders["entry"])
    cards = cards_for(client, request)
    card = cards["augmentation-dose-check"]
    assert "augmentation-candidate" not in cards  # never "supported" beside a duplicate
    [action] = card["suggestions"][0]["actions"]
    assert action["resourceId"] == "MedicationRequest/draft-prolastin"


def test_near_miss_a_draft_beside_recent_infusions_is_a_renewal_not_a_duplicate(client):
    request = load_request(SUPPORTED)
    infusion = {
        "resourceType": "MedicationAdministration",
        "id": "infusion-1",
        "status": "completed",
        "subject": {"reference": "Patient/seed-000"},
        "effectiveDateTime": "2026-11-14T10:00:00Z",
        "medicationCodeableConcept": {
            "coding": [{"system": "http://hl7.org/fhir/sid/ndc", "code": "13533070501"}]
        },
    }
    request["prefetch"]["medicationAdministrations"] = searchset([infusion])
    cards = cards_for(client, request)
    assert "augmentation-dose-check" not in cards
    assert "augmentation-candidate" in cards


def test_near_miss_one_draft_is_not_a_duplicate(client):
    cards = cards_for(client, load_request(SUPPORTED))
    assert set(cards) == {"augmentation-candidate"}
