"""The FHIR queries that fetch what the rules read, as CDS Hooks prefetch templates.

Templates keep to the CDS Hooks 2.0 query subset (read, type search, token equality,
``_count``, ``_sort``) and the root-level token ``{{context.patientId}}``, so that any EHR
can run them. Codes come from the value sets, never typed twice, and every value the
service writes is percent-encoded (``http%3A%2F%2Floinc.org%7C1825-9``): some proxies
rewrite an unencoded ``//`` and the search then silently finds nothing.

Sized for a patient followed for years (a long-followed COPD patient is the one who should
be tested). Two kinds of key:

- **complete**: the rules need every matching record (a diagnosis from ten years ago
  counts), so the search is narrowed by code and asks for a page large enough for decades
  of records (``COMPLETE_PAGE``); an answer cut short can never stand for the whole.
- **newest** (``Window``): the rules read only the newest results of one kind (the latest
  weight, smoking status, FEV1 of each session), so the search is sorted newest first and
  asks for a few; a truncated answer is the answer asked for, when its entries are indeed
  newest first and, where the window says so, reach back far enough.

One search per group of results measured together (observations.json ``group``), so that
frequent results (a weight at every visit) never push a rarer one out of the newest page.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any
from urllib.parse import quote

from . import terminology
from .fhirjson import clinical_date
from .medications import longest_recent_days

PATIENT = "{{context.patientId}}"
# Decades of a patient's immunizations, active orders or coded diagnoses fit one page.
COMPLETE_PAGE = 1000


@dataclass(frozen=True, slots=True)
class Window:
    """The newest ``newest`` results suffice, when they reach back ``covers_days`` days (None:
    any span; the rules read only the newest of each kind the search holds)."""

    newest: int
    covers_days: int | None = None

    def shortfall(self, resources: Iterable[dict[str, Any]], today: date) -> str | None:
        """Why a truncated answer cannot stand for what the rules need, or None when it can.

        Its entries must be newest first (an undated one only after every dated one), or
        the server ignored ``_sort`` and the newest may be on a later page; and with
        ``covers_days`` they must reach back that far, or a kind of result within the
        window may have been cut."""
        dates = [clinical_date(resource) for resource in resources]
        dated = [when for when in dates if when is not None]
        if dates[: len(dated)] != dated or dated != sorted(dated, reverse=True):
            return "its results are not sorted newest first, so the newest may be missing"
        if self.covers_days is None or not dated:
            return None
        since = today - timedelta(days=self.covers_days)
        if dated[-1] > since:
            return (
                f"the {len(dates)} results sent reach back only to {dated[-1].isoformat()}, "
                f"and the rules need {self.covers_days} days"
            )
        return None


@dataclass(frozen=True, slots=True)
class Query:
    key: str
    resource_type: str
    template: str
    window: Window | None = None


# key, observations.json groups, window (None: every result is needed).
OBSERVATION_KEYS: tuple[tuple[str, tuple[str, ...], Window | None], ...] = (
    # Every AAT result: the genotype is resolved from all allele results, discordance from
    # the level beside them. A patient has few.
    ("aatResults", ("aat",), None),
    # FEV1 volumes and % predicted are written per spirometry session: the newest 100 hold
    # the latest session and years of the FEV1 course. A PFT panel carries them as
    # components, so both spirometry keys ask for the panel too.
    ("spirometry", ("spirometry", "spirometry_panel"), Window(100)),
    # Obstruction is read from the latest ratio, whenever it was measured: a key of its own,
    # so that newer FEV1 values never push it out.
    ("fev1Fvc", ("fev1_fvc", "spirometry_panel"), Window(20)),
    # Dosing reads the latest weight; a weight is written at every visit.
    ("bodyWeight", ("weight",), Window(20)),
    ("smokingStatus", ("smoking",), Window(10)),
    # The IgG before replacement began, IgA and anti-IgA of any date: every result.
    ("immunology", ("immunology",), None),
    # Liver monitoring reads the latest test of each kind and whether one is within a year:
    # the newest 100 must reach back a year (clinical-knowledge.md 2.9, annual LFTs).
    ("liverTests", ("liver",), Window(100, covers_days=365)),
)
# Therapy given (an infusion centre's record) counts while recent: the newest 100 must reach
# back over the longest recent window of medications.json (``administration_recent_days``).
ADMINISTRATION_WINDOW_DAYS = longest_recent_days()


def encode(value: str) -> str:
    """A search value percent-encoded whole (``:`` ``/`` ``|`` included)."""
    return quote(value, safe="")


def _coded(codes: list[terminology.Code]) -> str:
    return ",".join(encode(f"{code.system}|{code.code}") for code in codes)


def _bare(codes: list[terminology.Code]) -> str:
    """Codes without their system. Used for Conditions: the ICD-10-CM families expand to
    about 200 codes, and with systems the URL would pass the 8 KB many servers accept.
    A code of another system with the same spelling only brings a record the mapper then
    ignores (it reads the system); no record of ours is missed."""
    return ",".join(dict.fromkeys(encode(code.code) for code in codes))


def _search(resource_type: str, *params: str) -> str:
    return f"{resource_type}?" + "&".join((f"patient={PATIENT}", *params))


def _page(window: Window | None) -> str:
    if window is None:
        return f"_count={COMPLETE_PAGE}"
    return f"_sort=-date&_count={window.newest}"


def _observations() -> list[Query]:
    values = terminology.observations()
    queries = []
    for key, groups, window in OBSERVATION_KEYS:
        names = [name for group in groups for name in values.names_in_group(group)]
        codes = "code=" + _coded(values.codes(*names))
        queries.append(
            Query(key, "Observation", _search("Observation", codes, _page(window)), window)
        )
    return queries


def _build() -> dict[str, Query]:
    conditions = terminology.conditions()
    procedures = terminology.procedures()
    complete = _page(None)
    administrations = Window(100, covers_days=ADMINISTRATION_WINDOW_DAYS)
    queries = [
        Query("patient", "Patient", f"Patient/{PATIENT}"),
        *_observations(),
        Query(
            "conditions",
            "Condition",
            _search(
                "Condition",
                "code=" + _bare(conditions.search_codes(*conditions.concepts)),
                complete,
            ),
        ),
        Query(
            "procedures",
            "Procedure",
            _search(
                "Procedure", "code=" + _coded(procedures.codes(*procedures.concepts)), complete
            ),
        ),
        Query(
            "medicationRequests",
            "MedicationRequest",
            _search("MedicationRequest", "status=active,on-hold", complete),
        ),
        Query(
            "medicationStatements",
            "MedicationStatement",
            _search("MedicationStatement", "status=active,intended,on-hold", complete),
        ),
        Query(
            "medicationAdministrations",
            "MedicationAdministration",
            _search(
                "MedicationAdministration",
                "status=completed,in-progress",
                f"_sort=-effective-time&_count={administrations.newest}",
            ),
            administrations,
        ),
        Query(
            "immunizations", "Immunization", _search("Immunization", "status=completed", complete)
        ),
        Query("allergies", "AllergyIntolerance", _search("AllergyIntolerance", complete)),
        Query("familyHistory", "FamilyMemberHistory", _search("FamilyMemberHistory", complete)),
    ]
    return {query.key: query for query in queries}


QUERIES: dict[str, Query] = _build()


def _with_history(queries: dict[str, Query]) -> dict[str, Query]:
    """The same queries, with medication orders and statements of every status: the SMART
    app draws past periods of therapy, which the hooks (deciding on now) do not fetch."""
    complete = _page(None)
    return queries | {
        "medicationRequests": Query(
            "medicationRequests", "MedicationRequest", _search("MedicationRequest", complete)
        ),
        "medicationStatements": Query(
            "medicationStatements", "MedicationStatement", _search("MedicationStatement", complete)
        ),
    }


APP_QUERIES: dict[str, Query] = _with_history(QUERIES)


def rebuild() -> None:
    """The queries again from the value sets (after a site's codes changed them), in place:
    every holder of QUERIES and APP_QUERIES sees the new templates."""
    QUERIES.clear()
    QUERIES.update(_build())
    APP_QUERIES.clear()
    APP_QUERIES.update(_with_history(QUERIES))
