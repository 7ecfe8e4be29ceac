"""A bounded soak: ``python -m benchmarks.soak [--seconds 120] [--fault freeze|stop]``.

``alpha1-cds serve`` (2 workers) under ``--clients`` clients for a few minutes, each
calling patient-view for a sample patient, and two more clients sending feedback (accepted)
for one answer in three. With
``--postgres`` (the database of ``.ci/postgres start``, ``ALPHA1_CDS_TEST_POSTGRES_URL``)
a fault can be injected for ``--fault-seconds`` in the middle: ``freeze`` (SIGSTOP, a hung
database) or ``stop`` (the server down). Reported: requests, errors and p50/p99;
throughput per 5 s window, before, during and after the fault; worker memory at start and
end; and the reconciliation that matters: every card answered is in the issued-card
table, every feedback entry acknowledged with 200 is in the feedback table.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import statistics
import subprocess
import threading
import time
from collections import Counter, deque
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from cds_service.store import CARDS, FEEDBACK
from tests.support.builders import hook_request, load_bundle
from tests.support.served import Served

PATIENTS = (
    "seed-000-zz-emphysema",
    "candidate-zz-course",
    "seed-002-lung-transplant",
    "testing-copd-untested",
    "specialist-sz-low-level",
    "smoking-mz-current-smoker",
)
PATH = "/cds-services/aatd-patient-view"
FEEDBACK_CLIENTS = 2
SCRIPT = Path(__file__).resolve().parents[1] / ".ci" / "postgres"


class Tally:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.times: list[float] = []
        self.statuses: Counter[int] = Counter()
        self.per_window: Counter[int] = Counter()
        self.issued: set[str] = set()
        self.acknowledged: set[str] = set()
        self.feedback_statuses: Counter[int] = Counter()
        self.to_answer: deque[dict[str, Any]] = deque(maxlen=1000)


def _client(port: int, bodies: list[bytes], until: float, started: float, tally: Tally) -> None:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    headers = {"Content-Type": "application/json"}
    while time.monotonic() < until:
        body = random.choice(bodies)
        began = time.monotonic()
        try:
            connection.request("POST", PATH, body=body, headers=headers)
            response = connection.getresponse()
            answer = response.read()
        except OSError:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            with tally.lock:
                tally.statuses[0] += 1
            continue
        took = (time.monotonic() - began) * 1000
        cards = json.loads(answer)["cards"] if response.status == 200 else []
        with tally.lock:
            tally.times.append(took)
            tally.statuses[response.status] += 1
            tally.per_window[int((time.monotonic() - started) // 5)] += 1
            tally.issued.update(card["uuid"] for card in cards)
        with_suggestions = [card for card in cards if card.get("suggestions")]
        if with_suggestions and random.random() < 1 / 3:
            tally.to_answer.append(random.choice(with_suggestions))


def _feedback_client(port: int, until: float, tally: Tally) -> None:
    """Feedback from its own clients, as an EHR sends it: a stuck feedback call must not
    slow the chart-opens measured."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    while time.monotonic() < until:
        try:
            card = tally.to_answer.popleft()
        except IndexError:
            time.sleep(0.01)
            continue
        _feedback(connection, card, tally)


def _feedback(connection: http.client.HTTPConnection, card: dict[str, Any], tally: Tally) -> None:
    """Accepted (an override would hide the topic and empty later chart-opens)."""
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    entry = {
        "card": card["uuid"],
        "outcome": "accepted",
        "outcomeTimestamp": stamp,
        "acceptedSuggestions": [{"id": card["suggestions"][0]["uuid"]}],
    }
    body = json.dumps({"feedback": [entry]}).encode()
    try:
        connection.request(
            "POST", f"{PATH}/feedback", body=body, headers={"Content-Type": "application/json"}
        )
        response = connection.getresponse()
        response.read()
    except OSError:
        return
    with tally.lock:
        tally.feedback_statuses[response.status] += 1
        if response.status == 200:
            tally.acknowledged.add(card["uuid"])


def _fault(kind: str, start_after: float, seconds: float) -> threading.Thread:
    def run() -> None:
        time.sleep(start_after)
        subprocess.run(
            ["bash", str(SCRIPT), "freeze" if kind == "freeze" else "halt"],
            check=True,
            capture_output=True,
        )
        time.sleep(seconds)
        subprocess.run(
            ["bash", str(SCRIPT), "thaw" if kind == "freeze" else "resume"],
            check=True,
            capture_output=True,
        )

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def _reconcile(url: str, tally: Tally, wait: float = 60.0) -> dict[str, int]:
    engine = sa.create_engine(url)
    deadline = time.monotonic() + wait
    try:
        while True:
            with engine.connect() as connection:
                cards = set(connection.scalars(sa.select(CARDS.c.card_uuid)))
                feedback = set(connection.scalars(sa.select(FEEDBACK.c.card_uuid)))
            missing_cards = len(tally.issued - cards)
            missing_feedback = len(tally.acknowledged - feedback)
            if (missing_cards == 0 and missing_feedback == 0) or time.monotonic() > deadline:
                break
            time.sleep(1)
    finally:
        engine.dispose()
    return {
        "cards_answered": len(tally.issued),
        "cards_missing_from_the_table": missing_cards,
        "feedback_acknowledged": len(tally.acknowledged),
        "feedback_missing_from_the_table": missing_feedback,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=120)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--postgres", action="store_true", help="ALPHA1_CDS_TEST_POSTGRES_URL")
    parser.add_argument("--fault", choices=("none", "freeze", "stop"), default="none")
    parser.add_argument("--fault-seconds", type=float, default=20)
    args = parser.parse_args()
    if args.fault != "none" and not args.postgres:
        parser.error("--fault needs --postgres")
    url = os.environ["ALPHA1_CDS_TEST_POSTGRES_URL"] if args.postgres else None
    server = Served(2, env={"ALPHA1_CDS_DATABASE_URL": url} if url else None)
    if not server.wait_healthy():
        raise RuntimeError(server.stderr())
    url = url or server.database_url
    bodies = [json.dumps(hook_request(load_bundle(name))).encode() for name in PATIENTS]
    tally = Tally()
    rss_start = server.workers_memory_mb("VmRSS")
    started = time.monotonic()
    fault_from = args.seconds / 2 - args.fault_seconds / 2
    if args.fault != "none":
        _fault(args.fault, fault_from, args.fault_seconds)
    until = started + args.seconds
    clients = [
        threading.Thread(target=_client, args=(server.port, bodies, until, started, tally))
        for _ in range(args.clients)
    ] + [
        threading.Thread(target=_feedback_client, args=(server.port, until, tally))
        for _ in range(FEEDBACK_CLIENTS)
    ]
    for client in clients:
        client.start()
    for client in clients:
        client.join()
    rss_end = server.workers_memory_mb("VmRSS")
    reconciliation = _reconcile(url, tally)
    server.stop()
    report = _report(args, tally, rss_start, rss_end, reconciliation, fault_from)
    print(json.dumps(report, indent=2))


def _report(
    args: argparse.Namespace,
    tally: Tally,
    rss_start: list[float],
    rss_end: list[float],
    reconciliation: dict[str, int],
    fault_from: float,
) -> dict[str, Any]:
    ordered = sorted(tally.times)
    windows = {f"{w * 5}-{w * 5 + 5}s": n / 5 for w, n in sorted(tally.per_window.items())}
    report: dict[str, Any] = {
        "seconds": args.seconds,
        "clients": args.clients,
        "database": "postgresql" if args.postgres else "sqlite",
        "fault": args.fault,
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "requests": len(ordered),
        "statuses": dict(tally.statuses),
        "p50_ms": round(statistics.median(ordered), 1),
        "p99_ms": round(ordered[int(len(ordered) * 0.99) - 1], 1),
        "feedback_statuses": dict(tally.feedback_statuses),
        "requests_per_s_by_window": windows,
        "worker_rss_mb_start": rss_start,
        "worker_rss_mb_end": rss_end,
        **reconciliation,
    }
    if args.fault != "none":
        during = range(int(fault_from // 5) + 1, int((fault_from + args.fault_seconds) // 5))
        before = range(1, int(fault_from // 5))
        rate = [tally.per_window[w] / 5 for w in during]
        normal = [tally.per_window[w] / 5 for w in before]
        report["requests_per_s_before_fault"] = round(statistics.mean(normal), 1)
        report["requests_per_s_during_fault"] = round(statistics.mean(rate), 1)
    return report


if __name__ == "__main__":
    main()
