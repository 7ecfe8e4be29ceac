"""Key sets (JWKS) under faults: a hanging, failing or flooded key host costs the other
clients nothing (issue 24 item 8). In process for the mechanisms; then the attack as the
review ran it, against ``alpha1-cds serve``."""

from __future__ import annotations

import base64
import json
import multiprocessing
import statistics
import threading
import time
import uuid
from typing import Any

import pytest
import requests

from cds_service.auth import AuthError, KeyStore

from .support.jwts import ec_key, jwks, token
from .support.key_hosts import HangingHost, KeyHost
from .support.served import Served

EC = ec_key("ec-1")


@pytest.fixture
def hanging():
    host = HangingHost()
    yield host
    host.close()


def test_concurrent_callers_make_one_fetch_and_a_failure_is_remembered(hanging):
    """Ten callers at once for a hanging host: one connection, each refused within about
    a second; ten more straight after: no connection at all."""
    keys = KeyStore(refresh_seconds=60)
    took: list[float] = []

    def call() -> None:
        started = time.monotonic()
        with pytest.raises(AuthError):
            keys.key(hanging.url, "any")
        took.append(time.monotonic() - started)

    for _ in range(2):
        threads = [threading.Thread(target=call) for _ in range(10)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=10)
    assert hanging.connections == 1
    assert max(took) < 2.5, took  # requests' read timeout, never the old 3 s per caller
    assert sorted(took)[9] < 0.1  # the second wave (ten calls) is refused from memory


def test_a_failed_refresh_keeps_the_last_good_set(monkeypatch):
    host = KeyHost(jwks(EC))
    try:
        keys = KeyStore(refresh_seconds=0)
        assert keys.key(host.url, "ec-1")
        host.close()  # the key host goes away
        monkeypatch.setattr("cds_service.auth.JWKS_MAX_AGE_SECONDS", 0.0)  # the set is stale
        assert keys.key(host.url, "ec-1")  # refresh failed: the last good set still serves
        with pytest.raises(AuthError, match="not in the JWKS"):
            keys.key(host.url, "unknown")
    finally:
        host.close()


def test_pinned_jwks_urls_are_refreshed_in_the_background():
    """A rotated key is found with no fetch on the request's path."""
    rotated = ec_key("rotated")
    host = KeyHost(jwks(EC))
    try:
        keys = KeyStore(refresh_seconds=1, background=(host.url,))
        assert keys.key(host.url, "ec-1")
        host.keys = jwks(EC, rotated)
        deadline = time.monotonic() + 10
        while host.requests < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
        asked = host.requests
        assert asked >= 2  # the refresher fetched without any call to key()
        assert keys.key(host.url, "rotated")
        assert host.requests == asked or host.requests == asked + 1  # at most its own tick
    finally:
        host.close()


# --- the attack, against alpha1-cds serve ----------------------------------------------------

ATTACKER = "https://attacker-ehr.example.org"
VALID = "https://ehr.example.org"
ATTACKERS = 24
# Each attacker's pause between tokens: 24 of them send up to 240 a second, a load that
# costs the service little CPU once a failed key host is remembered (before: each
# token held a request thread for the 3 s fetch timeout).
ATTACK_PAUSE = 0.1


def _junk(hanging_url: str, iss: str) -> str:
    """A token naming the hanging host (allowlisted) and a random kid: it makes the service
    look for keys there; its signature is never reached, so it need not be signed."""
    header = {"alg": "ES384", "typ": "JWT", "jku": hanging_url, "kid": uuid.uuid4().hex}
    claims = {"iss": iss, "aud": "x", "exp": int(time.time()) + 300, "jti": uuid.uuid4().hex}
    parts = [json.dumps(part).encode() for part in (header, claims)]
    return ".".join(base64.urlsafe_b64encode(p).rstrip(b"=").decode() for p in parts) + ".c2ln"


def attack(base: str, hanging_url: str, seconds: float, sent: Any) -> None:
    """ATTACKERS clients sending junk tokens for ``seconds`` (run in a process of its own,
    so that the attack's own work does not slow the timed calls in the test's process)."""
    stop = time.monotonic() + seconds

    def one() -> None:
        with requests.Session() as session:
            while time.monotonic() < stop:
                headers = {"Authorization": f"Bearer {_junk(hanging_url, ATTACKER)}"}
                session.get(f"{base}/cds-services", headers=headers, timeout=20)
                with sent.get_lock():
                    sent.value += 1
                time.sleep(ATTACK_PAUSE)

    threads = [threading.Thread(target=one) for _ in range(ATTACKERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def _timed_calls(base: str, calls: int = 40) -> list[float]:
    audience = f"{base}/cds-services"
    tokens = [token(EC, audience, iss=VALID, header={"jku": None}) for _ in range(calls)]
    times = []
    with requests.Session() as session:
        for value in tokens:
            started = time.monotonic()
            response = session.get(audience, headers={"Authorization": f"Bearer {value}"})
            assert response.status_code == 200, response.text
            times.append(time.monotonic() - started)
    return times


# On a 2-core machine the attacker's 24 threads take CPU from the timed calls, about doubling
# a 7 ms p50 (to 14-20 ms in CI) with nothing queued; the fault this test guards against
# queues valid calls behind the hanging host's fetches, a second or more each. A p50 under
# 50 ms is therefore no sign of it, whatever the idle baseline was.
SHARED_CORES_FLOOR = 0.050


def test_a_hanging_jku_host_does_not_slow_other_clients(tmp_path, hanging):
    """The review's attack: 24 clients send junk tokens naming one trusted issuer's
    hanging jku host, while a second issuer's valid calls are timed. Before: valid calls
    went from 6 ms to 6 s. Now: within twice their p50 (the best of three windows), or
    under SHARED_CORES_FLOOR."""
    pinned = tmp_path / "valid-jwks.json"
    pinned.write_text(json.dumps(jwks(EC)))
    clients = [
        {"iss": ATTACKER, "jku": [hanging.url]},
        {"iss": VALID, "jwks_file": str(pinned)},
    ]
    environment = {
        "ALPHA1_CDS_AUTH_MODE": "required",
        "ALPHA1_CDS_TRUSTED_CLIENTS": json.dumps(clients),
    }
    server = Served(workers=1, env=environment, public_base_url=True)
    try:
        assert server.wait_healthy(), server.stderr()
        _timed_calls(server.base, 10)  # warm
        baseline = statistics.median(_timed_calls(server.base))
        context = multiprocessing.get_context("spawn")
        sent = context.Value("i", 0)
        attacker = context.Process(target=attack, args=(server.base, hanging.url, 8.0, sent))
        attacker.start()
        try:
            # A spawned process imports the test module first, seconds on a loaded machine:
            # wait until its junk actually arrives, then as before for the attack to be on.
            started = time.monotonic()
            while sent.value == 0 and time.monotonic() - started < 30:
                time.sleep(0.05)
            assert sent.value > 0, "the attack did not start"
            time.sleep(2.0)  # the attackers are up and sending
            # Three windows within the attack, judged by the best: on a 2-core machine the
            # attackers' own CPU can double one window's p50 now and then (8 -> 20 ms, seen
            # in CI); the fault this guards against (valid calls queued behind the hanging
            # host, 6 ms -> 6 s) slows every window.
            windows = [_timed_calls(server.base) for _ in range(3)]
        finally:
            attacker.join(timeout=60)
        under_attack = min(windows, key=statistics.median)
        p50 = statistics.median(under_attack)
        print(
            f"valid p50 {baseline * 1000:.1f} ms -> {p50 * 1000:.1f} ms under attack; "
            f"max {max(under_attack) * 1000:.0f} ms; junk calls {sent.value}; "
            f"connections to the hanging host {hanging.connections}"
        )
        assert sent.value > 100  # the attack ran
        assert p50 <= max(2 * baseline, SHARED_CORES_FLOOR), (baseline, p50)
        assert hanging.connections <= 2  # one per failure hold (30 s), not one per token
    finally:
        server.stop()
