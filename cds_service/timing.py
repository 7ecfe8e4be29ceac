"""Elapsed time in milliseconds, one way for logs, Server-Timing and benchmarks."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

# The environ key under which the server stamps a request's arrival (a time.monotonic()
# value, cds_service/serving.py): deadlines then count the time a request waited for a
# thread, not only the time it ran.
ARRIVAL = "alpha1.arrival"


def elapsed_ms(started: float) -> float:
    """Milliseconds since ``started`` (a ``time.perf_counter()`` value), to the microsecond."""
    return round((time.perf_counter() - started) * 1000, 3)


def arrived(environ: Mapping[str, Any]) -> float:
    """When the request arrived; now, under a server that does not stamp it."""
    value = environ.get(ARRIVAL)
    return value if isinstance(value, float) else time.monotonic()
