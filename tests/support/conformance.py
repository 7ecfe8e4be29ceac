"""Checks every response the suite sees against the project's own schemas."""

from __future__ import annotations

import re
from typing import Any

from fhir.resources.R4B import get_fhir_model_class

from cds_service.validation import check

SERVICE_PATH = re.compile(r"^/cds-services/[^/]+$")


def assert_conformant(method: str, path: str, status: int, body: Any) -> None:
    """Discovery, service responses and errors must each have their documented shape."""
    if status >= 400:
        assert body["resourceType"] == "OperationOutcome", body
        assert body["issue"], body
        for issue in body["issue"]:
            assert issue["severity"] in ("fatal", "error", "warning", "information")
            assert issue["code"]
            assert issue["diagnostics"]
            assert "Traceback" not in issue["diagnostics"]
        return
    if method == "GET" and path == "/cds-services":
        assert check("discovery", body) == []
    elif method == "POST" and SERVICE_PATH.match(path):
        assert check("response", body) == [], check("response", body)
        assert_suggestions_are_fhir(body)


def assert_suggestions_are_fhir(body: dict[str, Any]) -> None:
    """Every resource a suggestion would create or update is valid FHIR R4 (fhir.resources)."""
    for card in body["cards"]:
        for suggestion in card.get("suggestions", []):
            for action in suggestion["actions"]:
                resource = action.get("resource")
                if resource is not None:
                    get_fhir_model_class(resource["resourceType"]).model_validate(resource)
