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
from .queries import APP_QUERIES, QUERIES, Query, Window
from .therapy_history import TherapyPeriod, therapy_periods

__all__ = [
    "APP_QUERIES",
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
    "TherapyPeriod",
    "Window",
    "map_patient",
    "therapy_periods",
]
