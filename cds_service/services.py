"""The services of the public contract (README, "Services"), as discovery advertises them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fhir_mappings import QUERIES, Query
from fhir_mappings.queries import OBSERVATION_KEYS

PATIENT_KEYS = (
    "patient",
    *(key for key, _, _ in OBSERVATION_KEYS),
    "conditions",
    "procedures",
    "medicationRequests",
    "medicationStatements",
    "medicationAdministrations",
    "immunizations",
    "allergies",
    "familyHistory",
)
# Order checks read the same facts but not immunizations or family history.
ORDER_KEYS = tuple(key for key in PATIENT_KEYS if key not in ("immunizations", "familyHistory"))


@dataclass(frozen=True, slots=True)
class Service:
    id: str
    hook: str
    title: str
    description: str
    prefetch_keys: tuple[str, ...]

    @property
    def queries(self) -> dict[str, Query]:
        return {key: QUERIES[key] for key in self.prefetch_keys}

    def discovery(self) -> dict[str, Any]:
        return {
            "hook": self.hook,
            "id": self.id,
            "title": self.title,
            "description": self.description,
            "prefetch": {key: query.template for key, query in self.queries.items()},
        }


SERVICES: dict[str, Service] = {
    service.id: service
    for service in (
        Service(
            id="aatd-patient-view",
            hook="patient-view",
            title="Alpha-1 antitrypsin deficiency review",
            description=(
                "Reviews the chart against AATD guidelines (A1F 2016, ATS/ERS 2003, CTS 2012, "
                "AAAAI 2022): who to test, how to read AAT levels and genotypes, augmentation "
                "eligibility, transplant, smoking, monitoring and immunoglobulin replacement. "
                "Each card lists the facts it used and the guideline it follows."
            ),
            prefetch_keys=PATIENT_KEYS,
        ),
        Service(
            id="aatd-order-select",
            hook="order-select",
            title="AATD order check (selection)",
            description=(
                "Checks selected draft orders for alpha-1 proteinase inhibitor products and "
                "immune globulin against the patient's AATD and immunology data."
            ),
            prefetch_keys=ORDER_KEYS,
        ),
        Service(
            id="aatd-order-sign",
            hook="order-sign",
            title="AATD order check (signing)",
            description=(
                "Checks all draft alpha-1 proteinase inhibitor and immune globulin orders "
                "before signing and states their medical necessity."
            ),
            prefetch_keys=ORDER_KEYS,
        ),
    )
}
