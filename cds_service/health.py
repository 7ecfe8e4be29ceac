"""Liveness and readiness, for a load balancer or an orchestrator's probes.

``/livez``: the process answers (nothing else is checked: a restart cures nothing that a
live process with a slow database suffers). ``/readyz``: this instance should be sent hook
calls: its store answers within READY_STORE_SECONDS at the schema version this code
expects, and its request pool is not saturated (more requests waiting for a thread than it
has threads). ``/healthz`` stays, as liveness, for the setups that already probe it.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

READY_STORE_SECONDS = 1.0
POOL_GAUGE = "alpha1.pool"  # the environ key under which the serving bridge puts its gauge


@dataclass
class PoolGauge:
    """Requests the serving bridge has handed to its thread pool and not yet answered."""

    threads: int
    in_flight: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def enter(self) -> None:
        with self._lock:
            self.in_flight += 1

    def leave(self) -> None:
        with self._lock:
            self.in_flight -= 1

    @property
    def saturated(self) -> bool:
        """More requests waiting for a thread than there are threads."""
        return self.in_flight - self.threads > self.threads


def readiness(store: Any, pool: PoolGauge | None) -> tuple[bool, dict[str, Any]]:
    """(ready, the checks with what each found): no patient data, no secrets."""
    checks: dict[str, Any] = {}
    found = store.schema_state(READY_STORE_SECONDS)
    checks["store"] = found
    ready = found.get("status") == "ok"
    if pool is not None:
        checks["requests"] = {
            "status": "saturated" if pool.saturated else "ok",
            "inFlight": pool.in_flight,
            "threads": pool.threads,
        }
        ready = ready and not pool.saturated
    return ready, checks
