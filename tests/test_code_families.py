"""Every code family a rule reads, in both systems, and asked for by the templates.

Records arrive SNOMED-only (Synthea, many problem lists) or ICD-10-CM-only (claims-derived
and billing feeds): a family in one system only is a patient the rules never see (issue 23,
"Every code family in both systems"). Where no counterpart could be verified, the data
file says why (``one_system``) instead of guessing a code.
"""

from __future__ import annotations

from urllib.parse import unquote

import pytest

from fhir_mappings import QUERIES, terminology
from fhir_mappings.terminology import ICD10CM, SNOMED

CONDITIONS = terminology.load_data("conditions.json")


@pytest.mark.parametrize("name", sorted(CONDITIONS))
def test_every_condition_family_is_coded_in_both_systems_or_says_why(name):
    entry = CONDITIONS[name]
    systems = {code["system"] for code in entry["codes"]}
    both = {SNOMED, ICD10CM} <= systems
    assert both or entry.get("one_system"), f"{name}: a counterpart, or why there is none"
    assert not (both and entry.get("one_system")), f"{name}: drop its stale one_system note"
    for code in entry["codes"]:
        assert code.get("source"), f"{name} {code['code']}: every code names its source"


def test_every_prefix_family_lists_the_codes_below_it():
    for concept in terminology.conditions().concepts.values():
        for code in concept.codes:
            if not code.prefix:
                continue
            assert code.search or code.code in {"J13", "J14", "J17", "J22"}, code.code
            head = code.code.replace(".", "")
            assert all(below.replace(".", "").startswith(head) for below in code.search)


def _template_codes(key: str) -> set[str]:
    values = QUERIES[key].template.split("code=")[1].split("&")[0].split(",")
    return {unquote(value).split("|")[-1] for value in values}


def test_the_condition_search_names_every_code_a_rule_reads():
    asked = _template_codes("conditions")
    values = terminology.conditions()
    for code in values.search_codes(*values.concepts):
        assert code.code in asked
    # An ICD-only asthma and a SNOMED-only pneumonia, as real feeds write them.
    assert {"J45.909", "J45.50", "233604007", "10509002", "J18.9", "F17.210"} <= asked


def test_the_condition_search_fits_a_url_every_server_accepts():
    rendered = QUERIES["conditions"].template.replace("{{context.patientId}}", "x" * 64)
    assert len(rendered) < 4096


@pytest.mark.parametrize("code", ["J45.909", "J18.9", "A41.9", "F17.210"])
def test_a_family_member_is_read_by_its_prefix(code):
    coding = {"system": ICD10CM, "code": code}
    assert terminology.conditions().concepts_of(coding)
