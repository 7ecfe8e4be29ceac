"""The OpenAPI 3.1 description served at ``/openapi.json``.

Built from the same JSON Schemas the service validates with (OpenAPI 3.1 schemas are JSON
Schema 2020-12), so the description cannot drift from the behaviour; tests check that every
route is described and that responses conform to it.
"""

from __future__ import annotations

import copy
from functools import cache
from importlib import metadata
from typing import Any

from .services import SERVICES, Service
from .validation import SCHEMA_NAMES, schema

COMPONENT = {name: name.title().replace("-", "") for name in SCHEMA_NAMES}
ERRORS = {
    "400": "The request is not valid JSON or breaks the request schema; the issue names the field",
    "401": "Client JWT missing or not accepted (no detail is given)",
    "403": "Not allowed to read this (metrics_access)",
    "404": "No such service",
    "405": "Method not allowed",
    "412": "Required data could not be obtained from prefetch or the FHIR server",
    "413": "Body or number of resources over the configured limit",
    "415": "Content-Type is not JSON",
    "503": "The store is unavailable; retry after Retry-After seconds (an entry is kept once)",
}


def _rewrite(node: Any, current: str) -> Any:
    """Point cross-schema ``urn:`` refs and local ``#/$defs`` refs into components."""
    if isinstance(node, dict):
        out = {}
        for key, value in node.items():
            if key in ("$id", "$schema"):
                continue
            if key == "$ref" and isinstance(value, str):
                out[key] = _ref(value, current)
            else:
                out[key] = _rewrite(value, current)
        return out
    if isinstance(node, list):
        return [_rewrite(item, current) for item in node]
    return node


def _ref(value: str, current: str) -> str:
    if value.startswith("urn:alpha1-cds:schema:"):
        target, _, pointer = value.removeprefix("urn:alpha1-cds:schema:").partition("#")
        name = target.replace(":", "-")
        return f"#/components/schemas/{COMPONENT[name]}{pointer}"
    if value.startswith("#/"):
        return f"#/components/schemas/{COMPONENT[current]}{value[1:]}"
    return value


def _live(summary: str) -> dict[str, Any]:
    status = {"type": "object", "required": ["status"], "properties": {"status": {"const": "ok"}}}
    responses = {"200": _inline("Up", status)}
    return {"get": {"summary": summary, "security": [], "responses": responses}}


def _inline(description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _errors(*codes: str) -> dict[str, Any]:
    ref = {"$ref": "#/components/schemas/OperationOutcome"}
    return {
        code: {"description": ERRORS[code], "content": {"application/json": {"schema": ref}}}
        for code in codes
    }


def _json(description: str, component: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{component}"}}},
    }


def _service(service: Service, secured: list[dict[str, list[str]]]) -> dict[str, Any]:
    """One service: the request schema with its hook fixed and its hook's context schema."""
    context = COMPONENT[f"context-{service.hook}"]
    request = {
        "allOf": [
            {"$ref": f"#/components/schemas/{COMPONENT['request']}"},
            {
                "properties": {
                    "hook": {"const": service.hook},
                    "context": {"$ref": f"#/components/schemas/{context}"},
                }
            },
        ]
    }
    return {
        "post": {
            "summary": f"{service.title} ({service.hook})",
            "description": service.description,
            "security": secured,
            "requestBody": {"required": True, "content": {"application/json": {"schema": request}}},
            "responses": {
                "200": _json("Cards", COMPONENT["response"]),
                **_errors("400", "401", "412", "413", "415"),
            },
        }
    }


def _feedback(secured: list[dict[str, list[str]]]) -> dict[str, Any]:
    answer = {
        "type": "object",
        "required": ["received", "new"],
        "properties": {
            "received": {"type": "integer", "minimum": 0},
            "new": {"type": "integer", "minimum": 0},
            "unknownCards": {"type": "array", "minItems": 1, "items": {"type": "string"}},
        },
    }
    return {
        "post": {
            "summary": "Feedback on cards: accepted or overridden (stored once per card, "
            "outcome and time)",
            "security": secured,
            "requestBody": {
                "required": True,
                "content": {
                    "application/json": {
                        "schema": {"$ref": f"#/components/schemas/{COMPONENT['feedback']}"}
                    }
                },
            },
            "responses": {
                "200": {
                    "description": "How many entries were received and new; card uuids "
                    "never issued by this service",
                    "content": {"application/json": {"schema": answer}},
                },
                **_errors("400", "401", "413", "415", "503"),
            },
        }
    }


@cache
def document() -> dict[str, Any]:

    schemas = {
        COMPONENT[name]: _rewrite(copy.deepcopy(schema(name)), name) for name in SCHEMA_NAMES
    }
    schemas["OperationOutcome"] = {
        "type": "object",
        "required": ["resourceType", "issue"],
        "properties": {
            "resourceType": {"const": "OperationOutcome"},
            "issue": {
                "type": "array",
                "minItems": 1,
                "items": {
                    "type": "object",
                    "required": ["severity", "code", "diagnostics"],
                    "properties": {
                        "severity": {"type": "string"},
                        "code": {"type": "string"},
                        "diagnostics": {"type": "string"},
                        "expression": {"type": "array", "items": {"type": "string"}},
                    },
                },
            },
        },
    }
    secured: list[dict[str, list[str]]] = [{"cdsHooksJwt": []}]
    services = {f"/cds-services/{s.id}": _service(s, secured) for s in SERVICES.values()}
    services |= {f"/cds-services/{s.id}/feedback": _feedback(secured) for s in SERVICES.values()}
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "alpha1-cds",
            "version": metadata.version("alpha1-cds"),
            "description": "CDS Hooks 2.0 service for alpha-1 antitrypsin deficiency guidelines.",
        },
        "paths": {
            "/cds-services": {
                "get": {
                    "summary": "Discovery: the services, hooks and prefetch templates",
                    "security": secured,
                    "responses": {
                        "200": _json("The services", COMPONENT["discovery"]),
                        **_errors("401"),
                    },
                }
            },
            **services,
            "/livez": _live("Liveness: the process answers"),
            "/metrics": {
                "get": {
                    "summary": "Prometheus metrics (metrics_access: loopback, token or open)",
                    "security": [],
                    "responses": {
                        "200": {
                            "description": "Prometheus text format",
                            "content": {"text/plain": {"schema": {"type": "string"}}},
                        },
                        **_errors("403"),
                    },
                }
            },
            "/valuesets": {
                "get": {
                    "summary": "The code lists the service reads, as FHIR R4 ValueSets",
                    "security": [],
                    "responses": {"200": _inline("A Bundle of ValueSets", {"type": "object"})},
                }
            },
            "/healthz": _live("Liveness (the old name of /livez)"),
            "/readyz": {
                "get": {
                    "summary": "Readiness: the store answers at its schema version and the"
                    " request pool is not saturated",
                    "security": [],
                    "responses": {
                        "200": _inline("Ready, with each check", {"type": "object"}),
                        "503": {
                            "description": "Not ready: an issue per failed check",
                            "content": {
                                "application/json": {
                                    "schema": {"$ref": "#/components/schemas/OperationOutcome"}
                                }
                            },
                        },
                    },
                }
            },
            "/openapi.json": {
                "get": {
                    "summary": "This description",
                    "security": [],
                    "responses": {
                        "200": {
                            "description": "OpenAPI 3.1 document",
                            "content": {"application/json": {"schema": {"type": "object"}}},
                        }
                    },
                }
            },
        },
        "components": {
            "schemas": schemas,
            "securitySchemes": {
                "cdsHooksJwt": {
                    "type": "http",
                    "scheme": "bearer",
                    "bearerFormat": "JWT",
                    "description": "CDS Hooks client JWT (ES384/RS384), aud = the URL invoked",
                }
            },
        },
    }
