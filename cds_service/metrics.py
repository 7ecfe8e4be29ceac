"""Prometheus metrics: what an on-call engineer graphs and alerts on (docs/operations.md).

prometheus-client, in its multiprocess mode under ``alpha1-cds serve``: ``serve`` gives the
workers one directory (``PROMETHEUS_MULTIPROC_DIR``) and each worker writes its values
there, so a scrape answered by any worker shows the whole instance. Without it (tests, a
plain WSGI server) the values are this process's own. The metric objects are made on
first use in each process (after the environment is set, and again in a forked child).

Labels carry codes only (service ids, topics, reason codes, status numbers): never a
patient, a user, a token or free text, and never an unbounded set of values.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from typing import Any

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
PREFIX = "alpha1_cds"
# Seconds: hook stages run from under a millisecond (rules) to the FHIR deadline.
STAGE_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
_LOCK = threading.Lock()


@dataclass(frozen=True)
class Metrics:
    registry: Any
    requests: Any
    stage_seconds: Any
    prefetch_412: Any
    fhir_calls: Any
    fhir_seconds: Any
    auth_refusals: Any
    store_wait_seconds: Any
    card_queue: Any
    audit_spooled: Any
    audit_lost: Any
    cards: Any
    feedback: Any


_made: tuple[int, Metrics] | None = None


def metrics() -> Metrics:
    """This process's metric objects (made on first use here)."""
    global _made
    made = _made
    if made is not None and made[0] == os.getpid():
        return made[1]
    with _LOCK:
        if _made is None or _made[0] != os.getpid():
            _made = (os.getpid(), _build())
        return _made[1]


def _build() -> Metrics:
    from prometheus_client import (
        CollectorRegistry,
        Counter,
        Gauge,
        Histogram,
        disable_created_metrics,
        values,
    )

    disable_created_metrics()  # the *_created series double a scrape and say little here

    # The value class is chosen when prometheus_client is imported: again here, so that a
    # worker forked from a parent that imported it before setting the directory writes to it.
    values.ValueClass = values.get_value_class()
    # A registry of our own: a second set made in a forked child never clashes with the
    # parent's, and a scrape shows only these (multiprocess: the collector reads the files).
    registry = CollectorRegistry()
    kw: dict[str, Any] = {"registry": registry}

    def counter(name: str, doc: str, labels: tuple[str, ...] = ()) -> Any:
        return Counter(f"{PREFIX}_{name}", doc, labels, **kw)

    def histogram(name: str, doc: str, labels: tuple[str, ...] = ()) -> Any:
        return Histogram(f"{PREFIX}_{name}", doc, labels, buckets=STAGE_BUCKETS, **kw)

    return Metrics(
        registry=registry,
        requests=counter("requests", "HTTP requests answered", ("endpoint", "service", "status")),
        stage_seconds=histogram("hook_stage_seconds", "Hook call time per stage", ("stage",)),
        prefetch_412=counter(
            "prefetch_412", "Data that could not be had, per key", ("key", "reason")
        ),
        fhir_calls=counter("fhir_calls", "FHIR server calls by outcome", ("outcome",)),
        fhir_seconds=histogram("fhir_call_seconds", "FHIR server call time"),
        auth_refusals=counter("auth_refusals", "Client JWTs refused, by reason", ("reason",)),
        store_wait_seconds=histogram("store_wait_seconds", "Waits on the store lane", ("kind",)),
        card_queue=Gauge(
            f"{PREFIX}_card_queue",
            "Issued cards queued, not yet written",
            multiprocess_mode="livesum",
            **kw,
        ),
        audit_spooled=counter("audit_rows_spooled", "Audit rows written to the spool", ("reason",)),
        audit_lost=counter("audit_rows_lost", "Audit rows neither stored nor spooled"),
        cards=counter(
            "cards", "Cards decided, by topic and whether shown", ("topic", "indicator", "shown")
        ),
        feedback=counter("feedback", "Feedback entries received, by outcome", ("outcome",)),
    )


def prepare_directory(folder: str | None = None) -> str:
    """For ``serve``, before its workers start: the directory they share, emptied (values
    of an earlier run would be added to this one's). Made in the temporary folder unless
    the environment names one."""
    import shutil
    import tempfile
    from pathlib import Path

    given = folder or os.environ.get(MULTIPROC_ENV)
    path = Path(given or tempfile.mkdtemp(prefix="alpha1-cds-metrics-"))
    path.mkdir(parents=True, exist_ok=True)
    for stale in path.glob("*.db"):
        stale.unlink()
    os.environ[MULTIPROC_ENV] = str(path)
    if not given:  # ours: gone when serve ends
        import atexit

        atexit.register(shutil.rmtree, str(path), True)
    return str(path)


def multiprocess() -> bool:
    return bool(os.environ.get(MULTIPROC_ENV))


def exposition() -> tuple[bytes, str]:
    """The metrics in Prometheus text format, for the whole instance when multiprocess."""
    from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
    from prometheus_client import multiprocess as mp

    own = metrics().registry  # made first: a scrape before any call still lists them
    if multiprocess():
        registry = CollectorRegistry()
        mp.MultiProcessCollector(registry)
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(own), CONTENT_TYPE_LATEST


def process_stopped() -> None:
    """A worker's live gauges leave the sum when it stops."""
    if multiprocess():
        from prometheus_client import multiprocess as mp

        mp.mark_process_dead(os.getpid())
