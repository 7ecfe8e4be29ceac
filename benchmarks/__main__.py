"""The benchmark suite in one run: ``python -m benchmarks [--quick]``.

Measures, for generated patient-view requests with full prefetch (small ~20 resources,
typical ~300, large ~520 of which ~500 Observations, heavy ~3000):

- in process: map + rules + render (p50/p99), and the floor: json.loads of the request
  plus json.dumps of the response, so each figure reads as a ratio to it;
- over HTTP against ``alpha1-cds serve`` (granian) on loopback: sequential (p50/p99) and
  8 concurrent clients (p50/p99, requests per second, errors), bounded in count and time;
- peak memory (VmHWM) of each worker after the load;
- no prefetch: six FHIR queries against sekmet-fhir behind a 200 ms delaying proxy.

Prints a table and writes ``benchmarks/results/latest.json``. Nothing here asserts: the
figures go into benchmarks/README.md and the closing note of each performance change.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import platform
import statistics
import threading
import time
from datetime import date
from pathlib import Path
from typing import Any

from benchmarks.patients import generate
from cds_service.pipeline import evaluate
from fhir_mappings.fhirjson import bundle_resources
from tests.support.builders import hook_request
from tests.support.served import Served

RESULTS = Path(__file__).parent / "results"
SIZES = {"small": (20, 0.6), "typical": (300, 0.9), "large": (520, 0.96), "heavy": (3000, 0.95)}
PATH = "/cds-services/aatd-patient-view"
CONCURRENCY = 8
LOAD_SECONDS_MAX = 20.0


def percentiles(times: list[float]) -> dict[str, float]:
    ordered = sorted(times)
    return {
        "p50_ms": round(statistics.median(ordered), 3),
        "p99_ms": round(ordered[max(0, int(len(ordered) * 0.99) - 1)], 3),
    }


def in_process(bundle: dict[str, Any], runs: int) -> dict[str, Any]:
    resources = list(bundle_resources(bundle))
    patient = next(r["id"] for r in resources if r["resourceType"] == "Patient")
    request_bytes = json.dumps(hook_request(bundle)).encode()
    result = evaluate("patient-view", resources, patient, as_of=date(2026, 11, 21))
    times, floor = [], []
    for _ in range(runs):
        started = time.perf_counter()
        result = evaluate("patient-view", resources, patient, as_of=date(2026, 11, 21))
        times.append((time.perf_counter() - started) * 1000)
        started = time.perf_counter()
        json.loads(request_bytes)
        json.dumps(result.response)
        floor.append((time.perf_counter() - started) * 1000)
    stats = percentiles(times)
    floor_p50 = statistics.median(floor)
    return {
        **stats,
        "floor_p50_ms": round(floor_p50, 3),
        "ratio_to_floor": round(stats["p50_ms"] / floor_p50, 1),
        "cards": len(result.topics),
    }


def _post(connection: http.client.HTTPConnection, body: bytes) -> tuple[int, float]:
    started = time.perf_counter()
    connection.request("POST", PATH, body=body, headers={"Content-Type": "application/json"})
    response = connection.getresponse()
    response.read()
    return response.status, (time.perf_counter() - started) * 1000


def sequential(port: int, body: bytes, runs: int) -> dict[str, Any]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    for _ in range(10):
        _post(connection, body)
    results = [_post(connection, body) for _ in range(runs)]
    errors = sum(1 for status, _ in results if status != 200)
    return {**percentiles([ms for _, ms in results]), "errors": errors}


def concurrent(port: int, body: bytes, per_client: int) -> dict[str, Any]:
    """CONCURRENCY clients, each ``per_client`` requests on its own keep-alive connection;
    stops by itself after LOAD_SECONDS_MAX whatever is left."""
    times: list[float] = []
    errors = [0]
    lock = threading.Lock()
    stop_at = time.monotonic() + LOAD_SECONDS_MAX

    def client() -> None:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        for _ in range(per_client):
            if time.monotonic() > stop_at:
                break
            try:
                status, ms = _post(connection, body)
            except OSError:
                status, ms = 0, 0.0
                connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            with lock:
                times.append(ms)
                errors[0] += status != 200

    threads = [threading.Thread(target=client) for _ in range(CONCURRENCY)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    return {
        **percentiles(times),
        "requests": len(times),
        "requests_per_s": round(len(times) / elapsed, 1),
        "errors": errors[0],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer runs, for a smoke test")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--no-fhir", action="store_true", help="skip the no-prefetch scenario")
    args = parser.parse_args()
    scale = 0.2 if args.quick else 1.0
    bundles = {
        name: generate(total, observation_share=share) for name, (total, share) in SIZES.items()
    }
    report: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "machine": {
            "cores": os.cpu_count(),
            "python": platform.python_version(),
            "load_average_before": [round(x, 2) for x in os.getloadavg()],
        },
        "resources": {name: len(b["entry"]) for name, b in bundles.items()},
        "in_process": {
            name: in_process(b, int(300 * scale) if name != "heavy" else int(60 * scale) or 5)
            for name, b in bundles.items()
        },
    }
    server = Served(args.workers)
    if not server.wait_healthy():
        raise RuntimeError(f"alpha1-cds serve did not start:\n{server.stderr()}")
    try:
        bodies = {name: json.dumps(hook_request(b)).encode() for name, b in bundles.items()}
        report["http_sequential"] = {
            name: sequential(server.port, bodies[name], int(500 * scale) if name != "heavy" else 50)
            for name in bodies
        }
        report["http_concurrent_8"] = {
            "small": concurrent(server.port, bodies["small"], int(400 * scale)),
            "large": concurrent(server.port, bodies["large"], int(100 * scale)),
        }
        report["worker_peak_memory_mb"] = server.workers_peak_memory_mb()
    finally:
        server.stop()
    if not args.no_fhir:
        from benchmarks.parallel_fetch import measure_no_prefetch

        report["no_prefetch_6_queries_200ms"] = measure_no_prefetch(
            runs=10 if not args.quick else 3
        )
    report["machine"]["load_average_after"] = [round(x, 2) for x in os.getloadavg()]
    print_table(report)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "latest.json").write_text(json.dumps(report, indent=2) + "\n")


def print_table(report: dict[str, Any]) -> None:
    print(
        f"alpha1-cds benchmarks, {report['date']}, {report['machine']['cores']} cores, "
        f"load {report['machine']['load_average_before']}"
    )
    print(
        f"\n{'in process (map+rules+render)':32}{'resources':>10}{'p50 ms':>9}{'p99 ms':>9}"
        f"{'floor ms':>10}{'x floor':>9}"
    )
    for name, row in report["in_process"].items():
        print(
            f"{name:32}{report['resources'][name]:>10}{row['p50_ms']:>9.2f}{row['p99_ms']:>9.2f}"
            f"{row['floor_p50_ms']:>10.2f}{row['ratio_to_floor']:>9}"
        )
    print(f"\n{'HTTP sequential (granian)':32}{'p50 ms':>9}{'p99 ms':>9}{'errors':>8}")
    for name, row in report["http_sequential"].items():
        print(f"{name:32}{row['p50_ms']:>9.2f}{row['p99_ms']:>9.2f}{row['errors']:>8}")
    print(
        f"\n{'HTTP, 8 concurrent clients':32}{'p50 ms':>9}{'p99 ms':>9}{'req/s':>9}"
        f"{'requests':>10}{'errors':>8}"
    )
    for name, row in report["http_concurrent_8"].items():
        print(
            f"{name:32}{row['p50_ms']:>9.2f}{row['p99_ms']:>9.2f}{row['requests_per_s']:>9}"
            f"{row['requests']:>10}{row['errors']:>8}"
        )
    print(f"\nworker peak memory (MB): {report['worker_peak_memory_mb']}")
    if "no_prefetch_6_queries_200ms" in report:
        row = report["no_prefetch_6_queries_200ms"]
        print(
            f"no prefetch, 6 queries x 200 ms: p50 {row['median']} ms (min {row['min']}, "
            f"max {row['max']})"
        )


if __name__ == "__main__":
    main()
