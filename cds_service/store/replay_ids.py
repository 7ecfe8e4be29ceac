"""Client JWT ids (CDS Hooks ``jti``) seen, one use across every worker and instance on
this database, each kept until its token expires."""

from __future__ import annotations

import logging
import secrets
import time

import sqlalchemy as sa

from .. import logs
from .lane import Lane, LaneTimeoutError, StoreUnavailableError
from .schema import JTIS, describe, insert_ignoring_duplicates

JTI_WAIT_SECONDS = 0.5  # a hook call waits no longer for the shared replay check


class ReplayIds:
    def __init__(self, engine: sa.Engine, lane: Lane) -> None:
        self.engine = engine
        self.lane = lane

    def first_use(self, iss: str, jti: str, expires: float) -> bool | None:
        """True the first time (iss, jti) is seen, False for a replay, None when the store
        cannot say within JTI_WAIT_SECONDS (the caller then relies on its own memory)."""
        try:
            return self.lane.run("jti", JTI_WAIT_SECONDS, self._first_use, iss, jti, expires)
        except (LaneTimeoutError, StoreUnavailableError, sa.exc.SQLAlchemyError):
            logs.event("jti-store-failed", logging.ERROR, error="timeout or store down")
            return None

    def _first_use(self, iss: str, jti: str, expires: float) -> bool | None:
        now = time.time()
        row = {"iss": iss[:255], "jti": jti[:255], "expires": expires}
        insert = insert_ignoring_duplicates(self.engine, JTIS).returning(JTIS.c.jti)
        same = (JTIS.c.iss == row["iss"], JTIS.c.jti == row["jti"])
        try:
            with self.engine.begin() as connection:
                if secrets.randbelow(100) == 0:  # now and then, forget expired ids
                    connection.execute(sa.delete(JTIS).where(JTIS.c.expires < now))
                if connection.execute(insert, [row]).all():
                    return True
                # Seen before: a replay, unless the earlier token has expired.
                earlier = connection.scalar(sa.select(JTIS.c.expires).where(*same))
                if earlier is not None and earlier < now:
                    connection.execute(sa.update(JTIS).where(*same).values(expires=expires))
                    return True
                return False
        except sa.exc.OperationalError:
            raise  # the lane marks "jti" down
        except sa.exc.SQLAlchemyError as error:
            logs.event("jti-store-failed", logging.ERROR, **describe(error))
            return None
