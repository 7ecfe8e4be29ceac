"""Long records: a patient followed for years is answered from the prefetch alone.

The service's own templates ask a newest-first page for results whose newest suffice
(weights, smoking status, spirometry) and a page large enough for decades where every
record counts (diagnoses, immunizations, orders). An answer cut short is accepted only
where the template asked for it, and only when it holds what the rules need; otherwise the
412 names the key and why (issue 23, "Long records").
"""

from __future__ import annotations

import json
from urllib.parse import parse_qs, unquote, urlsplit

import responses

from cds_service.services import SERVICES
from fhir_mappings import QUERIES
from fhir_mappings.fhirjson import bundle_resources

from .support.builders import answer, hook_request, load_bundle, searchset

SERVICE = "/cds-services/aatd-patient-view"
FHIR = "https://fhir.example.org/r4"
AUTH = {
    "access_token": "t0ken",
    "token_type": "Bearer",
    "expires_in": 300,
    "scope": "patient/*.read",
    "subject": "alpha1-cds",
}
LONG = "safety-long-record"


def topics(response) -> set[str]:
    return {card["source"]["topic"]["code"] for card in response.json["cards"]}


def diagnostics(response) -> str:
    return " ".join(issue["diagnostics"] for issue in response.json["issue"])


def test_a_long_record_is_answered_from_the_prefetch_alone(client):
    request = hook_request(load_bundle(LONG))
    weights = request["prefetch"]["bodyWeight"]
    assert weights["total"] > len(weights["entry"])  # the EHR sent the newest page only
    response = client.post(SERVICE, json=request)
    assert response.status_code == 200
    assert "augmentation-candidate" in topics(response)
    same = client.post(SERVICE, json=hook_request(load_bundle("seed-000-zz-emphysema")))
    assert topics(response) == topics(same)


def test_a_newest_page_the_server_did_not_sort_is_refused_and_said(client):
    request = hook_request(load_bundle(LONG))
    weights = request["prefetch"]["bodyWeight"]
    weights["entry"].reverse()  # a server that ignored _sort=-date
    response = client.post(SERVICE, json=request)
    assert response.status_code == 412
    assert "'bodyWeight'" in diagnostics(response)
    assert "not sorted newest first" in diagnostics(response)


def test_a_newest_page_that_does_not_reach_back_far_enough_is_refused(client):
    """Liver tests: the newest 100 must span the year the monitoring rule looks back."""
    bundle = load_bundle("seed-000-zz-emphysema")
    pid = "seed-000"
    tests = [
        {
            "resourceType": "Observation",
            "id": f"alt-{day}",
            "status": "final",
            "code": {"coding": [{"system": "http://loinc.org", "code": "1742-6"}]},
            "subject": {"reference": f"Patient/{pid}"},
            "effectiveDateTime": f"2026-{10 + day // 30:02d}-{day % 30 + 1:02d}",
            "valueQuantity": {"value": 30, "unit": "U/L"},
        }
        for day in range(0, 50)
    ]
    request = hook_request(bundle)
    page = answer(QUERIES["liverTests"], tests)
    page["total"] = 400  # two draws a day for months: the newest 100 span weeks, not a year
    request["prefetch"]["liverTests"] = page
    response = client.post(SERVICE, json=request)
    assert response.status_code == 412
    assert "'liverTests'" in diagnostics(response)
    assert "reach back only to" in diagnostics(response)


def test_a_complete_key_cut_short_is_never_read_as_the_whole(client):
    request = hook_request(load_bundle(LONG))
    request["prefetch"]["conditions"]["total"] = 1500
    response = client.post(SERVICE, json=request)
    assert response.status_code == 412
    text = diagnostics(response)
    assert "'conditions'" in text
    assert "reported 1500 results but" in text
    assert "no fhirServer was given" in text


def test_the_templates_ask_only_for_codes_the_rules_read(client):
    """A diagnosis no rule reads stays out of the answer: 159 of them in this record."""
    request = hook_request(load_bundle(LONG))
    conditions = list(bundle_resources(request["prefetch"]["conditions"]))
    assert all("stress" not in json.dumps(c).lower() for c in conditions)


def test_every_search_value_is_percent_encoded(client):
    discovery = client.get("/cds-services").json["services"]
    for service in discovery:
        for key, template in service["prefetch"].items():
            query = template.split("?", 1)[1] if "?" in template else ""
            assert "//" not in query, key
            assert "|" not in query, key
            for values in parse_qs(query).values():
                for value in values:
                    assert value == unquote(value) or "%" not in unquote(value)


def _paged_server(mock: responses.RequestsMock, resources: list[dict]) -> None:
    """A server whose every search answers the template's page with a next link."""

    def callback(request):
        url = urlsplit(request.url)
        kind = url.path.rsplit("/", 1)[-1]
        code = parse_qs(url.query).get("code", [""])[0]
        query = next(
            q
            for q in QUERIES.values()
            if q.resource_type == kind and (not code or f"code={code}" in unquote(q.template))
        )
        page = (
            answer(query, resources)
            if query.window
            else searchset([r for r in resources if r["resourceType"] == kind])
        )
        if query.window and page["total"] > len(page["entry"]):
            page["link"] = [{"relation": "next", "url": f"{FHIR}/{kind}?page=2"}]
        return 200, {}, json.dumps(page)

    patient = next(r for r in resources if r["resourceType"] == "Patient")
    mock.add(responses.GET, f"{FHIR}/Patient/{patient['id']}", json=patient)
    for kind in {q.resource_type for q in QUERIES.values()} - {"Patient"}:
        mock.add_callback(responses.GET, f"{FHIR}/{kind}", callback=callback)


def test_fetching_a_long_record_reads_one_page_per_newest_key(client):
    resources = list(bundle_resources(load_bundle(LONG)))
    request = hook_request(load_bundle(LONG), prefetch="none", fhirServer=FHIR)
    request["fhirAuthorization"] = AUTH
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        _paged_server(mock, resources)
        response = client.post(SERVICE, json=request)
        urls = [call.request.url for call in mock.calls]
    assert response.status_code == 200, response.json
    assert "augmentation-candidate" in topics(response)
    assert not any("page=2" in url for url in urls)
    assert len(urls) == len(SERVICES["aatd-patient-view"].prefetch_keys)
