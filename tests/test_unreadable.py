"""One rule for data that cannot be read: on record, said, never "none on record".

For every concept the rules read, a record of it the service cannot interpret (a unit it
cannot convert, a code it does not know, a value in words) is named on the card with what
was wrong, where "none on record" would otherwise stand, and nothing is ordered again on
it (issue 23, "One rule for data that cannot be read"). Each case takes a fixture that
reads the concept and makes the newest record of it unreadable the way real feeds do.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest

from fhir_mappings.fhirjson import bundle_resources

from .support.builders import hook_request, load_bundle

SEED = "seed-000-zz-emphysema"
PATIENT_VIEW = "/cds-services/aatd-patient-view"
SNOMED = "http://snomed.info/sct"
Edit = Callable[[dict[str, Any]], None]


def _set(**fields: Any) -> Edit:
    def edit(resource: dict[str, Any]) -> None:
        resource.update(copy.deepcopy(fields))

    return edit


def _text_value(resource: dict[str, Any]) -> None:
    resource.pop("valueQuantity", None)
    resource["valueString"] = "see scanned report"


STONE = {"valueQuantity": {"value": 11.3, "unit": "stone", "code": "[stone_av]"}}
PERCENT_WORD = {"valueQuantity": {"value": 42, "unit": "percent", "code": "pct"}}
UNKNOWN_ANSWER = {
    "valueCodeableConcept": {
        "coding": [{"system": SNOMED, "code": "999999001"}],
        "text": "smokes (see note)",
    }
}

# concept: fixture, the record made unreadable (id suffix), the edit, the words of
# "none on record" it must not show.
CASES: dict[str, tuple[str, str, Edit, str]] = {
    "body weight": (SEED, "wt", _set(**STONE), "no body weight within"),
    "FEV1 % predicted": (SEED, "fev1pp", _set(**PERCENT_WORD), "no FEV1 % predicted within"),
    "FEV1/FVC": (
        "safety-zz-asthma-post-bd-obstructed",
        "ratio-post",
        _text_value,
        "no emphysema, COPD or FEV1/FVC on record",
    ),
    "smoking status": (SEED, "smk", _set(**UNKNOWN_ANSWER), "no tobacco smoking status"),
    "spirometry (reminder)": (
        "spirometry-overdue-on-augmentation",
        "fev1pp",
        _set(effectiveDateTime="2026-10-20", **PERCENT_WORD),
        "spirometry due (no FEV1",
    ),
    "genotype": (SEED, "geno", _set(valueString="see scanned report"), "no AAT level or genotype"),
    "IgA": (SEED, "iga", _set(valueQuantity={"value": 3, "unit": "mg/100mL"}), "(IgA deficiency"),
    "ALT": (SEED, "alt", _text_value, "no ALT on record"),
}


def _text(response: Any) -> str:
    cards = response.json["cards"]
    return " ".join(f"{c['summary']} {c.get('detail', '')}" for c in cards)


# Results the seed does not hold, added so that they can be made unreadable.
ADDED = {
    "iga": ("2458-8", "IgA [Mass/volume] in Serum or Plasma", {"value": 180, "unit": "mg/dL"}),
    "alt": ("1742-6", "ALT", {"value": 30, "unit": "U/L"}),
}


def _with_edit(fixture: str, suffix: str, edit: Edit) -> dict[str, Any]:
    bundle = copy.deepcopy(load_bundle(fixture))
    resources = list(bundle_resources(bundle))
    pid = next(r["id"] for r in resources if r["resourceType"] == "Patient")
    if suffix in ADDED:
        code, display, value = ADDED[suffix]
        added = {
            "resourceType": "Observation",
            "id": f"{pid}-{suffix}",
            "status": "final",
            "code": {"coding": [{"system": "http://loinc.org", "code": code, "display": display}]},
            "subject": {"reference": f"Patient/{pid}"},
            "effectiveDateTime": "2026-11-02",
            "valueQuantity": value,
        }
        bundle["entry"].append({"resource": added})
        resources.append(added)
    [target] = [r for r in resources if r["id"] == f"{pid}-{suffix}"]
    edit(target)
    if suffix == "fev1pp":  # the volume beside it would still give the FEV1 course
        bundle["entry"] = [e for e in bundle["entry"] if e["resource"]["id"] != f"{pid}-fev1"]
    return bundle


@pytest.mark.parametrize("concept", sorted(CASES))
def test_an_unreadable_record_is_said_and_never_none_on_record(client, concept):
    fixture, suffix, edit, none_words = CASES[concept]
    response = client.post(
        "/cds-services/aatd-patient-view", json=hook_request(_with_edit(fixture, suffix, edit))
    )
    assert response.status_code == 200
    text = _text(response)
    assert "could not be read" in text, concept
    assert none_words not in text, concept


@pytest.mark.parametrize("concept", sorted(CASES))
def test_near_miss_the_readable_record_says_nothing_of_the_kind(client, concept):
    fixture = CASES[concept][0]
    response = client.post(
        "/cds-services/aatd-patient-view", json=hook_request(load_bundle(fixture))
    )
    assert "could not be read" not in _text(response), concept


def test_an_unreadable_weight_offers_no_order_again(client):
    """The work-up card asks to review the record; it does not pre-order a new weight."""
    bundle = _with_edit(SEED, "wt", _set(**STONE))
    response = client.post("/cds-services/aatd-patient-view", json=hook_request(bundle))
    [card] = [
        c
        for c in response.json["cards"]
        if c["source"]["topic"]["code"] == "augmentation-workup-incomplete"
    ]
    labels = {s["label"] for s in card.get("suggestions", [])}
    assert not any("weight" in label.lower() for label in labels), labels
    assert "review it" in card["detail"]


def test_an_unreadable_igg_is_never_no_igg(client):
    """At order-sign the IVIG statement's AAAAI row names the unreadable IgG."""
    import json

    from .support.builders import FIXTURES

    request = json.loads(
        (FIXTURES / "requests" / "order-sign-ivig-normal-igg.json").read_text(encoding="utf-8")
    )
    for entry in request["prefetch"]["immunology"]["entry"]:
        if entry["resource"]["code"]["coding"][0]["code"] == "2465-3":
            entry["resource"]["valueQuantity"] = {"value": 610, "unit": "mg/100mL"}
    response = client.post("/cds-services/aatd-order-sign", json=request)
    assert response.status_code == 200
    text = _text(response)
    assert "could not be read" in text
    assert "no IgG" not in text


def test_the_call_logs_what_could_not_be_read_by_name_never_its_value(client, caplog):
    import logging

    bundle = _with_edit(SEED, "wt", _set(**STONE))
    with caplog.at_level(logging.INFO, logger="alpha1_cds"):
        client.post("/cds-services/aatd-patient-view", json=hook_request(bundle))
    [hook] = [r for r in caplog.records if r.getMessage() == "hook"]
    assert hook.fields["unread"] == {"body_weight": 1}
    assert "11.3" not in str(hook.fields)
    assert "stone" not in str(hook.fields)


def test_the_hook_line_counts_suppressed_and_hidden_topics_and_server_notes(client, caplog):
    """Issue 27: what was left out leaves a trace in the log, as counts (no patient data)."""
    import logging

    bundle = load_bundle("explain-zz-weight-in-words")
    with caplog.at_level(logging.INFO, logger="alpha1_cds"):
        client.post("/cds-services/aatd-patient-view", json=hook_request(bundle))
    [hook] = [r for r in caplog.records if r.getMessage() == "hook"]
    assert hook.fields["suppressed"] == 1  # spirometry-due, by the work-up card
    assert hook.fields["hidden"] == 0
    assert hook.fields["serverNotes"] == 0
    assert hook.fields["unread"] == {"body_weight": 1}
    assert "about 80" not in str(hook.fields)


def _with_allergy(coding: dict[str, Any]) -> dict[str, Any]:
    bundle = copy.deepcopy(load_bundle(SEED))
    allergy = {
        "resourceType": "AllergyIntolerance",
        "id": "seed-000-allergy",
        "patient": {"reference": "Patient/seed-000"},
        "code": {"coding": [coding], "text": "Prolastin-C"},
        "recordedDate": "2026-03-01",
    }
    bundle["entry"].append({"resource": allergy})
    return bundle


def test_an_allergy_record_that_cannot_be_read_is_never_no_reaction(client):
    """A record whose reading failed outright was noted as 'ignored' where no card or rule
    looked: an allergy record dropped so reads as 'no A1PI anaphylaxis' and the patient is
    told to start. Now it is unreadable, said, and the decision waits for it."""
    malformed = {"system": 5, "code": "x"}  # a system that is not a URI: reading raises
    response = client.post(PATIENT_VIEW, json=hook_request(_with_allergy(malformed)))
    cards = {c["source"]["topic"]["code"]: c for c in response.json["cards"]}
    assert "augmentation-candidate" not in cards
    workup = cards["augmentation-workup-incomplete"]
    assert "an allergy record with malformed content; review it" in workup["detail"]


def test_a_readable_allergy_to_something_else_leaves_the_candidate_card(client):
    """The near miss: an allergy record that reads, to another drug."""
    penicillin = {"system": "http://snomed.info/sct", "code": "91936005"}
    bundle = _with_allergy(penicillin)
    bundle["entry"][-1]["resource"]["code"]["text"] = "Penicillin"
    response = client.post(PATIENT_VIEW, json=hook_request(bundle))
    topics = {c["source"]["topic"]["code"] for c in response.json["cards"]}
    assert "augmentation-candidate" in topics
