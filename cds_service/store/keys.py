"""The patient-hash key: what the store keeps instead of a patient id, and the secrets
derived from it."""

from __future__ import annotations

import hashlib
import hmac
import secrets

import sqlalchemy as sa

from .schema import SECRETS, insert_ignoring_duplicates


class PatientKeys:
    """Keyed hashes (HMAC-SHA256) of patient ids, never the ids themselves."""

    def __init__(self, key: str) -> None:
        self._key = key.encode()

    def patient_key(self, patient_id: str) -> str:
        return hmac.new(self._key, patient_id.encode(), hashlib.sha256).hexdigest()

    def audit_key(self, kind: str, value: str) -> str:
        """A keyed hash of a user or encounter id for the audit trail: namespaced by
        ``kind``, so a user id never hashes to a patient's key."""
        return hmac.new(self._key, f"{kind}:{value}".encode(), hashlib.sha256).hexdigest()

    def secret_for(self, purpose: str) -> bytes:
        """A key for ``purpose`` (e.g. signing the SMART app's launch cookie), derived from
        the patient-hash key so every worker and instance sharing the database agrees."""
        return hmac.new(self._key, f"alpha1-cds:{purpose}".encode(), hashlib.sha256).digest()


def generated_key(engine: sa.Engine) -> str:
    """The patient-hash key made at first start and kept in the database (insert-or-keep),
    so that it works out of the box and every instance sharing the database hashes alike."""
    with engine.begin() as connection:
        insert = insert_ignoring_duplicates(engine, SECRETS)
        connection.execute(insert, [{"name": "patient_hash_key", "value": secrets.token_hex(32)}])
        stored = connection.scalar(
            sa.select(SECRETS.c.value).where(SECRETS.c.name == "patient_hash_key")
        )
    return str(stored)
