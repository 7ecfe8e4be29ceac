"""JSON Schema validation of what comes in and goes out (schemas in ``schemas/``).

Errors become OperationOutcome issues that name the offending field as an expression
(``context.patientId``) and say what is wrong without echoing the value sent, which may be
patient data.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from functools import cache
from importlib import resources
from typing import Any

import jsonschema_rs
from jsonschema import Draft202012Validator, ValidationError
from referencing import Registry, Resource

from .errors import Issue

MAX_ISSUES = 20
SCHEMA_NAMES = (
    "common",
    "request",
    "response",
    "discovery",
    "feedback",
    "context-patient-view",
    "context-order-select",
    "context-order-sign",
)


@cache
def _schemas() -> dict[str, dict[str, Any]]:
    folder = resources.files("cds_service").joinpath("schemas")
    return {
        name: json.loads(folder.joinpath(f"{name}.schema.json").read_text(encoding="utf-8"))
        for name in SCHEMA_NAMES
    }


@cache
def _registry() -> Registry:
    return Registry().with_resources(
        (schema["$id"], Resource.from_contents(schema)) for schema in _schemas().values()
    )


@cache
def validator(name: str) -> Draft202012Validator:
    return Draft202012Validator(
        _schemas()[name],
        registry=_registry(),
        format_checker=Draft202012Validator.FORMAT_CHECKER,
    )


@cache
def fast_validator(name: str) -> jsonschema_rs.Draft202012Validator:
    """The same schema compiled by jsonschema-rs: about a hundred times faster, used to
    pass valid instances; the Python validator then words the errors of invalid ones."""
    registry = jsonschema_rs.Registry([(s["$id"], s) for s in _schemas().values()])
    return jsonschema_rs.Draft202012Validator(
        _schemas()[name], registry=registry, validate_formats=True
    )


def schema(name: str) -> dict[str, Any]:
    """The schema document itself, for publishing."""
    return _schemas()[name]


def check(name: str, instance: Any, prefix: str = "") -> list[Issue]:
    """Issues for every way ``instance`` breaks schema ``name`` (empty when valid)."""
    if fast_validator(name).is_valid(instance):
        return []
    errors = sorted(validator(name).iter_errors(instance), key=lambda e: list(e.absolute_path))
    return [_issue(error, prefix) for error in errors][:MAX_ISSUES]


def _issue(error: ValidationError, prefix: str) -> Issue:
    path = _expression(prefix, error.absolute_path)
    if error.validator in ("anyOf", "oneOf") and error.context:
        deepest = max(error.context, key=lambda e: len(e.absolute_path))
        if len(deepest.absolute_path) > len(error.absolute_path):
            return _issue(deepest, prefix)
        choices = " or ".join(sorted({_describe(sub, path) for sub in error.context}))
        verb = "needs" if all(sub.validator == "required" for sub in error.context) else "must be"
        return Issue("invalid", f"{path or 'body'} {verb}: {choices}", path or None)
    if error.validator == "required":
        missing = _describe(error, path)
        return Issue("required", f"{missing} is required", missing)
    if error.validator == "dependentRequired":
        for present, needs in error.validator_value.items():
            if present in error.instance:
                missing = ".".join(filter(None, (path, needs[0])))
                return Issue("required", f"{missing} is required with {present}", missing)
    return Issue("invalid", f"{path or 'body'} {_describe(error, path)}", path or None)


def _expression(prefix: str, path: Iterable[Any]) -> str:
    text = prefix
    for part in path:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text = f"{text}.{part}" if text else str(part)
    return text


def _describe(error: ValidationError, path: str) -> str:
    rule, expected = error.validator, error.validator_value
    if rule == "required":
        missing = error.message.split("'")[1] if "'" in error.message else "a member"
        return f"{path}.{missing}" if path else missing
    if rule == "type":
        return f"of JSON type {expected}" if error.parent else f"must be of JSON type {expected}"
    if rule == "format":
        return f"must be a valid {expected}"
    if rule == "pattern":
        return f"does not have the expected form ({expected})"
    if rule == "const":
        return f"must be {json.dumps(expected)}"
    if rule == "enum":
        return "must be one of " + ", ".join(json.dumps(value) for value in expected)
    if rule in ("minLength", "minItems", "minProperties"):
        return "must not be empty"
    if rule == "maxLength":
        return f"must be shorter than {expected + 1} characters"
    if rule == "additionalProperties":
        return "has a member that is not allowed here"
    return f"breaks schema rule '{rule}'"
