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


def test_evaluate_explain_says_why_each_card_fired_and_why_others_did_not(capsys):
    """Issue 27: an integrator told "the card asked for a weight that is on record" can
    trace it: the rule's branch, the topic a stronger one suppressed, the record that could
    not be read (as written), and every criterion as judged."""
    path = FIXTURES / "patients" / "explain-zz-weight-in-words.json"
    assert main(["evaluate", str(path), "--date", "2026-11-21", "--explain"]) == 0
    out = capsys.readouterr().out
    assert "augmentation-workup-incomplete  a1pi/workup" in out
    assert "spirometry-due  by augmentation-workup-incomplete" in out
    assert "body weight 'about 80' cannot be read; not used" in out
    assert "None" not in out
    assert (
        "unknown  FEV1 % predicted in the policy window: no FEV1 % predicted within 365 days" in out
    )
    assert "Criteria: immunoglobulin:" in out


def test_evaluate_without_explain_prints_cards_only(capsys):
    """The near miss: the explanation is asked for, not printed by default."""
    path = FIXTURES / "patients" / "explain-zz-weight-in-words.json"
    assert main(["evaluate", str(path), "--date", "2026-11-21"]) == 0
    assert "Suppressed by a stronger topic" not in capsys.readouterr().out


def test_evaluate_judges_the_bundles_draft_orders_as_order_sign_would(tmp_path, capsys):
    """Offline, a draft MedicationRequest in the Bundle is the order under review, by the
    service's own draft-order rule: the same medical-necessity card as the HTTP path."""
    bundle = json.loads((FIXTURES / "patients" / "seed-000-zz-emphysema.json").read_text())
    draft = {
        "resourceType": "MedicationRequest",
        "id": "offline-draft",
        "status": "draft",
        "intent": "order",
        "subject": {"reference": "Patient/seed-000"},
        "medicationCodeableConcept": {
            "coding": [{"system": "http://hl7.org/fhir/sid/ndc", "code": "13533-705-01"}],
            "text": "Prolastin-C Liquid",
        },
        "dosageInstruction": [
            {
                "timing": {"repeat": {"frequency": 1, "period": 1, "periodUnit": "wk"}},
                "doseAndRate": [{"doseQuantity": {"value": 4320, "unit": "mg", "code": "mg"}}],
            }
        ],
    }
    bundle["entry"].append({"resource": draft})
    path = tmp_path / "with-draft.json"
    path.write_text(json.dumps(bundle))
    argv = ["evaluate", str(path), "--hook", "order-sign", "--json", "--date", "2026-11-21"]
    assert main(argv) == 0
    cards = json.loads(capsys.readouterr().out)["cards"]
    assert [card["summary"] for card in cards] == [
        "A1PI order supported: severe AATD with emphysema, criteria met"
    ]
