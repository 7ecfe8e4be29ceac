"""FHIR R4 and terminology -> PatientFacts. Knows nothing of HTTP or of advice."""

from .facts import CodedFinding, DataNote, Measurement, PatientFacts, Source, TestRecord
from .mapper import map_patient
from .queries import QUERIES, Query

__all__ = [
    "QUERIES",
    "CodedFinding",
    "DataNote",
    "Measurement",
    "PatientFacts",
    "Query",
    "Source",
    "TestRecord",
    "map_patient",
]
