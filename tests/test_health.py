"""Liveness and readiness (issue 28 item 3), with the test client and SQLite; a stopped
PostgreSQL is in test_store_faults.py, the serving bridge's pool in test_serve.py."""

from __future__ import annotations

import sqlalchemy as sa

from cds_service.health import PoolGauge
from cds_service.store import MIGRATIONS, SCHEMA_VERSION


def test_live_and_ready_with_the_store_at_its_version(client):
    assert client.get("/livez").json == {"status": "ok"}
    assert client.get("/healthz").json == {"status": "ok"}  # the old name, kept
    ready = client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json["checks"]["store"] == {
        "status": "ok",
        "version": MIGRATIONS[-1][0],
        "expected": MIGRATIONS[-1][0],
    }


def test_a_database_of_another_schema_version_is_not_ready(app, client):
    store = app.extensions["alpha1_cds"].store
    newest = MIGRATIONS[-1][0]
    with store.engine.begin() as connection:
        connection.execute(sa.insert(SCHEMA_VERSION).values(version=newest + 1))
    ahead = client.get("/readyz")
    assert ahead.status_code == 503
    [issue] = ahead.json["issue"]
    assert issue["diagnostics"].startswith("store: status ahead")  # a newer release's database
    with store.engine.begin() as connection:
        connection.execute(sa.delete(SCHEMA_VERSION).where(SCHEMA_VERSION.c.version >= newest))
    behind = client.get("/readyz")
    assert behind.json["issue"][0]["diagnostics"].startswith("store: status behind")
    assert client.get("/livez").status_code == 200


def test_a_saturated_request_pool_is_not_ready(client):
    gauge = PoolGauge(threads=2)
    for _ in range(5):
        gauge.enter()  # 2 running, 3 waiting: more waiting than threads
    answer = client.get("/readyz", environ_overrides={"alpha1.pool": gauge})
    assert answer.status_code == 503
    [issue] = answer.json["issue"]
    assert issue["diagnostics"] == "requests: status saturated, inFlight 5, threads 2"
    gauge.leave()
    assert client.get("/readyz", environ_overrides={"alpha1.pool": gauge}).status_code == 200
