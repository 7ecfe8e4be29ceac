"""Overrides honoured: topics a clinician overrode, hidden per patient for a period.

Read on the hook path from an in-process snapshot of the active snoozes (a dictionary
lookup), reloaded from the database at most every SNOOZE_REFRESH_SECONDS and updated at once
by the feedback this process stores: another worker or instance sees an override within
that time. A store fault keeps the last snapshot and is logged: an override is a
convenience, a card is safety.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa

from .. import logs
from .schema import CARDS, SNOOZES, describe, insert_ignoring_duplicates

SNOOZE_REFRESH_SECONDS = 30.0
Snapshot = dict[str, dict[str, datetime]]
Row = tuple[str, str, datetime]


@dataclass(frozen=True, slots=True)
class Override:
    """A feedback entry 'overridden' on a card, with the checklist items it names and its
    reason's code (None: a plain dismissal)."""

    card_uuid: str
    items: frozenset[str]
    reason: str | None = None


@dataclass(frozen=True, slots=True)
class SnoozePolicy:
    """How long an override hides a topic for the patient: a plain dismissal (no reason)
    briefly; a reason for its own period (the topic's, the dismissal's, or days); never a
    recurring reminder longer than its interval; never a topic whose period is 0."""

    topic_days: Mapping[str, int]
    dismiss_days: int = 3
    reasons: Mapping[str, str | int] = field(default_factory=dict)
    intervals: Mapping[str, int] = field(default_factory=dict)

    def days(self, topic: str, reason: str | None) -> int:
        own = self.topic_days.get(topic, self.topic_days.get("default", 0))
        if own <= 0:
            return 0  # never hidden (a contraindication)
        hides = self.reasons.get(reason, "topic") if reason else "dismiss"
        days = own if hides == "topic" else self.dismiss_days if hides == "dismiss" else int(hides)
        return min(days, self.intervals.get(topic, days))


class Overrides:
    def __init__(
        self,
        engine: sa.Engine,
        snooze: SnoozePolicy,
        clock: Callable[[], float] = time.monotonic,
        load: Callable[[datetime], Iterable[Row]] | None = None,
    ) -> None:
        """``load``: the active snoozes at an instant, as (patient key, topic, until) rows;
        by default read from the database."""
        self.engine = engine
        self.policy = snooze
        self._clock = clock
        self._load = load or self._read
        self._snapshot: Snapshot = {}
        self._loaded = float("-inf")
        self._updating = threading.Lock()  # guards updates from stored feedback
        self._reloading = threading.Lock()  # one reload at a time, never waited for

    def hidden_topics(self, patient_key: str, now: datetime | None = None) -> frozenset[str]:
        """Topics a clinician overrode for this patient, still within their period."""
        now = now or datetime.now(UTC)
        topics = self._current().get(patient_key, {})
        return frozenset(topic for topic, until in topics.items() if until > now)

    def expire(self) -> None:
        """Read the database again at the next lookup (tests, and after a purge)."""
        self._loaded = float("-inf")

    def _current(self) -> Snapshot:
        """The current snapshot. One thread reloads it when it is due; the others keep using
        the one they have and never wait, so a slow or frozen database never holds a hook."""
        if self._clock() - self._loaded < SNOOZE_REFRESH_SECONDS:
            return self._snapshot
        if self._reloading.acquire(blocking=False):
            try:
                if self._clock() - self._loaded >= SNOOZE_REFRESH_SECONDS:
                    self._reload()
            finally:
                self._reloading.release()
        return self._snapshot

    def _read(self, now: datetime) -> list[Row]:
        query = sa.select(SNOOZES.c.patient_key, SNOOZES.c.topic, SNOOZES.c.until).where(
            SNOOZES.c.until > now
        )
        with self.engine.connect() as connection:
            return [(key, topic, until) for key, topic, until in connection.execute(query)]

    def _reload(self) -> None:
        try:
            rows = list(self._load(datetime.now(UTC)))
        except sa.exc.SQLAlchemyError as error:
            logs.event("snooze-read-failed", logging.ERROR, **describe(error))
            self._loaded = self._clock()  # retried after the refresh period
            return
        snapshot: Snapshot = {}
        for patient_key, topic, until in rows:
            _remember(snapshot, patient_key, topic, _aware(until))
        self._snapshot = snapshot
        self._loaded = self._clock()

    def snooze(
        self, connection: sa.Connection, overrides: Sequence[Override], now: datetime
    ) -> list[dict[str, Any]]:
        """In the feedback's transaction: each override hides its card's topic (a checklist:
        each of its items, or only the items it names) for the patient the card was issued
        for, for the topic's period (0: never hidden). The rows written, for ``remember``."""
        named = {o.card_uuid: o for o in overrides}
        if not named:
            return []
        issued = connection.execute(
            sa.select(
                CARDS.c.card_uuid, CARDS.c.topic, CARDS.c.item_topics, CARDS.c.patient_key
            ).where(CARDS.c.card_uuid.in_(named))
        ).all()
        rows = []
        for card_uuid, topic, item_topics, patient_key in issued:
            if patient_key is None:
                continue
            override = named[card_uuid]
            for hidden in _hidden_topics(topic, item_topics, override.items):
                days = self.policy.days(hidden, override.reason)
                if days > 0:
                    until = now + timedelta(days=days)
                    row = {"patient_key": patient_key, "topic": hidden, "until": until}
                    rows.append({**row, "card_uuid": card_uuid})
        if rows:
            connection.execute(insert_ignoring_duplicates(self.engine, SNOOZES), rows)
        return rows

    def remember(self, rows: Sequence[Mapping[str, Any]]) -> None:
        """Snoozes just committed: this process sees them at once."""
        with self._updating:
            for row in rows:
                _remember(self._snapshot, row["patient_key"], row["topic"], row["until"])


def _hidden_topics(topic: str, stored_items: str | None, named: frozenset[str]) -> list[str]:
    """The topics an override hides: the card's own, or its checklist items (all of them,
    or those named by topic or by one of their suggestions' uuids)."""
    if not stored_items:
        return [topic]
    items = json.loads(stored_items)
    if isinstance(items, list):  # rows written before items kept their suggestions
        items = {item: [] for item in items}
    if not named:
        return list(items)
    return [item for item, uuids in items.items() if item in named or named & set(uuids)]


def _remember(snapshot: Snapshot, patient_key: str, topic: str, until: datetime) -> None:
    topics = snapshot.setdefault(patient_key, {})
    topics[topic] = max(until, topics.get(topic, until))


def _aware(moment: datetime) -> datetime:
    """SQLite returns naive datetimes for what was stored in UTC."""
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
