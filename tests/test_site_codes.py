"""Site configuration without a fork (issue 28 items 5 and 7): local codes that then drive a
card, the code lists as FHIR ValueSets, the EHR build sheet, and secrets from files."""

from __future__ import annotations

import copy
import json
from urllib.parse import unquote

import pytest

from cds_service import create_app
from cds_service.config import ConfigError, Settings

from .conftest import TEST_SETTINGS
from .support.builders import hook_request, load_bundle

PATIENT_VIEW = "/cds-services/aatd-patient-view"
LOCAL = {"system": "http://lab.example.org/codes", "code": "AAT-SER"}
SITE = {
    "_about": "the hospital lab's own AAT code",
    "observations": {
        "aat_level": [
            {
                **LOCAL,
                "display": "Alpha-1 antitrypsin, serum (in-house)",
                "source": "lab catalogue 2026",
            }
        ]
    },
}


@pytest.fixture
def site_file(tmp_path):
    path = tmp_path / "site-codes.json"
    path.write_text(json.dumps(SITE), encoding="utf-8")
    yield str(path)
    create_app(TEST_SETTINGS)  # back to the bundled codes for the tests that follow


def _copd_with_local_aat() -> dict:
    """COPD, untested by LOINC; an AAT of 45 mg/dL coded only with the lab's own code."""
    bundle = copy.deepcopy(load_bundle("testing-copd-untested"))
    bundle["entry"].append(
        {
            "resource": {
                "resourceType": "Observation",
                "id": "local-aat",
                "status": "final",
                "code": {"coding": [LOCAL], "text": "AAT"},
                "subject": {"reference": "Patient/copd-untested"},
                "effectiveDateTime": "2026-10-01",
                "valueQuantity": {
                    "value": 45,
                    "unit": "mg/dL",
                    "system": "http://unitsofmeasure.org",
                    "code": "mg/dL",
                },
            }
        }
    )
    return bundle


def _topics(app, bundle) -> set[str]:
    answer = app.test_client().post(PATIENT_VIEW, json=hook_request(bundle))
    assert answer.status_code == 200
    return {card["source"]["topic"]["code"] for card in answer.json["cards"]}


def test_a_local_aat_code_in_the_site_file_drives_the_card(site_file):
    without = _topics(create_app(TEST_SETTINGS), _copd_with_local_aat())
    assert "aatd-testing-recommended" in without  # near miss: the local code is not read
    app = create_app(TEST_SETTINGS | {"site_codes": site_file})
    with_site = _topics(app, _copd_with_local_aat())
    assert "aatd-testing-recommended" not in with_site  # the level is on record now
    assert "genotype-recommended" in with_site  # 45 mg/dL: low, so the genotype is next
    discovery = app.test_client().get("/cds-services").json
    templates = unquote(json.dumps(discovery))
    assert "http://lab.example.org/codes|AAT-SER" in templates  # the EHR prefetches it too


@pytest.mark.parametrize(
    ("content", "said"),
    [
        ({"labs": {}}, "unknown domain"),
        ({"observations": {"aat": [{**LOCAL, "display": "x", "source": "y"}]}}, "no concept"),
        ({"observations": {"aat_level": [{**LOCAL, "display": "x"}]}}, "needs source"),
        ("not json", "cannot read"),
    ],
)
def test_a_site_file_that_is_wrong_stops_the_service_saying_where(tmp_path, content, said):
    path = tmp_path / "site.json"
    path.write_text(content if isinstance(content, str) else json.dumps(content), encoding="utf-8")
    with pytest.raises(ConfigError, match=said):
        create_app(TEST_SETTINGS | {"site_codes": str(path)})


def test_the_code_lists_are_published_as_fhir_valuesets(site_file):
    from fhir.resources.R4B.bundle import Bundle

    app = create_app(TEST_SETTINGS | {"site_codes": site_file})
    answer = app.test_client().get("/valuesets")
    assert answer.status_code == 200
    Bundle.model_validate(answer.json)
    sets = {e["resource"]["url"]: e["resource"] for e in answer.json["entry"]}
    aat = sets["urn:alpha1-cds:valueset:observations:aat_level"]
    codes = {
        (i["system"], c["code"]): c for i in aat["compose"]["include"] for c in i.get("concept", [])
    }
    assert ("http://loinc.org", "1825-9") in codes
    local = codes[(LOCAL["system"], LOCAL["code"])]
    assert local["extension"] == [{"url": "urn:alpha1-cds:site-code", "valueBoolean": True}]
    asthma = sets["urn:alpha1-cds:valueset:conditions:asthma"]
    filters = [f for i in asthma["compose"]["include"] for f in i.get("filter", [])]
    assert {"property": "concept", "op": "is-a", "value": "J45"} in filters  # ICD-10 category


def test_the_build_sheet_says_what_the_analyst_types(capsys):
    from cds_service.cli import main

    config = {
        "public_base_url": "https://cds.example.org",
        "silent_topics": "vaccinations-due",
        "indicator_floor": '{"augmentation-candidate": "warning"}',
    }
    env = {f"ALPHA1_CDS_{k.upper()}": v for k, v in config.items()}
    with pytest.MonkeyPatch.context() as patch:
        for key, value in env.items():
            patch.setenv(key, value)
        assert main(["build-sheet"]) == 0
    sheet = capsys.readouterr().out
    assert "`https://cds.example.org/cds-services/aatd-patient-view`" in sheet
    assert "feedback `https://cds.example.org/cds-services/aatd-patient-view/feedback`" in sheet
    assert "`https://cds.example.org/app/callback`" in sheet
    assert "launch openid fhirUser patient/" in sheet
    assert "| `vaccinations-due` | Vaccinations due | info | silent |" in sheet
    assert (
        "| `augmentation-candidate` | Augmentation therapy candidate | warning | shown |" in sheet
    )
    from fhir_mappings import QUERIES

    assert f"| `conditions` | `{QUERIES['conditions'].template}` |" in sheet  # verbatim


def test_secrets_may_come_from_files(tmp_path):
    key = tmp_path / "key"
    key.write_text("from-a-file-0123456789\n", encoding="utf-8")
    settings = Settings.load({"ALPHA1_CDS_PATIENT_HASH_KEY_FILE": str(key)})
    assert settings.patient_hash_key == "from-a-file-0123456789"
    with pytest.raises(ConfigError, match="PATIENT_HASH_KEY_FILE"):
        Settings.load({"ALPHA1_CDS_PATIENT_HASH_KEY_FILE": str(tmp_path / "missing")})
    with pytest.raises(ConfigError, match="both"):
        Settings.load(
            {"ALPHA1_CDS_PATIENT_HASH_KEY_FILE": str(key), "ALPHA1_CDS_PATIENT_HASH_KEY": "x"}
        )
