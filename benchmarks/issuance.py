"""What logging issued cards adds to a patient-view call (issue 7: a millisecond or two at most).

In-process, a typical 300-resource request with full prefetch, timed with the issuance log
writing to an SQLite file, and again with logging replaced by a no-op; plus the cost of the
enqueue call itself.

    python -m benchmarks.issuance [--runs 300]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

from benchmarks.patients import generate
from cds_service import create_app
from tests.support.builders import hook_request

RESULTS = Path(__file__).parent / "results"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=300)
    args = parser.parse_args()
    folder = tempfile.mkdtemp()
    app = create_app({"auth_mode": "off", "database_url": f"sqlite:///{folder}/cards.sqlite"})
    store = app.extensions["alpha1_cds"].store
    client = app.test_client()
    request = hook_request(generate(300))
    enqueue: list[float] = []
    real = store.log_issued

    def timed(cards):
        started = time.perf_counter()
        real(cards)
        enqueue.append((time.perf_counter() - started) * 1000)

    def call() -> float:
        started = time.perf_counter()
        assert client.post("/cds-services/aatd-patient-view", json=request).status_code == 200
        return (time.perf_counter() - started) * 1000

    for _ in range(30):  # warm up
        call()
    logged, unlogged = [], []
    for _ in range(args.runs):  # interleaved, so drift and warm-up hit both alike
        store.log_issued = timed
        logged.append(call())
        store.log_issued = lambda cards: None
        unlogged.append(call())
    store.flush()
    with_log, without_log = statistics.median(logged), statistics.median(unlogged)

    report = {
        "runs": args.runs,
        "p50_ms_with_issuance_log": round(with_log, 3),
        "p50_ms_without": round(without_log, 3),
        "p50_ms_difference": round(with_log - without_log, 3),
        "p50_ms_enqueue_call": round(statistics.median(enqueue), 4),
    }
    print(json.dumps(report, indent=2))
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "issuance.json").write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
