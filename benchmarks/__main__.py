"""The benchmark suite in one run: ``python -m benchmarks [--quick]``.

Measures, for generated patient-view requests with full prefetch (small ~20 resources,
typical ~300, large ~520 of which ~500 Observations, heavy ~3000):

- in process: map + rules + render (p50/p99), and the floor: orjson.loads of the request
  plus orjson.dumps of the response, so each figure reads as a ratio to it;
- over HTTP, ``alpha1-cds serve`` and two floor apps (benchmarks/floor.py: parse the same
  request, answer as many bytes, nothing else; one on the same serving stack, one on
  granian's native WSGI, the fastest measured here) on loopback, in interleaved rounds:
  sequential (p50/p99) and 8 concurrent clients (p50/p99, requests per second, errors),
  bounded in count and time; every figure with its ratio to the floors;
- peak memory (VmHWM) of each worker and of each server tree after the load;
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
import sys
import threading
import time
from datetime import date
from pathlib import Path
from typing import Any

import orjson

from benchmarks.patients import generate
from cds_service.collector import settle_collector
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
        orjson.loads(request_bytes)
        orjson.dumps(result.response)
        floor.append((time.perf_counter() - started) * 1000)
    stats = percentiles(times)
    floor_p50 = statistics.median(floor)
    return {
        **stats,
        "floor_p50_ms": round(floor_p50, 3),
        "ratio_to_floor": round(stats["p50_ms"] / floor_p50, 1),
        "cards": len(result.topics),
    }


def _post(
    connection: http.client.HTTPConnection, body: bytes, headers: dict[str, str]
) -> tuple[int, float, int]:
    started = time.perf_counter()
    connection.request("POST", PATH, body=body, headers=headers)
    response = connection.getresponse()
    size = len(response.read())
    return response.status, (time.perf_counter() - started) * 1000, size


def sequential(port: int, body: bytes, headers: dict[str, str], runs: int) -> list[float]:
    """Times of ``runs`` calls on one keep-alive connection (after 5 warm-up calls);
    a failed call counts as an error (-1)."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    for _ in range(5):
        _post(connection, body, headers)
    results = [_post(connection, body, headers) for _ in range(runs)]
    connection.close()
    return [ms if status == 200 else -1.0 for status, ms, _ in results]


def concurrent(
    port: int, body: bytes, headers: dict[str, str], per_client: int
) -> tuple[list[float], float]:
    """CONCURRENCY clients, each ``per_client`` calls on its own keep-alive connection, for
    LOAD_SECONDS_MAX at most: the times (-1 for an error) and the seconds it took."""
    times: list[float] = []
    lock = threading.Lock()
    stop_at = time.monotonic() + LOAD_SECONDS_MAX

    def client() -> None:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        for _ in range(per_client):
            if time.monotonic() > stop_at:
                break
            try:
                status, ms, _ = _post(connection, body, headers)
            except OSError:
                status, ms = 0, 0.0
                connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            with lock:
                times.append(ms if status == 200 else -1.0)
        connection.close()

    threads = [threading.Thread(target=client) for _ in range(CONCURRENCY)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return times, time.perf_counter() - started


TARGETS = ("alpha1-cds", "floor: same stack", "floor: granian wsgi")
FASTEST_FLOOR = "floor: granian wsgi"
ROUNDS = 4


def _servers(workers: int) -> dict[str, Served]:
    granian = [str(Path(sys.executable).with_name("granian")), "--log-level", "warning"]
    servers = {
        "alpha1-cds": Served(workers),
        "floor: same stack": Served(
            workers, command=[*granian, "--interface", "rsgi", "benchmarks.floor:bridge"]
        ),
        "floor: granian wsgi": Served(
            workers,
            command=[
                *granian,
                "--interface",
                "wsgi",
                "--blocking-threads",
                "8",
                "benchmarks.floor:app",
            ],
        ),
    }
    for name, server in servers.items():
        if not server.wait_healthy():
            raise RuntimeError(f"{name} did not start:\n{server.stderr()}")
    return servers


def over_http(bodies: dict[str, bytes], workers: int, scale: float) -> dict[str, Any]:
    """Every target, interleaved round by round so that the machine's drift hits all alike."""
    servers = _servers(workers)
    try:
        sizes = {  # what alpha1-cds answers, so that each floor answers as many bytes
            name: _post(
                http.client.HTTPConnection("127.0.0.1", servers["alpha1-cds"].port, timeout=30),
                body,
                {"Content-Type": "application/json"},
            )[2]
            for name, body in bodies.items()
        }
        headers = {
            name: {"Content-Type": "application/json", "X-Response-Bytes": str(size)}
            for name, size in sizes.items()
        }
        runs = {name: max(5, int((40 if name == "heavy" else 150) * scale)) for name in bodies}
        seq: dict[str, dict[str, list[float]]] = {t: {n: [] for n in bodies} for t in TARGETS}
        conc: dict[str, dict[str, list[Any]]] = {
            t: {n: [[], 0.0] for n in ("small", "large")} for t in TARGETS
        }
        for _ in range(ROUNDS):
            for target in TARGETS:
                port = servers[target].port
                for name, body in bodies.items():
                    seq[target][name] += sequential(port, body, headers[name], runs[name])
                for name, per_client in (("small", 100), ("large", 25)):
                    times, seconds = concurrent(
                        port, bodies[name], headers[name], max(5, int(per_client * scale))
                    )
                    conc[target][name][0] += times
                    conc[target][name][1] += seconds
        memory = {
            target: {
                "workers_peak_mb": server.workers_memory_mb(),
                "tree_peak_mb": server.tree_peak_memory_mb(),
            }
            for target, server in servers.items()
        }
    finally:
        for server in servers.values():
            server.stop()
    return {
        "response_bytes": sizes,
        "sequential": {t: {n: _stats(v) for n, v in by.items()} for t, by in seq.items()},
        "concurrent_8": {
            t: {n: _stats(v[0], v[1]) for n, v in by.items()} for t, by in conc.items()
        },
        "memory": memory,
    }


def _stats(times: list[float], seconds: float | None = None) -> dict[str, Any]:
    good = [t for t in times if t >= 0]
    row: dict[str, Any] = {**percentiles(good), "errors": len(times) - len(good)}
    if seconds:
        row["requests_per_s"] = round(len(times) / seconds, 1)
    return row


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
    settle_collector()  # the collector as a worker runs it, so in-process p99 compares
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
    bodies = {name: orjson.dumps(hook_request(b)) for name, b in bundles.items()}
    report["request_bytes"] = {name: len(body) for name, body in bodies.items()}
    report["http"] = over_http(bodies, args.workers, scale)
    if not args.no_fhir:
        from benchmarks.parallel_fetch import measure_no_prefetch

        report["no_prefetch_6_queries_200ms"] = measure_no_prefetch(
            runs=10 if not args.quick else 3
        )
    report["machine"]["load_average_after"] = [round(x, 2) for x in os.getloadavg()]
    print_table(report)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "latest.json").write_text(json.dumps(report, indent=2) + "\n")


def _ratio(value: float, floor: float) -> str:
    return f"{value / floor:.1f}x" if floor else "-"


def print_table(report: dict[str, Any]) -> None:
    machine = report["machine"]
    print(
        f"alpha1-cds benchmarks, {report['date']}, {machine['cores']} cores, "
        f"load {machine['load_average_before']} -> {machine['load_average_after']}"
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
    http = report["http"]
    print(
        f"\n{'HTTP sequential':24}{'bytes in/out':>16}"
        + "".join(f"{t + ' p50/p99':>30}" for t in TARGETS)
        + f"{'x same':>8}{'x fastest':>10}{'p99/p50':>9}"
    )
    for name in report["request_bytes"]:
        rows = {t: http["sequential"][t][name] for t in TARGETS}
        ours = rows["alpha1-cds"]
        cells = "".join(f"{row['p50_ms']:>22.2f}/{row['p99_ms']:<7.2f}" for row in rows.values())
        print(
            f"{name:24}{report['request_bytes'][name]:>8}/{http['response_bytes'][name]:<7}"
            + cells
            + f"{_ratio(ours['p50_ms'], rows['floor: same stack']['p50_ms']):>8}"
            + f"{_ratio(ours['p50_ms'], rows[FASTEST_FLOOR]['p50_ms']):>10}"
            + f"{_ratio(ours['p99_ms'], ours['p50_ms']):>9}"
        )
    print(
        f"\n{'HTTP, 8 connections':24}"
        + "".join(f"{t + ' req/s':>30}" for t in TARGETS)
        + f"{'/ fastest':>10}{'errors':>8}"
    )
    for name in ("small", "large"):
        rows = {t: http["concurrent_8"][t][name] for t in TARGETS}
        share = rows["alpha1-cds"]["requests_per_s"] / rows[FASTEST_FLOOR]["requests_per_s"]
        print(
            f"{name:24}"
            + "".join(f"{row['requests_per_s']:>30}" for row in rows.values())
            + f"{share:>10.2f}"
            + f"{sum(row['errors'] for row in rows.values()):>8}"
        )
    print(
        "\npeak memory (MB): "
        + "; ".join(
            f"{t}: workers {m['workers_peak_mb']}, tree {m['tree_peak_mb']}"
            for t, m in http["memory"].items()
        )
    )
    if "no_prefetch_6_queries_200ms" in report:
        row = report["no_prefetch_6_queries_200ms"]
        print(
            f"no prefetch, 6 queries x 200 ms: p50 {row['median']} ms (min {row['min']}, "
            f"max {row['max']})"
        )


if __name__ == "__main__":
    main()
