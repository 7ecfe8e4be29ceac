"""Our JSON Schemas are valid draft 2020-12 and enforce the CDS Hooks invariants."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Any

import pytest
from jsonschema import Draft202012Validator

from cds_service.validation import SCHEMA_NAMES, check, fast_validator, schema, validator

from .support.builders import FIXTURES, hook_request, load_bundle

CARD = {
    "uuid": "b5c2c6a8-6b8f-4f57-9c4f-3d3f7a6f1e21",
    "summary": "Test for AATD",
    "indicator": "info",
    "source": {"label": "A1F 2016"},
}


@pytest.mark.parametrize("name", SCHEMA_NAMES)
def test_schema_is_valid_draft_2020_12(name):
    Draft202012Validator.check_schema(schema(name))


def card_with(**changes):
    card = copy.deepcopy(CARD)
    card.update(changes)
    return {"cards": [card]}


def test_minimal_card_and_empty_cards_are_valid():
    assert check("response", {"cards": [CARD]}) == []
    assert check("response", {"cards": []}) == []


SUGGESTION = {
    "label": "Order",
    "actions": [
        {"type": "create", "description": "d", "resource": {"resourceType": "ServiceRequest"}}
    ],
}


@pytest.mark.parametrize(
    ("response", "where"),
    [
        (card_with(summary="x" * 140), "cards[0].summary"),
        (card_with(indicator="hard-stop"), "cards[0].indicator"),
        (card_with(detail=""), "cards[0].detail"),
        (card_with(links=[]), "cards[0].links"),
        (
            card_with(source={"label": "x", "topic": {"code": "t"}, "url": None}),
            "cards[0].source.url",
        ),
        (card_with(suggestions=[SUGGESTION]), "cards[0].selectionBehavior"),  # cds-resp-6
        (
            card_with(overrideReasons=[{"code": "x"}]),
            "cards[0].overrideReasons[0].display",
        ),  # cds-resp-4
        (
            card_with(
                links=[
                    {"label": "l", "url": "https://x.org", "type": "absolute", "appContext": "a"}
                ]
            ),
            "cards[0].links[0].type",
        ),  # cds-resp-3
        (
            card_with(
                selectionBehavior="any",
                suggestions=[
                    {"label": "Stop", "actions": [{"type": "delete", "description": "d"}]}
                ],
            ),
            "cards[0].suggestions[0].actions[0].resourceId",
        ),  # cds-resp-2
        (
            card_with(
                selectionBehavior="any",
                suggestions=[
                    {
                        "label": "x",
                        "actions": [{"type": "create", "resource": {"resourceType": "X"}}],
                    }
                ],
            ),
            "cards[0].suggestions[0].actions[0].description",
        ),  # cds-resp-5
        (
            card_with(
                selectionBehavior="any",
                suggestions=[{"label": "x", "actionSelectionBehavior": "some"}],
            ),
            "cards[0].suggestions[0].actionSelectionBehavior",
        ),  # cds-resp-7
        (
            card_with(
                selectionBehavior="at-most-one",
                suggestions=[
                    {"label": "a", "isRecommended": True},
                    {"label": "b", "isRecommended": True},
                ],
            ),
            "cards[0].suggestions",
        ),  # cds-resp-1
    ],
)
def test_response_invariants(response, where):
    issues = check("response", response)
    assert issues, "expected the response to be rejected"
    assert any((issue.expression or "").startswith(where) for issue in issues), issues


def test_feedback_invariants():
    entry = {"card": "c1", "outcome": "accepted", "outcomeTimestamp": "2026-11-21T10:00:00Z"}
    assert (
        check("feedback", {"feedback": [entry]})[0].expression == "feedback[0].acceptedSuggestions"
    )
    overridden = {**entry, "outcome": "overridden", "overrideReason": {}}
    assert (
        check("feedback", {"feedback": [overridden]})[0].expression == "feedback[0].overrideReason"
    )
    ok = {**entry, "acceptedSuggestions": [{"id": "s1"}]}
    assert check("feedback", {"feedback": [ok]}) == []
    assert check("feedback", {"feedback": [{**entry, "outcome": "ignored"}]})


def test_request_requires_fhir_server_with_authorization():
    request = {
        "hook": "patient-view",
        "hookInstance": "b5c2c6a8-6b8f-4f57-9c4f-3d3f7a6f1e21",
        "context": {},
        "fhirAuthorization": {
            "access_token": "t",
            "token_type": "Bearer",
            "expires_in": 60,
            "scope": "patient/*.read",
            "subject": "cds",
        },
    }
    [issue] = check("request", request)
    assert issue.expression == "fhirServer"  # cds-r-1


def _mutations(body: dict[str, Any]) -> Iterator[Any]:
    """Each top-level and context member dropped, emptied or of the wrong type."""
    yield body
    for holder_path in ((), ("context",)):
        holder = body
        for key in holder_path:
            holder = holder[key]
        for key in list(holder):
            for replacement in (None, "", 7, [], {}, "x" * 50, {"resourceType": "Bundle"}):
                changed = copy.deepcopy(body)
                target = changed
                for part in holder_path:
                    target = target[part]
                target[key] = replacement
                yield changed
            dropped = copy.deepcopy(body)
            target = dropped
            for part in holder_path:
                target = target[part]
            del target[key]
            yield dropped


@pytest.mark.parametrize("fixture", ["seed-000-zz-emphysema", "testing-copd-untested"])
def test_the_compiled_validator_never_passes_what_jsonschema_refuses(fixture):
    """The fast path may only pass instances the worded validator passes too."""
    for service, context in (
        ("aatd-patient-view", "context-patient-view"),
        ("aatd-order-sign", "context-order-sign"),
    ):
        body = hook_request(load_bundle(fixture), service)
        for instance in _mutations(body):
            for name in ("request", context):
                target = instance if name == "request" else instance.get("context")
                fast = fast_validator(name).is_valid(target)
                slow = not list(validator(name).iter_errors(target))
                assert fast == slow, (name, target if not fast else "passed")


def _empty_members(value: Any, where: str = "") -> list[str]:
    """Paths of every null, empty list, empty object or empty string inside ``value``."""
    if value is None or value in ("", [], {}):
        return [where or "(root)"]
    if isinstance(value, dict):
        return [p for k, v in value.items() for p in _empty_members(v, f"{where}.{k}")]
    if isinstance(value, list):
        return [p for i, v in enumerate(value) for p in _empty_members(v, f"{where}[{i}]")]
    return []


@pytest.mark.parametrize("name", sorted(p.stem for p in (FIXTURES / "patients").glob("*.json")))
def test_no_response_member_is_null_or_empty_extensions_included(client, name):
    """CDS Hooks forbids empty lists; the checklist extension of a reminder with nothing to
    order (record the smoking status) once carried ``"suggestions": []``."""
    response = client.post("/cds-services/aatd-patient-view", json=hook_request(load_bundle(name)))
    assert response.status_code == 200, response.json
    cards = response.json["cards"]
    if cards:  # {"cards": []} is the one empty list CDS Hooks asks for
        assert _empty_members(cards, "cards") == []
