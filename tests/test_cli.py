"""``alpha1-cds evaluate``: the integration engineer's first tool."""

from __future__ import annotations

import json

from cds_service.cli import main
from cds_service.validation import check

from .support.builders import FIXTURES


def test_evaluate_prints_readable_cards(capsys):
    assert main(["evaluate", str(FIXTURES / "patients" / "testing-copd-untested.json")]) == 0
    out = capsys.readouterr().out
    assert "[INFO] Test for alpha-1 antitrypsin deficiency: COPD" in out
    assert "topic: aatd-testing-recommended" in out
    assert "-> suggestion: Order serum alpha-1 antitrypsin level" in out


def test_evaluate_json_is_a_valid_response(capsys):
    path = FIXTURES / "patients" / "testing-copd-refuted.json"
    assert main(["evaluate", str(path), "--json", "--date", "2026-11-21"]) == 0
    response = json.loads(capsys.readouterr().out)
    assert check("response", response) == []
    assert response == {"cards": []}


def test_evaluate_reports_bad_input_without_a_traceback(tmp_path, capsys):
    missing = tmp_path / "missing.json"
    assert main(["evaluate", str(missing)]) == 2
    assert "cannot read" in capsys.readouterr().err
    not_bundle = tmp_path / "patient.json"
    not_bundle.write_text('{"resourceType": "Patient", "id": "x"}')
    assert main(["evaluate", str(not_bundle)]) == 2
    assert "is not a FHIR Bundle" in capsys.readouterr().err
