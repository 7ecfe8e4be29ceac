"""FHIR R4 and terminology -> PatientFacts. Knows nothing of HTTP or of advice."""

from .facts import (
    AatLevel,
    CodedFinding,
    DataNote,
    Discordance,
    Genotype,
    Immunization,
    Measurement,
    MedicationOrder,
    PatientFacts,
    SmokingStatus,
    Source,
    TestRecord,
)
from .interpretation import Lookbacks
from .mapper import map_patient
from .queries import QUERIES, Query

__all__ = [
    "QUERIES",
    "AatLevel",
    "CodedFinding",
    "DataNote",
    "Discordance",
    "Genotype",
    "Immunization",
    "Lookbacks",
    "Measurement",
    "MedicationOrder",
    "PatientFacts",
    "Query",
    "SmokingStatus",
    "Source",
    "TestRecord",
    "map_patient",
]
