"""Client authentication: the CDS Hooks JWT, verified completely (CDS Hooks 2.0 "Security").

Every discovery, service and feedback call carries ``Authorization: Bearer <JWT>`` signed by
a trusted EHR. Checked here: an allowed asymmetric algorithm (never ``none`` or HMAC), an
allowlisted issuer, a key found by ``kid`` in that issuer's JWKS (pinned, or fetched only
from an allowlisted ``jku``), the signature, ``aud`` equal to the exact URL invoked, ``exp``
and ``iat`` within a small leeway, a bounded lifetime, the tenant when configured, and a
``jti`` never seen before. Any failure is a 401 with no detail; the reason is logged, the
token never is.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import jwt
import requests
from flask import Blueprint, Flask, Response, g, request

from . import logs
from .config import Settings, TrustedClient
from .errors import Issue, operation_outcome
from .metrics import metrics
from .responses import json_response
from .services import SERVICES
from .timing import elapsed_ms

REQUIRED_CLAIMS = ["iss", "aud", "exp", "iat", "jti"]
# One JWKS fetch may take this long in all (connect, headers and body): a hanging or
# trickling key host holds a request thread no longer.
JWKS_TIMEOUT_SECONDS = 1.0
JWKS_MAX_BYTES = 256 * 1024  # a key set is a few KB
JWKS_MAX_AGE_SECONDS = 3600.0  # a set older than this is fetched again (the old one kept)
# A source whose fetch failed is not asked again for this long: tokens naming it are
# refused at once (or checked against its last good set) instead of each waiting.
FAILURE_HOLD_SECONDS = 30.0


class AuthError(Exception):
    """Why a token was refused: for the log only, never for the response. ``reason`` is a
    short code from a fixed set (the metric's label); the message says the details."""

    def __init__(self, message: str, reason: str = "invalid") -> None:
        super().__init__(message)
        self.reason = reason


def _reason(error: Exception) -> str:
    """A PyJWT failure as a reason code."""
    if isinstance(error, jwt.ExpiredSignatureError):
        return "expired"
    if isinstance(error, jwt.InvalidIssuerError):
        return "issuer"
    if isinstance(error, jwt.InvalidSignatureError):
        return "signature"
    if isinstance(error, jwt.MissingRequiredClaimError):
        return "claims"
    if isinstance(error, jwt.ImmatureSignatureError | jwt.InvalidIssuedAtError):
        return "not-yet-valid"
    return "invalid"


@dataclass(slots=True)
class KeySource:
    """What is known of one JWKS source: its last good set, and when it last failed."""

    keys: dict[str, Any] | None = None
    fetched_at: float = float("-inf")
    failed_at: float = float("-inf")
    failure: str = ""
    fetching: threading.Lock = field(default_factory=threading.Lock)  # one fetch at a time


@dataclass(slots=True)
class KeyStore:
    """JWKS by source (URL or file), cached, so that a source that is slow, down or named
    by a flood of junk tokens costs the other clients nothing:

    - one fetch per source at a time; others wait for it (bounded) rather than fetch too;
    - a failed fetch is remembered for FAILURE_HOLD_SECONDS: no fetch meanwhile;
    - a refresh that fails keeps the last good set;
    - an unknown ``kid`` refetches at most once per ``refresh_seconds``;
    - the pinned ``jwks_url`` sets are fetched by a background thread (started on first use
      in each process, so a server that forks after loading gets one per worker), so a
      request thread fetches them only before their first fetch has ever succeeded."""

    refresh_seconds: float
    background: tuple[str, ...] = ()  # pinned jwks_url sources, kept fresh off the hook path
    _sources: dict[str, KeySource] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _refresher_pid: int | None = None

    def key(self, source: str, kid: str) -> jwt.PyJWK:
        self._start_background()
        state = self._source(source)
        if state.keys is None or self._stale(state):
            self._refresh(source, state)
        found = _find(state.keys, kid) if state.keys else None
        if found is None and state.keys is not None and self._may_refetch(state):
            self._refresh(source, state)
            found = _find(state.keys, kid)
        if state.keys is None:
            raise AuthError(state.failure or f"JWKS {source} unavailable", "keys-unavailable")
        if found is None:
            raise AuthError(f"kid {kid!r} not in the JWKS of {source}", "unknown-kid")
        return jwt.PyJWK(found)

    def _source(self, source: str) -> KeySource:
        with self._lock:
            return self._sources.setdefault(source, KeySource())

    @staticmethod
    def _stale(state: KeySource) -> bool:
        return time.monotonic() - state.fetched_at > JWKS_MAX_AGE_SECONDS

    def _may_refetch(self, state: KeySource) -> bool:
        return time.monotonic() - state.fetched_at >= self.refresh_seconds

    def _refresh(self, source: str, state: KeySource) -> None:
        """Fetch ``source`` unless it failed moments ago; one fetch at a time, and a caller
        arriving during one waits for its outcome instead of fetching again."""
        asked = time.monotonic()
        if asked - state.failed_at < FAILURE_HOLD_SECONDS:
            return
        if not state.fetching.acquire(timeout=JWKS_TIMEOUT_SECONDS + 1.0):
            return  # a fetch is taking longer than its own deadline: do not pile on
        try:
            if max(state.fetched_at, state.failed_at) >= asked:
                return  # fetched (or failed) while this caller waited
            try:
                keys = _read_jwks(source)
            except AuthError as error:
                state.failed_at, state.failure = time.monotonic(), str(error)
                kept = "last good set kept" if state.keys is not None else "no key set"
                logs.event("jwks-fetch-failed", logging.WARNING, reason=str(error), kept=kept)
                return
            state.keys, state.fetched_at = keys, time.monotonic()
        finally:
            state.fetching.release()

    def _start_background(self) -> None:
        """The refresher of the pinned URL sets, once per process (checked by pid, so a
        worker forked from a loaded parent starts its own)."""
        if not self.background or self._refresher_pid == os.getpid():
            return
        with self._lock:
            if self._refresher_pid == os.getpid():
                return
            self._refresher_pid = os.getpid()
        thread = threading.Thread(target=self._keep_fresh, name="jwks-refresh", daemon=True)
        thread.start()

    def _keep_fresh(self) -> None:
        pause = max(self.refresh_seconds, 1.0)
        while True:
            for source in self.background:
                state = self._source(source)
                if self._may_refetch(state) or state.keys is None:
                    self._refresh(source, state)
            time.sleep(pause)


def _read_jwks(source: str) -> dict[str, Any]:
    try:
        if source.startswith(("https://", "http://")):
            jwks = json.loads(_fetch(source))
        else:
            jwks = json.loads(Path(source).read_text(encoding="utf-8"))
    except (OSError, ValueError, requests.RequestException) as error:
        raise AuthError(
            f"JWKS {source} unavailable ({type(error).__name__})", "keys-unavailable"
        ) from None
    if not isinstance(jwks, dict) or not isinstance(jwks.get("keys"), list):
        raise AuthError(f"JWKS {source} has no keys", "keys-unavailable")
    return jwks


def _fetch(url: str) -> bytes:
    """The body at ``url`` within JWKS_TIMEOUT_SECONDS in all and JWKS_MAX_BYTES: requests'
    own timeout is per socket read, so a host trickling a byte at a time is cut off here."""
    deadline = time.monotonic() + JWKS_TIMEOUT_SECONDS
    timeout = (JWKS_TIMEOUT_SECONDS, JWKS_TIMEOUT_SECONDS)
    with requests.get(url, timeout=timeout, allow_redirects=False, stream=True) as response:
        response.raise_for_status()
        body = bytearray()
        for chunk in response.iter_content(8192):
            body += chunk
            if len(body) > JWKS_MAX_BYTES:
                raise ValueError("JWKS too large")
            if time.monotonic() > deadline:
                raise requests.Timeout("JWKS not received in time")
        return bytes(body)


def _find(jwks: Mapping[str, Any], kid: str) -> dict[str, Any] | None:
    return next((k for k in jwks["keys"] if isinstance(k, dict) and k.get("kid") == kid), None)


class SharedReplays(Protocol):
    def first_use(self, iss: str, jti: str, expires: float) -> bool | None: ...


@dataclass(slots=True)
class ReplayCache:
    """``jti`` values seen, each kept until its token expires (lifetime is bounded).

    With ``shared`` (the store), a token is accepted once across every worker and
    instance on that database; if the store cannot answer, this process's own memory still
    refuses a replay to it, and the fault is logged."""

    shared: SharedReplays | None = None
    # "refuse": a token the store cannot check is refused (no replay window at all).
    unavailable: str = "per-worker"
    _seen: dict[tuple[str, str], float] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def first_use(self, iss: str, jti: str, expires: float) -> bool:
        local = self._first_use_here(iss, jti, expires)
        if self.shared is None or not local:
            return local
        shared = self.shared.first_use(iss, jti, expires)
        if shared is None:
            logs.event("jti-unchecked", logging.WARNING, policy=self.unavailable)
            return self.unavailable != "refuse"
        return shared

    def _first_use_here(self, iss: str, jti: str, expires: float) -> bool:
        now = time.time()
        with self._lock:
            if len(self._seen) > 10_000:
                self._seen = {k: v for k, v in self._seen.items() if v > now}
            if (iss, jti) in self._seen and self._seen[(iss, jti)] > now:
                return False
            self._seen[(iss, jti)] = expires
            return True


@dataclass(slots=True)
class Authenticator:
    clients: dict[str, TrustedClient]
    leeway: float
    max_lifetime: float
    keys: KeyStore
    replays: ReplayCache = field(default_factory=ReplayCache)

    def verify(self, authorization: str | None, audience: str) -> dict[str, Any]:
        """The verified claims, or AuthError saying why not."""
        token = _bearer(authorization)
        try:
            header = jwt.get_unverified_header(token)
            unverified = jwt.decode(token, options={"verify_signature": False})
        except jwt.PyJWTError:
            raise AuthError("not a JWT", "malformed") from None
        client = self._client(unverified)
        algorithm = self._algorithm(header, client)
        key = self.keys.key(self._key_source(header, client), _kid(header))
        try:
            claims = jwt.decode(
                token,
                key=key.key,
                algorithms=[algorithm],
                audience=audience,
                issuer=client.iss,
                leeway=self.leeway,
                options={"require": REQUIRED_CLAIMS},
            )
        except jwt.InvalidAudienceError:
            # What was expected and what came: a proxy that rewrites the path or a client
            # configured with another URL shows here at once (the audience is no secret).
            received = str(unverified.get("aud"))[:300]
            raise AuthError(
                f"audience mismatch: expected {audience!r}, received {received!r}", "audience"
            ) from None
        except (jwt.PyJWTError, TypeError, ValueError) as error:
            # TypeError/ValueError: e.g. an RS384 header naming an EC key (PyJWT raises them)
            raise AuthError(f"{type(error).__name__}: {error}", _reason(error)) from None
        self._check(claims, client)
        return claims

    def _client(self, claims: Mapping[str, Any]) -> TrustedClient:
        client = self.clients.get(str(claims.get("iss")))
        if client is None:
            raise AuthError(f"issuer {str(claims.get('iss'))[:100]!r} is not trusted", "issuer")
        return client

    @staticmethod
    def _algorithm(header: Mapping[str, Any], client: TrustedClient) -> str:
        algorithm = header.get("alg")
        if algorithm not in client.algorithms:
            raise AuthError(f"algorithm {str(algorithm)[:20]!r} not allowed", "algorithm")
        if header.get("typ") not in (None, "JWT"):
            raise AuthError("typ is not JWT", "malformed")
        return algorithm

    @staticmethod
    def _key_source(header: Mapping[str, Any], client: TrustedClient) -> str:
        """A token's ``jku`` must be allowlisted; the key then comes from the pinned JWKS when
        the client has one (the safest setup, and the one that needs no outbound access)."""
        pinned = client.jwks_file or client.jwks_url
        jku = header.get("jku")
        if jku is not None:
            if jku not in client.jku:
                raise AuthError(
                    f"jku {str(jku)[:200]!r} is not allowlisted for {client.iss}", "jku"
                )
            return pinned or jku
        source = pinned
        if source is None:
            raise AuthError(f"no jku in the token and no pinned JWKS for {client.iss}", "jku")
        return source

    def _check(self, claims: Mapping[str, Any], client: TrustedClient) -> None:
        exp = claims["exp"]
        # PyJWT takes int("1700000000") for exp; RFC 7519 asks for a NumericDate (a number).
        if not isinstance(exp, int | float) or isinstance(exp, bool):
            raise AuthError("exp is not a number", "claims")
        if exp - time.time() > self.max_lifetime + self.leeway:
            raise AuthError("token lifetime exceeds the maximum", "lifetime")
        if client.tenant is not None and claims.get("tenant") != client.tenant:
            raise AuthError("tenant does not match", "tenant")
        if not isinstance(claims["jti"], str) or not claims["jti"]:
            raise AuthError("jti missing", "claims")
        expires = float(claims["exp"]) + self.leeway
        if not self.replays.first_use(client.iss, claims["jti"], expires):
            raise AuthError("jti replayed", "replayed")


def _bearer(authorization: str | None) -> str:
    if not authorization:
        raise AuthError("no Authorization header", "no-token")
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise AuthError("Authorization is not a Bearer token", "no-token")
    return token.strip()


def _kid(header: Mapping[str, Any]) -> str:
    kid = header.get("kid")
    if not isinstance(kid, str) or not kid:
        raise AuthError("kid missing", "malformed")
    return kid


def init_auth(
    app: Flask, settings: Settings, protected: Blueprint, replays: SharedReplays | None = None
) -> None:
    """Require a verified client JWT on every route of ``protected`` (the CDS endpoints:
    discovery, services, feedback); the public blueprint (health, OpenAPI) needs none."""
    if not settings.auth_required:
        logs.event("auth-off", logging.WARNING, note="client JWTs are not checked (development)")
        return
    settings.check_audience()
    authenticator = Authenticator(
        clients={client.iss: client for client in settings.trusted_clients},
        leeway=settings.auth_leeway_seconds,
        max_lifetime=settings.auth_max_token_lifetime_seconds,
        keys=KeyStore(
            settings.jwks_refresh_seconds,
            background=tuple(c.jwks_url for c in settings.trusted_clients if c.jwks_url),
        ),
        replays=ReplayCache(replays, settings.replay_check_unavailable),
    )
    base = (settings.public_base_url or "").rstrip("/")

    @app.before_request
    def authenticate() -> Response | None:
        if request.method == "OPTIONS" or request.blueprint != protected.name:
            return None
        if _unknown_service(request.view_args):
            return None  # the route answers 404: nothing is served, so nothing to guard
        audience = f"{base}{request.path}"
        started = time.perf_counter()
        try:
            claims = authenticator.verify(request.headers.get("Authorization"), audience)
        except AuthError as error:
            metrics().auth_refusals.labels(error.reason).inc()
            logs.event("auth-rejected", logging.WARNING, path=request.path, reason=str(error))
            issue = Issue("login", "Authentication required")
            return json_response(operation_outcome([issue]), 401, {"WWW-Authenticate": "Bearer"})
        g.client = claims["iss"]
        g.tenant = claims.get("tenant") if isinstance(claims.get("tenant"), str) else None
        g.auth_ms = elapsed_ms(started)
        return None


def _unknown_service(view_args: dict[str, Any] | None) -> bool:
    """A path naming no service (``aatd-patient-view%00``) is a 404 for everyone: the
    service ids are public (discovery lists them), and a 401 would say there is
    something behind the path to authenticate for."""
    service_id = (view_args or {}).get("service_id")
    return service_id is not None and service_id not in SERVICES
