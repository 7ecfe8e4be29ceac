"""Parallel fetching: a patient-view call that needs six FHIR queries, each delayed 200 ms.

Starts sekmet-fhir on loopback with a fixture patient, puts a proxy that delays every
answer by 200 ms in front of it, serves alpha1-cds over HTTP on loopback and times calls
whose prefetch leaves six keys for the service to fetch. Once with the default fetch pool
(parallel) and once with a pool of one (the sequential baseline).

    python -m benchmarks.parallel_fetch [--runs 10] [--delay 0.2]
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import requests
from werkzeug.serving import make_server

from cds_service import create_app
from cds_service.prefetch import render
from cds_service.services import SERVICES
from tests.support.builders import hook_request, load_bundle
from tests.support.fhir_server import DelayingProxy, sekmet

FIXTURE = "testing-copd-untested"
FETCHED_KEYS = (
    "aatResults",
    "spirometry",
    "bodyWeight",
    "smokingStatus",
    "conditions",
    "procedures",
    "medicationRequests",
    "medicationStatements",
)
RESULTS = Path(__file__).parent / "results"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--delay", type=float, default=0.2)
    args = parser.parse_args()
    logging.getLogger("werkzeug").setLevel(logging.ERROR)

    bundle = load_bundle(FIXTURE)
    with sekmet() as fhir, DelayingProxy(fhir.base, args.delay) as slow:
        fhir.load(bundle)
        request = _request(bundle, fhir.base, slow.base)
        results = {
            label: _measure(parallel, request, args.runs)
            for label, parallel in (("parallel (pool of 8)", 8), ("sequential (pool of 1)", 1))
        }
    report = {
        "scenario": f"patient-view, {len(FETCHED_KEYS)} queries fetched, "
        f"each delayed {args.delay * 1000:.0f} ms",
        "runs": args.runs,
        "results_ms": results,
    }
    _print(report)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "parallel_fetch.json").write_text(json.dumps(report, indent=2) + "\n")


def measure_no_prefetch(runs: int = 10, delay: float = 0.2) -> dict[str, float]:
    """The parallel case alone, for the full suite (benchmarks/__main__.py)."""
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    bundle = load_bundle(FIXTURE)
    with sekmet() as fhir, DelayingProxy(fhir.base, delay) as slow:
        fhir.load(bundle)
        return _measure(8, _request(bundle, fhir.base, slow.base), runs)


def _request(bundle: dict[str, Any], fast: str, slow: str) -> dict[str, Any]:
    """Prefetch everything but FETCHED_KEYS (from the fast server); fetch those slowly."""
    request = hook_request(bundle, prefetch="none", fhirServer=slow)
    service = SERVICES["aatd-patient-view"]
    request["prefetch"] = {
        key: requests.get(f"{fast}/{render(q.template, request['context'])}", timeout=10).json()
        for key, q in service.queries.items()
        if key not in FETCHED_KEYS
    }
    return request


def _measure(parallel: int, request: dict[str, Any], runs: int) -> dict[str, float]:
    app = create_app(
        {
            "auth_mode": "off",
            "fhir_parallel": parallel,
            "fhir_timeout": 5,
            "fhir_deadline": 10,
            "database_url": f"sqlite:///{tempfile.mkdtemp()}/cards.sqlite",
        }
    )
    server = make_server("127.0.0.1", 0, app, threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_port}/cds-services/aatd-patient-view"
    times = []
    try:
        for _ in range(runs):
            started = time.perf_counter()
            response = requests.post(url, json=request, timeout=30)
            times.append((time.perf_counter() - started) * 1000)
            assert response.status_code == 200, response.text
            assert response.json()["cards"], "the fixture patient should get a card"
    finally:
        server.shutdown()
    return {
        "median": round(statistics.median(times), 1),
        "min": round(min(times), 1),
        "max": round(max(times), 1),
    }


def _print(report: dict[str, Any]) -> None:
    print(report["scenario"], f"({report['runs']} runs)")
    print(f"{'':24}{'median':>10}{'min':>10}{'max':>10}")
    for label, numbers in report["results_ms"].items():
        print(f"{label:24}" + "".join(f"{numbers[k]:>10.1f}" for k in ("median", "min", "max")))


if __name__ == "__main__":
    main()
