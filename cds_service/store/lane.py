"""The store lane: the few threads on which request threads' store calls run, each waited
for a bounded time.

A frozen database (no answer at all, so no server-side timeout fires) then holds at most
these threads, never a request thread. After a call of one kind ("jti", "feedback") timed
out or could not reach the database, calls of that kind answer at once for BREAK_SECONDS
instead of each waiting out the same fault; per kind, because a replay check that was
merely slow (its wait is short) must not refuse feedback.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any

import sqlalchemy as sa

from ..metrics import metrics

LANE_THREADS = 2
BREAK_SECONDS = 5.0  # how long a kind of call is taken as down after it timed out or failed


class StoreUnavailableError(Exception):
    """The store could not take the call; nothing of it was stored."""


class StoreOutcomeUnknownError(StoreUnavailableError):
    """A write's commit began but did not finish in time: it may have been stored."""


class LaneTimeoutError(FutureTimeout):
    """A call on the lane outlived its wait; ``future`` is the call, still running."""

    def __init__(self, future: Future[Any]) -> None:
        super().__init__()
        self.future = future


class Lane:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._down_until: dict[str, float] = {}
        self._lock = threading.Lock()
        self._pool: ThreadPoolExecutor | None = None
        self._pid: int | None = None

    def run(self, kind: str, wait: float, call: Callable[..., Any], *args: Any) -> Any:
        """``call(*args)`` on the lane, waited for ``wait`` seconds at most (then
        LaneTimeoutError); StoreUnavailableError at once while ``kind`` is taken as down."""
        if self.down(kind):
            raise StoreUnavailableError
        started = time.perf_counter()
        future = self._threads().submit(call, *args)
        try:
            return future.result(wait)
        except FutureTimeout:
            self.mark_down(kind)
            raise LaneTimeoutError(future) from None
        except (sa.exc.OperationalError, sa.exc.InterfaceError):
            self.mark_down(kind)
            raise
        finally:
            metrics().store_wait_seconds.labels(kind).observe(time.perf_counter() - started)

    def down(self, kind: str) -> bool:
        return self._clock() < self._down_until.get(kind, 0.0)

    def mark_down(self, kind: str) -> None:
        self._down_until[kind] = self._clock() + BREAK_SECONDS

    def _threads(self) -> ThreadPoolExecutor:
        """The pool of this process: threads do not survive a fork, and a pool made before
        one would wait for ever on threads the child does not have."""
        with self._lock:
            if self._pid != os.getpid() or self._pool is None:
                self._pool = ThreadPoolExecutor(LANE_THREADS, thread_name_prefix="store")
                self._pid = os.getpid()
            return self._pool

    def close(self) -> None:
        """Wait for calls under way: their connections go back to the pool."""
        with self._lock:
            pool, self._pool = (self._pool, None) if self._pid == os.getpid() else (None, None)
        if pool is not None:
            pool.shutdown(wait=True)
