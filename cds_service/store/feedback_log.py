"""Clinicians' feedback: written in the request, in one transaction, idempotently (the
same card, outcome and instant once), with the overrides it makes."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

from .. import logs
from .lane import Lane, LaneTimeoutError, StoreOutcomeUnknownError, StoreUnavailableError
from .overrides import Override, Overrides
from .schema import (
    CARDS,
    FEEDBACK,
    STORE_WAIT_SECONDS,
    describe,
    insert_ignoring_duplicates,
    reopen_after,
)


@dataclass(frozen=True, slots=True)
class FeedbackEntry:
    card_uuid: str
    outcome: str
    outcome_timestamp: str
    accepted_suggestions: tuple[str, ...] = ()
    override_code: str | None = None
    override_display: str | None = None
    user_comment: str | None = None
    # On a checklist card overridden in part: the items meant, by topic or suggestion uuid.
    items: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Stored:
    new: int
    unknown_cards: tuple[str, ...]


class AbandonedError(Exception):
    """Raised inside a transaction whose caller gave up: the transaction rolls back."""


class CommitGate:
    """Decides once, between a write reaching its commit and its caller giving up, which
    came first, so that a request never answers "nothing was kept" for a write that then
    commits."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._decided: str | None = None

    def commit(self) -> bool:
        """The writer asks to commit: True unless the caller has already given up."""
        return self._decide("commit")

    def abandon(self) -> bool:
        """The caller gives up: True unless the writer is already committing."""
        return self._decide("abandon")

    def _decide(self, choice: str) -> bool:
        with self._lock:
            self._decided = self._decided or choice
            return self._decided == choice


class FeedbackLog:
    def __init__(self, engine: sa.Engine, lane: Lane, overrides: Overrides) -> None:
        self.engine = engine
        self.lane = lane
        self.overrides = overrides

    def store(self, service: str, entries: Sequence[FeedbackEntry]) -> Stored:
        """Stored, or StoreUnavailableError (nothing kept; StoreOutcomeUnknownError when a
        commit was under way and did not finish in time)."""
        now = datetime.now(UTC)
        rows = [_row(service, e, now) for e in entries]
        if self.lane.down("feedback"):
            logs.event("feedback-store-failed", logging.ERROR, error="store down")
            raise StoreUnavailableError
        gate = CommitGate()
        wait = STORE_WAIT_SECONDS + 1
        try:
            stored: Stored = self.lane.run("feedback", wait, self._write, rows, entries, now, gate)
            return stored
        except LaneTimeoutError as timeout:
            return self._after_timeout(timeout.future, gate)
        except sa.exc.SQLAlchemyError as error:
            reopen_after(self.engine, error)
            logs.event("feedback-store-failed", logging.ERROR, **describe(error))
            raise StoreUnavailableError from None

    def _after_timeout(self, future: Any, gate: CommitGate) -> Stored:
        """The request stopped waiting. If the write had not reached its commit, it never
        will (the gate is shut): nothing was stored, a 503 says retry. If the commit had
        begun, its outcome is the answer, waited for a little longer; only if even that
        runs out is the outcome unknown (said so; resending is safe, an entry is kept once)."""
        if gate.abandon():
            logs.event("feedback-store-failed", logging.ERROR, error="timeout")
            raise StoreUnavailableError
        try:
            stored: Stored = future.result(STORE_WAIT_SECONDS)
            return stored
        except TimeoutError:
            logs.event("feedback-store-failed", logging.ERROR, error="commit outcome unknown")
            raise StoreOutcomeUnknownError from None
        except sa.exc.SQLAlchemyError as error:  # the commit failed: nothing was stored
            reopen_after(self.engine, error)
            logs.event("feedback-store-failed", logging.ERROR, **describe(error))
            raise StoreUnavailableError from None

    def _write(
        self,
        rows: list[dict[str, Any]],
        entries: Sequence[FeedbackEntry],
        now: datetime,
        gate: CommitGate,
    ) -> Stored:
        uuids = {e.card_uuid for e in entries}
        overrides = [
            Override(e.card_uuid, frozenset(e.items), e.override_code)
            for e in entries
            if e.outcome == "overridden"
        ]
        # RETURNING yields only the rows inserted: duplicates are skipped, not counted.
        insert = insert_ignoring_duplicates(self.engine, FEEDBACK).returning(FEEDBACK.c.id)
        with self.engine.begin() as connection:
            new = len(connection.execute(insert, rows).all())
            snoozed = self.overrides.snooze(connection, _merged(overrides), now)
            known = set(
                connection.scalars(sa.select(CARDS.c.card_uuid).where(CARDS.c.card_uuid.in_(uuids)))
            )
            if not gate.commit():  # the request has answered 503: roll back, keep nothing
                raise AbandonedError
        self.overrides.remember(snoozed)
        return Stored(new=new, unknown_cards=tuple(sorted(uuids - known)))


def _merged(overrides: list[Override]) -> list[Override]:
    """One override per card; the last entry's items win, as before."""
    return list({o.card_uuid: o for o in overrides}.values())


def _row(service: str, entry: FeedbackEntry, now: datetime) -> dict[str, Any]:
    return {
        "card_uuid": entry.card_uuid,
        "service": service,
        "outcome": entry.outcome,
        "accepted_suggestions": json.dumps(list(entry.accepted_suggestions)),
        "override_code": entry.override_code,
        "override_display": entry.override_display,
        "user_comment": entry.user_comment,
        "outcome_timestamp": entry.outcome_timestamp,
        "received_at": now,
    }
