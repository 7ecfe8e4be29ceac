"""Realistic generated patients: years of labs, spirometry and vitals around a fixture patient.

``generate(total)`` returns a FHIR Bundle of about ``total`` resources: the seed 000
patient (severe ZZ, emphysema) plus, going back a week at a time, lab panels, spirometry,
weights and smoking answers, and a tail of other conditions, so that mapping works on the
shape and size of a real chart.
"""

from __future__ import annotations

import random
from datetime import date, timedelta
from typing import Any

from tests.support.builders import load_bundle

LABS = [
    ("1742-6", "U/L", 18, 60),
    ("1920-8", "U/L", 15, 55),
    ("2324-2", "U/L", 10, 80),
    ("1975-2", "mg/dL", 0.3, 1.4),
    ("1988-5", "mg/L", 0.5, 30),
    ("2465-3", "mg/dL", 600, 1400),
    ("2458-8", "mg/dL", 70, 300),
    ("2472-9", "mg/dL", 40, 200),
]
SPIRO = [("20152-5", "%", 35, 60), ("19926-5", "1", 0.40, 0.60), ("20155-8", "L", 1.2, 2.0)]


def _observation(
    pid: str, oid: str, code: str, unit: str, value: float, when: date
) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "id": oid,
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": code}]},
        "subject": {"reference": f"Patient/{pid}"},
        "effectiveDateTime": when.isoformat(),
        "valueQuantity": {
            "value": round(value, 2),
            "unit": unit,
            "system": "http://unitsofmeasure.org",
            "code": unit,
        },
    }


def generate(total: int, seed: int = 7, observation_share: float = 0.9) -> dict[str, Any]:
    """About ``total`` resources, ``observation_share`` of them Observations."""
    rng = random.Random(seed)
    bundle = load_bundle("seed-000-zz-emphysema")
    pid = "seed-000"
    resources = [entry["resource"] for entry in bundle["entry"]]
    day = date(2026, 11, 1)
    panels = [LABS, SPIRO, [("29463-7", "kg", 68, 76)]]
    while len(resources) < total * observation_share:
        for code, unit, low, high in rng.choice(panels):
            oid = f"gen-{len(resources)}"
            resources.append(_observation(pid, oid, code, unit, rng.uniform(low, high), day))
        day -= timedelta(days=rng.randint(3, 10))
    while len(resources) < total:
        resources.append(
            {
                "resourceType": "Condition",
                "id": f"gen-c{len(resources)}",
                "subject": {"reference": f"Patient/{pid}"},
                "code": {
                    "coding": [
                        {
                            "system": "http://hl7.org/fhir/sid/icd-10-cm",
                            "code": rng.choice(["I10", "E11.9", "M54.5", "K21.9", "E78.5"]),
                        }
                    ]
                },
                "recordedDate": (day + timedelta(days=rng.randint(0, 3000))).isoformat(),
            }
        )
    return {
        "resourceType": "Bundle",
        "type": "collection",
        "entry": [{"resource": r} for r in resources[:total]],
    }
