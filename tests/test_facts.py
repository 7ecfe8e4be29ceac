"""PatientFacts from every representation real records use (issue: clinical facts from FHIR)."""

from __future__ import annotations

from datetime import date
from typing import Any

import pytest

from fhir_mappings import map_patient
from fhir_mappings.fhirjson import bundle_resources

from .support.builders import load_bundle

TODAY = date(2026, 11, 21)
PATIENT = {"resourceType": "Patient", "id": "p1", "birthDate": "1970-01-01"}
LOINC = "http://loinc.org"
SNOMED = "http://snomed.info/sct"
ICD = "http://hl7.org/fhir/sid/icd-10-cm"


def obs(code: str, oid: str = "o1", when: str = "2026-10-01", status: str = "final", **value: Any):
    return {
        "resourceType": "Observation",
        "id": oid,
        "status": status,
        "code": {"coding": [{"system": LOINC, "code": code}]},
        "subject": {"reference": "Patient/p1"},
        "effectiveDateTime": when,
        **value,
    }


def qty(value: float, unit: str | None) -> dict[str, Any]:
    quantity: dict[str, Any] = {"value": value}
    if unit is not None:
        quantity.update(unit=unit, code=unit, system="http://unitsofmeasure.org")
    return {"valueQuantity": quantity}


def facts(*resources: dict[str, Any]):
    return map_patient([PATIENT, *resources], TODAY)


def notes(result) -> str:
    return " | ".join(note.text for note in result.notes)


# --- AAT level: every unit ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "unit", "umol", "mg_dl"),
    [
        (45, "mg/dL", 8.65, 45),
        (0.45, "g/L", 8.65, 45),
        (450, "mg/L", 8.65, 45),
        (8.7, "umol/L", 8.7, 45.24),
        (0.0087, "mmol/L", 8.7, 45.24),
    ],
)
def test_aat_level_in_every_unit(value, unit, umol, mg_dl):
    [level] = facts(obs("1825-9", **qty(value, unit))).aat_levels
    assert level.umol_l == pytest.approx(umol, abs=0.01)
    assert level.mg_dl == pytest.approx(mg_dl, abs=0.01)


def test_aat_unit_given_as_text_only():
    observation = obs("6771-0", valueQuantity={"value": 8.7, "unit": "µmol/L"})
    assert facts(observation).aat_levels[0].umol_l == pytest.approx(8.7)


@pytest.mark.parametrize(
    ("value", "unit", "note"),
    [
        (8.7, "mmol/L", "probably umol/L entered as mmol/L"),
        (45, None, "unknown unit (none)"),
        (45, "mg", "unknown unit (mg)"),
        (-3, "mg/dL", "implausible"),
    ],
)
def test_aat_level_that_cannot_be_read_is_a_note_not_a_guess(value, unit, note):
    result = facts(obs("1825-9", **qty(value, unit)))
    assert result.aat_levels == []
    assert note in notes(result)
    assert len(result.aat_tests) == 1  # a test was still done


def test_body_fluid_aat_is_not_a_serum_level():
    assert facts(obs("29146-8", **qty(45, "mg/dL"))).aat_levels == []


def test_preliminary_result_is_used_and_said():
    result = facts(obs("1825-9", status="preliminary", **qty(45, "mg/dL")))
    assert result.aat_levels[0].preliminary
    assert "preliminary" in notes(result)


# --- genotype / phenotype: every encoding ------------------------------------------------


@pytest.mark.parametrize(
    ("resource", "label", "severity", "basis"),
    [
        (obs("84413-4", valueString="PI*ZZ"), "ZZ", "severe", "dna"),
        (obs("84413-4", valueCodeableConcept={"text": "Pi MZ"}), "MZ", "intermediate", "dna"),
        (obs("84413-4", valueString="Z/Q0"), "Z/null", "severe", "dna"),
        (obs("32769-2", valueString="SZ"), "SZ", "borderline", "phenotype"),
        (obs("32769-2", valueString="PiMS"), "MS", "mild", "phenotype"),
        (obs("32769-2", valueString="PI*SS"), "SS", "mild", "phenotype"),
        (obs("32769-2", valueString="PI*MM"), "MM", "normal", "phenotype"),
        (obs("84413-4", valueString="homozygous Z"), "ZZ", "severe", "dna"),
    ],
)
def test_genotype_text_encodings(resource, label, severity, basis):
    genotype = facts(resource).genotype
    assert (genotype.label, genotype.severity, genotype.basis) == (label, severity, basis)


def variant(oid: str, hgvs: str, state: str) -> dict[str, Any]:
    def component(code: str, value: dict[str, Any]) -> dict[str, Any]:
        return {
            "code": {"coding": [{"system": LOINC, "code": code}]},
            "valueCodeableConcept": value,
        }

    return obs(
        "69548-6",
        oid=oid,
        valueCodeableConcept={"coding": [{"system": LOINC, "code": "LA9633-4"}]},
        component=[
            component("48018-6", {"coding": [{"code": "HGNC:8941"}]}),
            component("48004-6", {"coding": [{"code": hgvs}]}),
            component("53034-5", {"coding": [{"system": LOINC, "code": state}]}),
        ],
    )


HOM, HET = "LA6705-3", "LA6706-1"


@pytest.mark.parametrize(
    ("variants", "label"),
    [
        ([variant("v1", "NM_000295.4:c.1096G>A", HOM)], "ZZ"),
        ([variant("v1", "c.1024G>A", HOM)], "ZZ"),  # legacy numbering
        ([variant("v1", "rs28929474", HOM)], "ZZ"),
        ([variant("v1", "c.1096G>A", HET), variant("v2", "NM_000295.4:c.863A>T", HET)], "SZ"),
        ([variant("v1", "c.791A>T", HET), variant("v2", "p.Glu342Lys", HET)], "SZ"),
    ],
)
def test_genomics_reporting_variants(variants, label):
    genotype = facts(*variants).genotype
    assert (genotype.label, genotype.basis) == (label, "dna")


def test_single_heterozygous_z_is_mz_with_a_caveat():
    result = facts(variant("v1", "c.1096G>A", HET))
    assert result.genotype.label == "MZ"
    assert "targeted tests detect only S and Z" in notes(result)


def test_dna_genotype_wins_over_phenotype_and_level():
    result = facts(
        obs("32769-2", oid="ph", valueString="MZ"),
        obs("84413-4", oid="dna", valueString="ZZ"),
        obs("1825-9", oid="lvl", **qty(30, "mg/dL")),
    )
    assert (result.genotype.label, result.genotype.basis) == ("ZZ", "dna")


def test_low_level_alone_infers_severe_and_normal_level_infers_nothing():
    low = facts(obs("1825-9", **qty(8, "umol/L"))).genotype
    assert (low.severity, low.basis, low.alleles) == ("severe", "level", ())
    assert facts(obs("1825-9", **qty(150, "mg/dL"))).genotype is None


@pytest.mark.parametrize(
    ("genotype", "level", "note"),
    [
        ("MM", (6, "umol/L"), "a null or rare allele may have been missed"),
        ("ZZ", (130, "mg/dL"), "is not low"),
    ],
)
def test_discordant_level_and_genotype_are_noted(genotype, level, note):
    result = facts(obs("84413-4", oid="g", valueString=genotype), obs("1825-9", **qty(*level)))
    assert note in notes(result)


def test_variant_of_another_gene_is_ignored():
    other = variant("v1", "c.1096G>A", HOM)
    other["component"][0]["valueCodeableConcept"]["coding"][0]["code"] = "HGNC:1100"
    assert facts(other).genotype is None


# --- smoking: every answer, and the condition fallback ------------------------------------


@pytest.mark.parametrize(
    ("code", "status"),
    [
        ("449868002", "current"),
        ("428041000124106", "current"),
        ("428071000124103", "current"),
        ("428061000124105", "current"),
        ("230063004", "current"),
        ("230060001", "current"),
        ("77176002", "current"),
        ("8517006", "former"),
        ("266919005", "never"),
        ("266927001", "unknown"),
    ],
)
def test_smoking_status_answers(code, status):
    answer = {"valueCodeableConcept": {"coding": [{"system": SNOMED, "code": code}]}}
    assert facts(obs("72166-2", **answer)).smoking.status == status


def condition(system: str, code: str, cid: str = "c1", **extra: Any) -> dict[str, Any]:
    return {
        "resourceType": "Condition",
        "id": cid,
        "subject": {"reference": "Patient/p1"},
        "code": {"coding": [{"system": system, "code": code}]},
        **extra,
    }


@pytest.mark.parametrize(("code", "status"), [("F17.210", "current"), ("Z87.891", "former")])
def test_smoking_from_tobacco_conditions(code, status):
    assert facts(condition(ICD, code)).smoking.status == status


def test_newest_smoking_answer_wins():
    old = obs(
        "72166-2",
        oid="s1",
        when="2020-01-01",
        valueCodeableConcept={"coding": [{"system": SNOMED, "code": "449868002"}]},
    )
    new = obs(
        "72166-2",
        oid="s2",
        when="2026-06-01",
        valueCodeableConcept={"coding": [{"system": SNOMED, "code": "8517006"}]},
    )
    assert facts(old, new).smoking.status == "former"


# --- spirometry -------------------------------------------------------------------------


def test_fev1_percent_predicted_and_volume():
    result = facts(
        obs("20152-5", oid="pp", **qty(48, "%")),
        obs("20155-8", oid="v", **qty(1510, "mL")),
    )
    assert result.latest("fev1_percent_predicted").value == 48
    volume = result.latest("fev1_volume")
    assert (volume.value, volume.post_bronchodilator) == (1.51, True)


@pytest.mark.parametrize(
    ("resource", "note"),
    [
        (obs("20150-9", **qty(48, "%")), "probably % predicted (20152-5) mis-coded"),
        (obs("20152-5", **qty(2.1, "L")), "is coded as FEV1 % predicted"),
        (obs("20152-5", **qty(480, "%")), "implausible"),
        (obs("20150-9", **qty(12, "L")), "implausible"),
    ],
)
def test_spirometry_coding_mistakes_are_notes(resource, note):
    result = facts(resource)
    assert result.measurements == {}
    assert note in notes(result)


def test_fev1_series_is_newest_first():
    result = facts(
        obs("20152-5", oid="a", when="2024-01-01", **qty(60, "%")),
        obs("20152-5", oid="b", when="2026-01-01", **qty(52, "%")),
        obs("20152-5", oid="c", when="2025-01-01", **qty(57, "%")),
    )
    assert [m.value for m in result.series("fev1_percent_predicted")] == [52, 57, 60]


# --- weight, immunoglobulins ------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "unit", "kg"), [(72, "kg", 72), (160, "[lb_av]", 72.57), (72000, "g", 72)]
)
def test_weight_units(value, unit, kg):
    assert facts(obs("29463-7", **qty(value, unit))).latest("body_weight").value == pytest.approx(
        kg, abs=0.01
    )


@pytest.mark.parametrize(
    ("code", "concept"), [("2465-3", "igg"), ("2458-8", "iga"), ("2472-9", "igm")]
)
@pytest.mark.parametrize(("value", "unit", "mg_dl"), [(495, "mg/dL", 495), (4.95, "g/L", 495)])
def test_immunoglobulins_in_mg_dl(code, concept, value, unit, mg_dl):
    assert facts(obs(code, **qty(value, unit))).latest(concept).value == pytest.approx(mg_dl)


@pytest.mark.parametrize(("answer", "positive"), [("Positive", True), ("Not detected", False)])
def test_anti_iga_antibodies_by_name(answer, positive):
    observation = {
        "resourceType": "Observation",
        "id": "a1",
        "status": "final",
        "code": {"text": "Anti-IgA antibodies, serum"},
        "valueString": answer,
    }
    [finding] = facts(observation).anti_iga
    assert finding.active is positive


# --- conditions, procedures, transplant, infections --------------------------------------


def test_lung_transplant_from_procedure_or_status_code():
    procedure = {
        "resourceType": "Procedure",
        "id": "tx",
        "status": "completed",
        "code": {"coding": [{"system": SNOMED, "code": "232658009"}]},
        "subject": {"reference": "Patient/p1"},
        "performedDateTime": "2021-05-10",
    }
    assert facts(procedure).lung_transplant.source.date == date(2021, 5, 10)
    assert facts(condition(ICD, "Z94.2")).lung_transplant is not None
    assert facts({**procedure, "status": "not-done"}).lung_transplant is None
    assert facts(condition(ICD, "Z94.4")).liver_transplant is not None


def test_serious_infections_within_twelve_months():
    def infection(cid: str, code: str, onset: str) -> dict[str, Any]:
        return condition(ICD, code, cid, onsetDateTime=onset)

    result = facts(
        infection("i1", "J15.1", "2026-09-30"),
        infection("i2", "A31.0", "2026-03-02"),
        infection("i3", "J18.9", "2024-01-01"),
        infection("i4", "J44.0", "2026-01-15"),
    )
    assert sorted(f.source.reference for f in result.serious_infections()) == [
        "Condition/i1",
        "Condition/i2",
        "Condition/i4",
    ]


# --- orders -------------------------------------------------------------------------------


def order(status: str = "active", **medication: Any) -> dict[str, Any]:
    return {
        "resourceType": "MedicationRequest",
        "id": "mr1",
        "status": status,
        "intent": "order",
        "subject": {"reference": "Patient/p1"},
        "dosageInstruction": [
            {
                "timing": {"repeat": {"frequency": 1, "period": 1, "periodUnit": "wk"}},
                "doseAndRate": [{"doseQuantity": {"value": 4200, "unit": "mg", "code": "mg"}}],
            }
        ],
        **medication,
    }


WEIGHT = obs("29463-7", oid="w", **qty(70, "kg"))


@pytest.mark.parametrize(
    "medication",
    [
        {
            "medicationCodeableConcept": {
                "coding": [{"system": "http://hl7.org/fhir/sid/ndc", "code": "13533-705-01"}]
            }
        },
        {"medicationCodeableConcept": {"text": "Zemaira 4,000 mg IV"}},
        {
            "medicationCodeableConcept": {
                "coding": [{"display": "alpha 1-proteinase inhibitor, human"}]
            }
        },
        {
            "medicationReference": {"reference": "#m1"},
            "contained": [{"resourceType": "Medication", "id": "m1", "code": {"text": "Glassia"}}],
        },
    ],
)
def test_a1pi_orders_in_every_form_normalised_to_mg_per_kg_week(medication):
    [result] = facts(order(**medication), WEIGHT).orders
    assert (result.product, result.state) == ("a1pi", "active")
    assert result.mg_per_kg_per_week == pytest.approx(60)


def test_medication_reference_into_the_bundle():
    medication = {"resourceType": "Medication", "id": "med7", "code": {"text": "Aralast NP"}}
    [result] = facts(
        order(medicationReference={"reference": "Medication/med7"}), medication, WEIGHT
    ).orders
    assert result.product == "a1pi"


@pytest.mark.parametrize("status", ["cancelled", "entered-in-error", "completed", "stopped"])
def test_ended_orders_are_not_active(status):
    assert facts(order(status, medicationCodeableConcept={"text": "Prolastin-C"})).orders == []


def test_draft_order_and_missing_weight_note():
    result = facts(order("draft", medicationCodeableConcept={"text": "Prolastin-C"}))
    assert result.orders[0].state == "draft"
    assert result.orders[0].mg_per_kg_per_week is None
    assert "no body weight" in notes(result)


def test_immune_globulin_dose_in_g_per_kg():
    ivig = order(medicationCodeableConcept={"text": "Privigen 10% IV"})
    ivig["dosageInstruction"][0]["timing"]["repeat"].update(period=4)
    ivig["dosageInstruction"][0]["doseAndRate"][0]["doseQuantity"] = {"value": 28, "code": "g"}
    [result] = facts(ivig, WEIGHT).orders
    assert (result.product, result.interval_days) == ("immune_globulin", 28)
    assert result.g_per_kg_per_dose == pytest.approx(0.4)


# --- allergy, immunizations, family history ----------------------------------------------


def test_a1pi_anaphylaxis_from_allergy_intolerance():
    allergy = {
        "resourceType": "AllergyIntolerance",
        "id": "al1",
        "patient": {"reference": "Patient/p1"},
        "code": {"text": "Zemaira"},
        "reaction": [{"manifestation": [{"text": "Anaphylaxis"}], "severity": "severe"}],
    }
    assert len(facts(allergy).a1pi_anaphylaxis) == 1
    mild = {**allergy, "reaction": [{"manifestation": [{"text": "Rash"}], "severity": "mild"}]}
    assert facts(mild).a1pi_anaphylaxis == []


@pytest.mark.parametrize(
    ("cvx", "groups"),
    [
        ("141", {"influenza"}),
        ("33", {"pneumococcal"}),
        ("208", {"covid19"}),
        ("52", {"hepatitis_a"}),
        ("43", {"hepatitis_b"}),
        ("104", {"hepatitis_a", "hepatitis_b"}),
    ],
)
def test_immunizations_by_cvx(cvx, groups):
    immunization = {
        "resourceType": "Immunization",
        "id": "im1",
        "status": "completed",
        "patient": {"reference": "Patient/p1"},
        "vaccineCode": {"coding": [{"system": "http://hl7.org/fhir/sid/cvx", "code": cvx}]},
        "occurrenceDateTime": "2026-10-01",
    }
    assert set(facts(immunization).immunizations) == groups
    assert facts({**immunization, "status": "not-done"}).immunizations == {}


# --- references, staleness ---------------------------------------------------------------


@pytest.mark.parametrize(
    "reference",
    [
        "Patient/p1",
        "https://ehr.example.org/fhir/Patient/p1",
        "urn:uuid:2d9a1c1e-0f5b-4bb0-9d3e-1f7c2a1b3c4d",
    ],
)
def test_references_in_every_form_are_accepted(reference):
    result = facts(condition(ICD, "J44.9", subject={"reference": reference}))
    assert result.has_condition("copd")


def test_stale_results_are_noted():
    result = facts(
        obs("29463-7", when="2025-01-01", **qty(70, "kg")),
        obs("20152-5", oid="pp", when="2024-05-01", **qty(50, "%")),
    )
    assert "latest body weight is older than 90 days" in notes(result)
    assert "latest FEV1 % predicted is older than 365 days" in notes(result)


# --- the seed patients ---------------------------------------------------------------------


def seed(name: str):
    return map_patient(list(bundle_resources(load_bundle(name))), TODAY)


def test_seed_000_severe_zz_eligible_ex_smoker():
    result = seed("seed-000-zz-emphysema")
    assert (result.genotype.label, result.genotype.severity) == ("ZZ", "severe")
    assert result.latest_aat.umol_l == pytest.approx(7.31, abs=0.01)
    assert result.emphysema
    assert result.latest("fev1_percent_predicted").value == 42
    assert result.smoking.status == "former"
    assert result.latest("body_weight").value == 72
    assert result.age >= 18
    assert result.orders == []


def test_seed_001_ms_with_obstruction():
    result = seed("seed-001-ms-obstruction")
    assert (result.genotype.label, result.genotype.severity, result.genotype.basis) == (
        "MS",
        "mild",
        "phenotype",
    )
    assert result.latest("fev1_fvc").value == pytest.approx(0.62)
    assert result.latest_aat.mg_dl == 105


def test_seed_002_lung_transplant_rejection_hypogammaglobulinemia():
    result = seed("seed-002-lung-transplant")
    assert result.genotype.label == "ZZ"
    assert result.lung_transplant.source.reference == "Procedure/seed-002-bltx"
    assert result.active_condition("lung_transplant_rejection") is not None
    assert [m.value for m in result.series("igg")] == [495, 609]
    assert result.latest("igm").value == 39
    assert len(result.serious_infections()) == 3
    a1pi = result.orders_of("a1pi", "active")[0]
    ivig = result.orders_of("immune_globulin", "active")[0]
    assert a1pi.mg_per_kg_per_week == pytest.approx(60)
    assert ivig.g_per_kg_per_dose == pytest.approx(60 / 71)
    assert result.latest("fev1_fvc").value == pytest.approx(0.78)
