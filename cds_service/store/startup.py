"""What a server runs once before its workers start: the schema and the patient-hash key."""

from __future__ import annotations

import time
from collections.abc import Callable

import sqlalchemy as sa

from .keys import generated_key
from .schema import migrate, open_engine


class StoreStartError(Exception):
    """The database could not be reached at start-up: one line, password hidden."""


def prepare_store(
    url: str,
    timeout: float = 30.0,
    say: Callable[[str], None] = print,
    sleep: Callable[[float], None] = time.sleep,
) -> None:
    """Migrate the database and make the patient-hash key if there is none. A database
    that cannot be reached (PostgreSQL not up yet) is retried with back-off for
    ``timeout`` seconds, each try said in one line; then StoreStartError says why, never a
    traceback."""
    where = sa.engine.make_url(url).render_as_string(hide_password=True)
    waited, wait = 0.0, 1.0
    while True:
        engine = open_engine(url)
        try:
            migrate(engine)
            generated_key(engine)
            return
        except sa.exc.DBAPIError as error:
            reason = str(error.orig or error).strip().splitlines()[0][:300]
            problem = f"the database {where} cannot be reached"
            if waited + wait > timeout:
                raise StoreStartError(f"{problem}: {reason}") from None
            say(f"alpha1-cds: {problem} ({reason}); retrying in {wait:g} s")
        finally:
            engine.dispose()
        sleep(wait)
        waited, wait = waited + wait, wait * 2
