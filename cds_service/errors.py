"""Errors as FHIR OperationOutcomes (CDS Hooks 3.0: non-2xx responses SHOULD carry one).

Bodies say what is wrong and where (``expression``); they never carry a stack trace, a
token or patient data.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class Issue:
    """One OperationOutcome issue: FHIR issue-type ``code``, what happened, and where."""

    code: str
    diagnostics: str
    expression: str | None = None
    severity: str = "error"

    def to_json(self) -> dict[str, Any]:
        issue: dict[str, Any] = {
            "severity": self.severity,
            "code": self.code,
            "diagnostics": self.diagnostics,
        }
        if self.expression:
            issue["expression"] = [self.expression]
        return issue


@dataclass(slots=True)
class ServiceError(Exception):
    """An error answered with ``status`` and an OperationOutcome of ``issues``."""

    status: int
    issues: list[Issue]
    headers: dict[str, str] = field(default_factory=dict)

    @classmethod
    def single(cls, status: int, code: str, diagnostics: str, expression: str | None = None):
        return cls(status, [Issue(code, diagnostics, expression)])

    def __str__(self) -> str:
        return f"{self.status}: " + "; ".join(issue.diagnostics for issue in self.issues)


def operation_outcome(issues: list[Issue]) -> dict[str, Any]:
    return {"resourceType": "OperationOutcome", "issue": [issue.to_json() for issue in issues]}
