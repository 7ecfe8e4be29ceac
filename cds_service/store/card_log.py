"""Issued cards: queued by the request threads, written by a background thread in batches.

Logging a card never slows a hook response: the request thread queues it and returns.
The writer gathers what arrives within WRITE_WINDOW_SECONDS into one transaction, retries
a database that cannot be reached (backing off to RETRY_MAX_SECONDS; cards issued
meanwhile queue up, and past the queue's bound go to the spool), and on a stop writes what
is queued within the time the stop allows, spooling the rest. The writer starts on first use
in each process and is checked by pid, so a server that loads the app and then forks its
workers gives each worker a writer of its own.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import queue
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from .. import logs
from ..metrics import metrics
from .journal import PREFIX as JOURNAL
from .journal import Journal
from .schema import CARDS, describe, insert_ignoring_duplicates, reopen_after
from .spool import Spool

WRITE_WINDOW_SECONDS = 0.1  # issued cards gathered into one write
WRITE_BATCH_MAX = 500
QUEUE_MAX = 10_000  # cards waiting per process; past it they are spooled
RETRY_FIRST_SECONDS = 0.5
RETRY_MAX_SECONDS = 5.0  # the longest pause between attempts to write issued cards
STOP_SECONDS = 5.0  # a stop's time to write what is queued (granian kills at 10 s)


@dataclass(frozen=True, slots=True)
class Audit:
    """Who a card was issued to and on what (issue 28): the audit columns of its row."""

    user_key: str | None
    encounter_key: str | None
    client_iss: str | None
    client_tenant: str | None
    knowledge_version: str
    content_hash: str
    shown: bool = True

    def columns(self) -> dict[str, Any]:
        return {
            "user_key": self.user_key,
            "encounter_key": self.encounter_key,
            "client_iss": self.client_iss,
            "client_tenant": self.client_tenant,
            "knowledge_version": self.knowledge_version,
            "content_hash": self.content_hash,
            "shown": self.shown,
        }


# A row without audit columns (a card issued before them, or by a caller that has none):
# every row of a batch has the same keys.
NO_AUDIT: dict[str, Any] = dict.fromkeys(
    ("user_key", "encounter_key", "client_iss", "client_tenant", "knowledge_version"),
) | {"content_hash": None, "shown": None}


@dataclass(frozen=True, slots=True)
class IssuedCard:
    card_uuid: str
    service: str
    topic: str
    indicator: str
    suggestion_uuids: tuple[str, ...]
    hook_instance: str
    patient_key: str | None
    issued_at: datetime
    # A checklist card's items: (topic, the uuids of its suggestions), in card order.
    item_topics: tuple[tuple[str, tuple[str, ...]], ...] = ()
    audit: Audit | None = None

    def row(self) -> dict[str, Any]:
        """The card as a row of CARDS."""
        return {
            "card_uuid": self.card_uuid,
            "service": self.service,
            "topic": self.topic,
            "indicator": self.indicator,
            "suggestion_uuids": json.dumps(list(self.suggestion_uuids)),
            "hook_instance": self.hook_instance,
            "patient_key": self.patient_key,
            "issued_at": self.issued_at,
            "item_topics": json.dumps(dict(self.item_topics)) if self.item_topics else None,
            **(self.audit.columns() if self.audit is not None else NO_AUDIT),
        }


_STOP = object()  # queued by close(): write what precedes, then end


@dataclass(frozen=True, slots=True)
class Segment:
    """Queued behind the cards of a journal segment: reaching it, the writer settles it."""

    path: Path


Item = IssuedCard | threading.Event | Segment | object


class CardLog:
    def __init__(
        self,
        engine: sa.Engine,
        spool: Spool,
        *,
        on_idle: Callable[[], object] = lambda: None,
        idle_every: float = 3600.0,
        retry_first: float = RETRY_FIRST_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """``on_idle`` runs on the writer's thread every ``idle_every`` seconds (the store's
        retention purge: one background thread per process does both)."""
        self.engine = engine
        self.spool = spool
        self.on_idle = on_idle
        self.idle_every = idle_every
        self.retry_first = retry_first
        self._clock = clock
        self._lock = threading.Lock()
        self._pid: int | None = None
        self._queue: queue.Queue[Item] = queue.Queue(QUEUE_MAX)
        self._writer: threading.Thread | None = None
        self._stop_by: float | None = None  # set by close(): past it, spool instead of retry
        self._wake = threading.Event()  # ends a retry pause at once when a stop begins
        self._in_hand: list[IssuedCard] = []  # the batch being written, spooled if stuck
        self._last_idle = clock()
        # Every card on local disk before its answer leaves (journal.py says why).
        self.journal = Journal(spool.folder, spool.tag)

    # --- request threads ------------------------------------------------------------------

    def start(self) -> None:
        """Start this process's writer now (a worker, once loaded) rather than on first use."""
        self._here()

    def log(self, cards: Iterable[IssuedCard]) -> None:
        """Journal the cards, then queue them: the journal holds every card until the
        writer has written or spooled it, so a process killed outright loses none."""
        waiting = self._here()
        cards = list(cards)
        overflow = []
        with self.journal.lock:  # a cut of the journal falls between two calls, never inside
            self.journal.append([_spooled(card.row()) for card in cards])
            for card in cards:
                if self._stop_by is not None:  # stopping: the writer takes nothing more
                    overflow.append(card)
                    continue
                try:
                    waiting.put_nowait(card)
                except queue.Full:
                    overflow.append(card)
        if overflow:
            why = "stop" if self._stop_by is not None else "queue-full"
            self.spool.keep([_spooled(c.row()) for c in overflow], reason=why)
        metrics().card_queue.set(waiting.qsize())

    def pending(self) -> bool:
        """Cards queued or in the writer's hands, not yet written (this process)."""
        return self._pid == os.getpid() and self._queue.unfinished_tasks > 0

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until every card queued before this call is written; False on timeout."""
        if self._pid != os.getpid() or self._stop_by is not None:
            return True
        done = threading.Event()
        self._queue.put(done)
        return done.wait(timeout)

    def close(self, timeout: float = STOP_SECONDS) -> None:
        """Write what is queued within ``timeout``; what is still unwritten then (the
        database away or slow) goes to the spool, to be written when it answers again."""
        writer = self._writer
        if self._pid != os.getpid() or writer is None or not writer.is_alive():
            return
        self._stop_by = self._clock() + timeout
        self._wake.set()
        with contextlib.suppress(queue.Full):  # full: the writer is held; the drain below
            self._queue.put_nowait(_STOP)  # takes what it cannot write in time
        writer.join(timeout + 1.0)
        if writer.is_alive():  # held inside a database call: spool its batch and the queue
            leftover = [*self._in_hand, *self._drain()]
            self.spool.keep([_spooled(c.row()) for c in leftover], reason="stop")

    @property
    def queued(self) -> int:
        return self._queue.qsize() if self._pid == os.getpid() else 0

    def _here(self) -> queue.Queue[Item]:
        """This process's queue, with its writer running (started on first use, and again in
        a forked child, where the parent's thread does not exist)."""
        if self._pid != os.getpid():
            with self._lock:
                if self._pid != os.getpid():
                    self._queue = queue.Queue(QUEUE_MAX)
                    self._stop_by, self._in_hand = None, []
                    self._wake.clear()
                    self._writer = threading.Thread(target=self._run, name="card-log", daemon=True)
                    self._pid = os.getpid()
                    self._writer.start()
        return self._queue

    # --- the writer thread ----------------------------------------------------------------

    def _run(self) -> None:
        self._replay_spool()
        while True:
            batch = self._next_batch()
            if self._clock() - self._last_idle >= self.idle_every:
                self._last_idle = self._clock()
                self.on_idle()
                self._replay_spool()  # what a stopped process left behind
            cards = [item for item in batch if isinstance(item, IssuedCard)]
            if cards:
                self._in_hand = cards
                self._write(cards)
                self._in_hand = []
                self._cut_journal()
            for item in batch:
                if isinstance(item, threading.Event):
                    item.set()
                elif isinstance(item, Segment):  # every card journaled before it is done
                    self.journal.settle(item.path)
                self._queue.task_done()
            metrics().card_queue.set(self._queue.qsize())
            if _STOP in batch:
                self.journal.discard_own()  # all written or spooled
                return
            if self.spool.waiting and self._queue.empty():  # caught up: the overflow now
                self._replay_spool()

    def _next_batch(self) -> list[Item]:
        """The first item (waiting up to ``idle_every``), then what arrives within
        WRITE_WINDOW_SECONDS of it: one transaction for many hook calls costs the request
        threads far less of the GIL than one per call. A flush marker or a stop ends the
        wait at once."""
        try:
            batch = [self._queue.get(timeout=self.idle_every)]
        except queue.Empty:
            return []
        deadline = self._clock() + WRITE_WINDOW_SECONDS
        while len(batch) < WRITE_BATCH_MAX and isinstance(batch[-1], IssuedCard):
            remaining = deadline - self._clock()
            if remaining <= 0:
                break
            try:
                batch.append(self._queue.get(timeout=remaining))
            except queue.Empty:
                break
        return batch

    def _write(self, cards: list[IssuedCard]) -> None:
        rows = [card.row() for card in cards]
        attempt = 0
        while True:
            try:
                self._insert(rows)
                if attempt:
                    logs.event("card-log-recovered", cards=len(rows), attempts=attempt + 1)
                    self._replay_spool()
                return
            except (sa.exc.OperationalError, sa.exc.InterfaceError) as error:
                reopen_after(self.engine, error)
                attempt += 1
                if self._stopping_now():
                    self.spool.keep([_spooled(row) for row in rows], reason="stop")
                    return
                self._say_retry(attempt, len(rows), error)
                # The writer waits, never a hook call: cards issued meanwhile queue up.
                pause = min(self.retry_first * 2 ** (attempt - 1), RETRY_MAX_SECONDS)
                if self._wake.wait(self._until_stop(pause)):
                    self._wake.clear()  # woken by a stop: later pauses end at its deadline
            except sa.exc.SQLAlchemyError as error:  # the rows, not the database: no retry
                self.spool.lost += len(rows)
                metrics().audit_lost.inc(len(rows))
                logs.event("card-log-failed", logging.ERROR, cards=len(rows), **describe(error))
                return

    def _insert(self, rows: list[dict[str, Any]]) -> None:
        with self.engine.begin() as connection:
            connection.execute(insert_ignoring_duplicates(self.engine, CARDS), rows)

    def _cut_journal(self) -> None:
        """The journal so far becomes a segment, settled once the writer reaches the marker
        queued behind every card in it (queue full: the next batch cuts it)."""
        with self.journal.lock:
            segment = self.journal.cut()
            if segment is None:
                return
            # Full: the segment stays on disk, removed at a clean stop or replayed after a kill.
            with contextlib.suppress(queue.Full):
                self._queue.put_nowait(Segment(segment))

    def _stopping_now(self) -> bool:
        return self._stop_by is not None and self._clock() >= self._stop_by

    def _until_stop(self, pause: float) -> float:
        """A retry pause, cut short to a stop's deadline."""
        if self._stop_by is None:
            return pause
        return max(0.0, min(pause, self._stop_by - self._clock()))

    def _say_retry(self, attempt: int, cards: int, error: BaseException) -> None:
        if attempt & (attempt - 1) == 0:  # attempts 1, 2, 4, 8...: a line each
            logs.event(
                "card-log-retry",
                logging.WARNING,
                cards=cards,
                attempt=attempt,
                queued=self._queue.qsize(),
                **describe(error),
            )

    def _replay_spool(self) -> None:
        """Cards spooled earlier (by this or a stopped process), and the journals of
        processes that ended without settling them (killed), written now; left for the
        next try if the database cannot take them yet."""
        try:
            self.spool.replay(lambda rows: self._insert([_unspooled(r) for r in rows]))
            self.spool.replay(
                lambda rows: self._insert([_unspooled(r) for r in rows]),
                prefix=JOURNAL,
                own=False,
            )
        except sa.exc.SQLAlchemyError as error:
            reopen_after(self.engine, error)
            logs.event("card-log-replay-failed", logging.WARNING, **describe(error))

    def _drain(self) -> list[IssuedCard]:
        drained: list[IssuedCard] = []
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                return drained
            if isinstance(item, IssuedCard):
                drained.append(item)


def _spooled(row: dict[str, Any]) -> dict[str, Any]:
    return {**row, "issued_at": row["issued_at"].isoformat()}


def _unspooled(row: dict[str, Any]) -> dict[str, Any]:
    """A spooled row as a row again (one spooled by an older version has no audit keys)."""
    return {**NO_AUDIT, **row, "issued_at": datetime.fromisoformat(row["issued_at"])}
