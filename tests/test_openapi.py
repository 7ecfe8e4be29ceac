"""/openapi.json describes exactly the routes the app serves, with our own schemas."""

from __future__ import annotations

import re

from cds_service.openapi import document
from cds_service.services import SERVICES


def test_every_route_is_described_and_every_description_is_a_route(app):
    routes = set()
    for rule in app.url_map.iter_rules():
        if rule.endpoint == "static" or rule.endpoint.startswith("smart_app."):
            continue  # the SMART app's pages are HTML for a browser (docs/smart-app.md)
        path = re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", rule.rule)
        if "{service_id}" in path:  # each service is described under its own path
            routes |= {path.replace("{service_id}", sid) for sid in SERVICES}
        else:
            routes.add(path)
    assert routes == set(document()["paths"])


def test_served_document_is_openapi_3_1(client):
    response = client.get("/openapi.json")
    assert response.status_code == 200
    body = response.json
    assert body["openapi"].startswith("3.1")
    assert body["components"]["securitySchemes"]["cdsHooksJwt"]["scheme"] == "bearer"
    assert "urn:alpha1-cds" not in response.get_data(as_text=True)  # every ref is resolvable


def test_service_request_bodies_fix_the_hook():
    paths = document()["paths"]
    request = paths["/cds-services/aatd-order-sign"]["post"]["requestBody"]
    schema = request["content"]["application/json"]["schema"]
    assert schema["allOf"][1]["properties"]["hook"] == {"const": "order-sign"}
