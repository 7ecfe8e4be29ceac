"""fhir_mappings: realistic and ragged FHIR in, typed facts out, never an exception."""

from __future__ import annotations

from datetime import date

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fhir_mappings import map_patient

from .support.builders import load_bundle

TODAY = date(2026, 11, 21)
PATIENT = {"resourceType": "Patient", "id": "p1", "birthDate": "1960-11-22"}


def condition(system: str, code: str, **extra) -> dict:
    return {
        "resourceType": "Condition",
        "id": f"c-{code}",
        "subject": {"reference": "Patient/p1"},
        "code": {"coding": [{"system": system, "code": code}]},
        **extra,
    }


@pytest.mark.parametrize(
    ("system", "code", "concept"),
    [
        ("http://hl7.org/fhir/sid/icd-10-cm", "J44.9", "copd"),
        ("http://hl7.org/fhir/sid/icd-10-cm", "J449", "copd"),
        ("urn:oid:2.16.840.1.113883.6.90", "J44.1", "copd"),
        ("http://snomed.info/sct", "13645005", "copd"),
        ("urn:oid:2.16.840.1.113883.6.96", "87433001", "emphysema"),
        ("http://hl7.org/fhir/sid/icd-10-cm", "J45.909", "asthma"),
        ("http://hl7.org/fhir/sid/icd-10-cm", "J47.9", "bronchiectasis"),
        ("http://hl7.org/fhir/sid/icd-10-cm", "K74.60", "chronic_liver_disease"),
        ("http://hl7.org/fhir/sid/icd-10-cm", "M79.3", "panniculitis"),
        ("http://hl7.org/fhir/sid/icd-10-cm", "M31.31", "gpa"),
        ("http://hl7.org/fhir/sid/icd-10-cm", "E88.01", "aatd"),
    ],
)
def test_condition_codes_in_every_system(system, code, concept):
    facts = map_patient([PATIENT, condition(system, code)], TODAY)
    assert list(facts.conditions) == [concept]


@pytest.mark.parametrize(
    ("system", "code", "read_as"),
    [
        ("http://hl7.org/fhir/sid/icd-10-cm", "J44.81", {"bronchiolitis_obliterans"}),
        (
            "http://hl7.org/fhir/sid/icd-10-cm",
            "T86.812",
            {"lung_transplant_infection", "serious_infection"},
        ),
        ("http://snomed.info/sct", "87433001", {"emphysema"}),  # emphysema, not embolism
        ("http://loinc.org", "13645005", set()),  # right code, wrong system
    ],
)
def test_code_pitfalls_are_read_as_what_they_are(system, code, read_as):
    """clinical-knowledge.md 0.7: each mislabelled code must be read as its real concept."""
    assert set(map_patient([PATIENT, condition(system, code)], TODAY).conditions) == read_as


@pytest.mark.parametrize("verification", ["refuted", "entered-in-error"])
def test_withdrawn_conditions_are_ignored(verification):
    withdrawn = condition(
        "http://snomed.info/sct",
        "13645005",
        verificationStatus={"coding": [{"code": verification}]},
    )
    assert map_patient([PATIENT, withdrawn], TODAY).conditions == {}


def test_resolved_condition_is_past():
    resolved = condition(
        "http://snomed.info/sct", "13645005", clinicalStatus={"coding": [{"code": "resolved"}]}
    )
    [finding] = map_patient([PATIENT, resolved], TODAY).conditions["copd"]
    assert finding.active is False


def test_age_counts_birthdays():
    assert map_patient([PATIENT], TODAY).age == 65
    assert map_patient([{**PATIENT, "birthDate": "1960-11-21"}], TODAY).age == 66


def aat(status: str = "final", **extra) -> dict:
    return {
        "resourceType": "Observation",
        "id": f"aat-{status}",
        "status": status,
        "subject": {"reference": "Patient/p1"},
        "code": {"coding": [{"system": "http://loinc.org", "code": "1825-9"}]},
        "effectiveDateTime": "2025-01-02",
        **extra,
    }


@pytest.mark.parametrize("status", ["entered-in-error", "cancelled"])
def test_withdrawn_results_are_ignored(status):
    assert map_patient([PATIENT, aat(status)], TODAY).aat_tests == []


def test_registered_result_is_pending():
    [test] = map_patient([PATIENT, aat("registered")], TODAY).aat_tests
    assert test.pending is True


def test_variant_of_another_gene_is_not_an_aat_test():
    variant = {
        "resourceType": "Observation",
        "id": "v1",
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "69548-6"}]},
        "component": [
            {
                "code": {"coding": [{"system": "http://loinc.org", "code": "48018-6"}]},
                "valueCodeableConcept": {"coding": [{"code": "HGNC:1100"}]},
            }
        ],
    }
    assert map_patient([PATIENT, variant], TODAY).aat_tests == []
    variant["component"][0]["valueCodeableConcept"]["coding"][0]["code"] = "HGNC:8941"
    assert len(map_patient([PATIENT, variant], TODAY).aat_tests) == 1


@pytest.mark.parametrize(
    ("value", "unit", "ratio"), [(0.62, "1", 0.62), (62, "%", 0.62), (71, "", 0.71)]
)
def test_fev1_fvc_as_fraction_or_percent(value, unit, ratio):
    observation = {
        "resourceType": "Observation",
        "id": "r1",
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "19926-5"}]},
        "valueQuantity": {"value": value, "code": unit},
    }
    assert map_patient([PATIENT, observation], TODAY).latest("fev1_fvc").value == pytest.approx(
        ratio
    )


def test_resources_about_another_patient_are_ignored_with_a_note():
    other = condition("http://snomed.info/sct", "13645005", subject={"reference": "Patient/p2"})
    facts = map_patient([PATIENT, other], TODAY)
    assert facts.conditions == {}
    assert "another patient" in facts.notes[0].text


def test_malformed_resources_become_notes():
    broken = {"resourceType": "Condition", "id": "bad", "code": {"coding": "J44.9"}}
    facts = map_patient([PATIENT, broken, {"no": "type"}, "text"], TODAY)
    assert facts.conditions == {}
    assert facts.notes


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=12),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4)
    ),
    max_leaves=20,
)
FIELDS = st.sampled_from(
    [
        "code",
        "status",
        "subject",
        "valueQuantity",
        "component",
        "clinicalStatus",
        "verificationStatus",
        "birthDate",
        "condition",
        "effectiveDateTime",
        "id",
    ]
)
RESOURCES = st.builds(
    lambda kind, body: {"resourceType": kind, **body},
    st.sampled_from(
        [
            "Patient",
            "Condition",
            "Observation",
            "FamilyMemberHistory",
            "Procedure",
            "MedicationRequest",
            "MedicationStatement",
            "Medication",
            "Immunization",
            "AllergyIntolerance",
        ]
    ),
    st.dictionaries(FIELDS, JSON, max_size=6),
)


@settings(max_examples=500, deadline=None)
@given(st.lists(RESOURCES | JSON, max_size=8))
def test_mapping_never_raises(resources):
    facts = map_patient(resources, TODAY)
    assert facts.as_of == TODAY


FIXTURE_RESOURCES = [
    entry["resource"]
    for name in ("seed-000-zz-emphysema", "seed-002-lung-transplant")
    for entry in load_bundle(name)["entry"]
]


@settings(max_examples=500, deadline=None)
@given(
    st.lists(
        st.tuples(st.sampled_from(FIXTURE_RESOURCES), st.text(max_size=20), JSON),
        min_size=1,
        max_size=6,
    )
)
def test_mapping_never_raises_on_mutated_real_resources(mutations):
    """Real resources with one member (top-level, known or not) replaced by random JSON."""
    mutated = []
    for resource, field, value in mutations:
        key = field if field else next(iter(resource))
        mutated.append({**resource, key: value})
    facts = map_patient([*FIXTURE_RESOURCES, *mutated], TODAY)
    assert facts.as_of == TODAY
