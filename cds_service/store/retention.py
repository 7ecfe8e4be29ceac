"""Retention: what is past its time is deleted (issued cards older than the audit period,
feedback older than the retention period, expired overrides and token ids). Several
instances may purge alike."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa

from .. import logs
from .schema import CARDS, FEEDBACK, JTIS, SNOOZES, describe, reopen_after

PURGE_SECONDS = 3600.0  # how often each process purges (on its card writer's thread)


class Retention:
    def __init__(self, engine: sa.Engine, retention_days: int, audit_days: int = 0) -> None:
        """``retention_days``: feedback older than this goes; ``audit_days``: issued cards,
        the audit trail (0: kept for ever)."""
        self.engine = engine
        self.retention_days = retention_days
        self.audit_days = audit_days

    def purge(self, now: datetime | None = None) -> dict[str, int]:
        """The rows deleted, by kind ({} if the database could not be reached)."""
        now = now or datetime.now(UTC)
        deletes = {
            "snoozes": sa.delete(SNOOZES).where(SNOOZES.c.until < now),
            "jtis": sa.delete(JTIS).where(JTIS.c.expires < now.timestamp()),
        }
        if self.audit_days > 0:
            cutoff = now - timedelta(days=self.audit_days)
            deletes["cards"] = sa.delete(CARDS).where(CARDS.c.issued_at < cutoff)
        if self.retention_days > 0:
            cutoff = now - timedelta(days=self.retention_days)
            deletes["feedback"] = sa.delete(FEEDBACK).where(FEEDBACK.c.received_at < cutoff)
        try:
            with self.engine.begin() as connection:
                counts = {name: connection.execute(d).rowcount for name, d in deletes.items()}
        except sa.exc.SQLAlchemyError as error:
            reopen_after(self.engine, error)
            logs.event("store-purge-failed", logging.ERROR, **describe(error))
            return {}
        if any(counts.values()):
            logs.event("store-purged", **counts)
        return counts
