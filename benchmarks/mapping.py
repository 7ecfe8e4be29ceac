"""In-process time to map a patient's resources to PatientFacts (p50 / p99).

python -m benchmarks.mapping [--runs 200]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from datetime import date
from pathlib import Path

from benchmarks.patients import generate
from fhir_mappings import map_patient
from fhir_mappings.fhirjson import bundle_resources

SIZES = {"small": 20, "typical": 300, "large": 520, "heavy": 3000}
RESULTS = Path(__file__).parent / "results"


def measure(resources: list[dict], runs: int) -> dict[str, float]:
    map_patient(resources, date(2026, 11, 21))  # warm caches once
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        map_patient(resources, date(2026, 11, 21))
        times.append((time.perf_counter() - started) * 1000)
    times.sort()
    return {
        "p50_ms": round(statistics.median(times), 3),
        "p99_ms": round(times[int(len(times) * 0.99) - 1], 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=200)
    args = parser.parse_args()
    report = {}
    print(f"{'size':10}{'resources':>10}{'p50 ms':>10}{'p99 ms':>10}")
    for name, total in SIZES.items():
        resources = list(bundle_resources(generate(total)))
        report[name] = {"resources": len(resources), **measure(resources, args.runs)}
        row = report[name]
        print(f"{name:10}{row['resources']:>10}{row['p50_ms']:>10.3f}{row['p99_ms']:>10.3f}")
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "mapping.json").write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
