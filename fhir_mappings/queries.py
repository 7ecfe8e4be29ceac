"""The FHIR queries that fetch what the rules read, as CDS Hooks prefetch templates.

Templates keep to the CDS Hooks 2.0 query subset (read, type search, token equality,
``_count``, ``_sort``) and the root-level token ``{{context.patientId}}``, so that any EHR
can run them. Observation and Procedure codes come from the value sets, never typed twice.

Conditions are fetched whole: the rules match ICD-10-CM families (J45.x) that token
equality cannot express, and a patient's Condition list is short.
"""

from __future__ import annotations

from dataclasses import dataclass

from . import terminology

PATIENT = "{{context.patientId}}"
PAGE_SIZE = 100


@dataclass(frozen=True, slots=True)
class Query:
    key: str
    resource_type: str
    template: str


def _codes(values: terminology.ValueSets, names: list[str]) -> str:
    return ",".join(f"{code.system}|{code.code}" for code in values.codes(*names))


def _search(resource_type: str, *params: str) -> str:
    return f"{resource_type}?" + "&".join((f"patient={PATIENT}", *params))


def _build() -> dict[str, Query]:
    observations = terminology.observations()
    procedures = terminology.procedures()
    page = f"_count={PAGE_SIZE}"
    queries = [
        Query("patient", "Patient", f"Patient/{PATIENT}"),
        Query(
            "aatResults",
            "Observation",
            _search(
                "Observation",
                "code=" + _codes(observations, observations.names_in_group("aat")),
                "_sort=-date",
                page,
            ),
        ),
        Query(
            "observations",
            "Observation",
            _search(
                "Observation",
                "code=" + _codes(observations, observations.names_in_group("clinical")),
                "_sort=-date",
                page,
            ),
        ),
        Query("conditions", "Condition", _search("Condition", page)),
        Query(
            "procedures",
            "Procedure",
            _search("Procedure", "code=" + _codes(procedures, list(procedures.concepts)), page),
        ),
        Query(
            "medicationRequests",
            "MedicationRequest",
            _search("MedicationRequest", "status=active,on-hold", page),
        ),
        Query(
            "medicationStatements",
            "MedicationStatement",
            _search("MedicationStatement", "status=active,intended,on-hold", page),
        ),
        Query("immunizations", "Immunization", _search("Immunization", "status=completed", page)),
        Query("allergies", "AllergyIntolerance", _search("AllergyIntolerance", page)),
        Query("familyHistory", "FamilyMemberHistory", _search("FamilyMemberHistory", page)),
    ]
    return {query.key: query for query in queries}


QUERIES: dict[str, Query] = _build()


def _with_history(queries: dict[str, Query]) -> dict[str, Query]:
    """The same queries, with medication orders and statements of every status: the SMART
    app draws past periods of therapy, which the hooks (deciding on now) do not fetch."""
    page = f"_count={PAGE_SIZE}"
    return queries | {
        "medicationRequests": Query(
            "medicationRequests", "MedicationRequest", _search("MedicationRequest", page)
        ),
        "medicationStatements": Query(
            "medicationStatements", "MedicationStatement", _search("MedicationStatement", page)
        ),
    }


APP_QUERIES: dict[str, Query] = _with_history(QUERIES)
