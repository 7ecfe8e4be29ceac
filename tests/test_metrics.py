"""/metrics (issue 28 item 2): the counts of a known sequence of calls, scraped from a
two-worker ``alpha1-cds serve`` whichever worker answers; who may read them."""

from __future__ import annotations

import json
import urllib.request

import pytest

from cds_service import create_app

from .conftest import TEST_SETTINGS
from .support.builders import hook_request, load_bundle
from .support.served import Served

SERVICE = "/cds-services/aatd-patient-view"


def _samples(text: str) -> dict[str, float]:
    """'name{labels}' -> value, label order as Prometheus writes it (sorted)."""
    found = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            found[name] = float(value)
    return found


def _post(base: str, path: str, body: dict, headers: dict | None = None) -> int:
    request = urllib.request.Request(
        base + path,
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json", **(headers or {})},
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return answer.status
    except urllib.error.HTTPError as error:
        return error.code


def test_metrics_of_a_two_worker_server_count_every_call_whichever_worker_answered():
    served = Served(workers=2)
    try:
        assert served.wait_healthy(), served.stderr()
        seed = hook_request(load_bundle("seed-000-zz-emphysema"))
        for _ in range(12):  # new connections: both workers answer some
            assert _post(served.base, SERVICE, seed) == 200
        no_data = hook_request(load_bundle("seed-000-zz-emphysema"), prefetch="none")
        for _ in range(3):
            assert _post(served.base, SERVICE, no_data) == 412
        feedback = {
            "feedback": [
                {"card": "c1", "outcome": "overridden", "outcomeTimestamp": "2026-11-21T10:00:00Z"}
            ]
        }
        assert _post(served.base, f"{SERVICE}/feedback", feedback) == 200
        ready = urllib.request.urlopen(served.base + "/readyz", timeout=5)
        assert json.load(ready)["checks"]["requests"]["status"] == "ok"  # the bridge's pool
        with urllib.request.urlopen(served.base + "/metrics", timeout=5) as page:
            assert page.headers["Content-Type"].startswith("text/plain")
            samples = _samples(page.read().decode())
    finally:
        served.stop()
    requests = (
        'alpha1_cds_requests_total{endpoint="cds.invoke",service="aatd-patient-view",status="%s"}'
    )
    assert samples[requests % "200"] == 12
    assert samples[requests % "412"] == 3
    cards = 'alpha1_cds_cards_total{indicator="info",shown="true",topic="%s"}'
    assert samples[cards % "augmentation-candidate"] == 12
    assert samples[cards % "aatd-care-checklist"] == 12
    assert samples['alpha1_cds_feedback_total{outcome="overridden"}'] == 1
    assert samples['alpha1_cds_hook_stage_seconds_count{stage="total"}'] == 12
    assert samples['alpha1_cds_hook_stage_seconds_count{stage="rules"}'] == 12
    missing = [k for k in samples if k.startswith("alpha1_cds_prefetch_412_total{")]
    assert missing
    assert all('reason="not-prefetched"' in k for k in missing)
    assert sum(samples[k] for k in missing) >= 3
    assert samples["alpha1_cds_audit_rows_lost_total"] == 0
    assert samples["alpha1_cds_card_queue"] >= 0  # summed over the live workers


@pytest.mark.parametrize(
    ("settings", "headers", "environ", "status"),
    [
        ({}, {}, {"REMOTE_ADDR": "127.0.0.1"}, 200),
        ({}, {}, {"REMOTE_ADDR": "10.0.0.7"}, 403),
        ({}, {"X-Forwarded-For": "203.0.113.9"}, {"REMOTE_ADDR": "127.0.0.1"}, 403),
        (
            {"metrics_access": "token", "metrics_token": "m-secret"},
            {"Authorization": "Bearer m-secret"},
            {"REMOTE_ADDR": "10.0.0.7"},
            200,
        ),
        (
            {"metrics_access": "token", "metrics_token": "m-secret"},
            {"Authorization": "Bearer wrong"},
            {"REMOTE_ADDR": "127.0.0.1"},
            403,
        ),
        ({"metrics_access": "open"}, {}, {"REMOTE_ADDR": "10.0.0.7"}, 200),
    ],
)
def test_who_may_read_the_metrics(settings, headers, environ, status):
    app = create_app(TEST_SETTINGS | settings)
    answer = app.test_client().get("/metrics", headers=headers, environ_overrides=environ)
    assert answer.status_code == status
    if status == 403:
        assert answer.json["resourceType"] == "OperationOutcome"


def test_token_access_without_a_token_is_refused_at_start():
    from cds_service.config import ConfigError

    with pytest.raises(ConfigError, match="metrics_token"):
        create_app(TEST_SETTINGS | {"metrics_access": "token"})
