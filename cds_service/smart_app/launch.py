"""SMART App Launch 2.0: discovery, authorization code with PKCE (S256), token exchange.

The app is a public client run by the server: the browser only ever holds a signed,
HttpOnly launch cookie (state, PKCE verifier, token endpoint, FHIR base) for the few minutes
between the redirect to the EHR's authorization server and the way back. The access token
is used for the one page it renders and never stored, logged or sent to the browser.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode, urlsplit

import jwt
import requests

from fhir_mappings import APP_QUERIES

from .. import urls
from .framing import oauth_error

DISCOVERY = ".well-known/smart-configuration"
LAUNCH_SECONDS = 600  # how long the launch cookie is good for
JSON = "application/json"
RESPONSE_LIMIT = 256 * 1024  # bytes read of a discovery document or token response


class LaunchError(Exception):
    """A launch that cannot go on; the message is shown to the user and logged (no secrets)."""


@dataclass(frozen=True, slots=True)
class SmartServer:
    """What the authorization server's discovery document says the app needs."""

    authorize: str
    token: str
    v2_scopes: bool


@dataclass(frozen=True, slots=True)
class Launch:
    """One launch in flight: what the callback needs to finish it (in the signed cookie)."""

    state: str
    verifier: str
    iss: str
    token_endpoint: str

    def as_cookie(self) -> dict[str, str]:
        return {"s": self.state, "v": self.verifier, "i": self.iss, "t": self.token_endpoint}

    @classmethod
    def from_cookie(cls, data: Any) -> Launch:
        if not isinstance(data, dict) or not all(isinstance(data.get(k), str) for k in "svit"):
            raise LaunchError("the launch cookie is not one this app wrote")
        return cls(data["s"], data["v"], data["i"], data["t"])


def discover(iss: str, timeout: float) -> SmartServer:
    """The authorization server named by the FHIR server's SMART configuration."""
    url = iss.rstrip("/") + "/" + DISCOVERY
    try:
        # A redirect is never followed: the app must talk to the server it was launched from.
        response = requests.get(
            url, timeout=timeout, headers={"Accept": JSON}, allow_redirects=False
        )
    except requests.RequestException as error:
        name = type(error).__name__
        raise LaunchError(f"the FHIR server could not be reached ({name})") from None
    document = _json(response, "its SMART configuration")
    if "authorization_code" not in document.get("grant_types_supported", ["authorization_code"]):
        raise LaunchError("the FHIR server's authorization server does not launch apps")
    methods = document.get("code_challenge_methods_supported") or []
    if "S256" not in methods:
        raise LaunchError("the authorization server does not offer PKCE with S256")
    authorize, token = document.get("authorization_endpoint"), document.get("token_endpoint")
    if not isinstance(authorize, str) or not isinstance(token, str):
        raise LaunchError("the SMART configuration names no authorization or token endpoint")
    for name, endpoint in (("authorization", authorize), ("token", token)):
        why = _endpoint_problem(endpoint)
        if why:
            raise LaunchError(f"the {name} endpoint {why}")
    capabilities = document.get("capabilities") or []
    return SmartServer(authorize, token, "permission-v2" in capabilities)


def _endpoint_problem(url: str) -> str | None:
    """The code and the PKCE verifier go to the token endpoint: https, or http on loopback
    (a developer's or a test's own server), never anywhere else."""
    why = urls.problem(url, allow_query=True)
    if why:
        return why
    parts = urlsplit(url)
    if parts.scheme != "https" and not urls.is_loopback(parts.hostname or ""):
        return "is http on a host that is not loopback (https is required)"
    return None


def scopes(v2: bool, standalone: bool) -> str:
    """Read access to the resource types the app queries, and nothing more; ``openid
    fhirUser`` so the audit line can say which user opened which record (issue 28)."""
    suffix = "rs" if v2 else "read"
    types = sorted({query.resource_type for query in APP_QUERIES.values()})
    context = "launch/patient" if standalone else "launch"
    return " ".join(
        [context, "openid", "fhirUser", *(f"patient/{kind}.{suffix}" for kind in types)]
    )


def begin(
    iss: str, server: SmartServer, client_id: str, redirect_uri: str, launch: str | None
) -> tuple[Launch, str]:
    """A new launch and the authorization URL to send the browser to."""
    verifier = secrets.token_urlsafe(64)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest())
    flight = Launch(secrets.token_urlsafe(32), verifier, iss, server.token)
    params = {
        "response_type": "code",
        "client_id": client_id,
        "redirect_uri": redirect_uri,
        "scope": scopes(server.v2_scopes, standalone=launch is None),
        "state": flight.state,
        "aud": iss,
        "code_challenge": challenge.decode().rstrip("="),
        "code_challenge_method": "S256",
    }
    if launch is not None:
        params["launch"] = launch
    separator = "&" if "?" in server.authorize else "?"
    return flight, server.authorize + separator + urlencode(params)


@dataclass(frozen=True, slots=True)
class Grant:
    access_token: str
    patient: str
    user: str | None = None  # the id token's fhirUser, when the server gave one


def exchange(flight: Launch, code: str, client_id: str, redirect_uri: str, timeout: float) -> Grant:
    """The token request with the PKCE verifier; the patient comes from the token response."""
    form = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": redirect_uri,
        "client_id": client_id,
        "code_verifier": flight.verifier,
    }
    try:
        # Never redirected: a 307 would re-post the code and the PKCE verifier elsewhere.
        response = requests.post(
            flight.token_endpoint,
            data=form,
            timeout=timeout,
            headers={"Accept": JSON},
            allow_redirects=False,
        )
    except requests.RequestException as error:
        name = type(error).__name__
        raise LaunchError(f"the token endpoint could not be reached ({name})") from None
    _refuse_redirect(response, "the token endpoint")
    if response.status_code != 200:
        raise LaunchError(
            f"the token endpoint refused the code (HTTP {response.status_code}{_said(response)})"
        )
    body = _json(response, "the token response")
    token, patient = body.get("access_token"), body.get("patient")
    if not isinstance(token, str) or not token:
        raise LaunchError("the token response holds no access token")
    if not isinstance(patient, str) or not patient:
        raise LaunchError("the token response names no patient (is the launch scope granted?)")
    return Grant(token, patient, fhir_user(body.get("id_token")))


def fhir_user(id_token: object) -> str | None:
    """The ``fhirUser`` claim of the OpenID Connect id token, for the audit line only.

    The token came straight from the token endpoint over TLS, which OpenID Connect Core
    (3.1.3.7, item 6) accepts in place of checking its signature; it authorizes nothing
    here. A token that cannot be read gives no user, never an error: the launch stands."""
    if not isinstance(id_token, str) or id_token.count(".") != 2:
        return None
    try:
        claims = jwt.decode(id_token, options={"verify_signature": False})
    except jwt.PyJWTError:
        return None
    user = claims.get("fhirUser")
    return user if isinstance(user, str) and 0 < len(user) <= 1000 else None


def _said(response: requests.Response) -> str:
    """What an OAuth error response says (RFC 6749 section 5.2), when it is one."""
    if len(response.content) > RESPONSE_LIMIT:
        return ""
    try:
        body = response.json()
    except ValueError:
        return ""
    if not isinstance(body, dict) or "error" not in body:
        return ""
    return f"; it answered {oauth_error(body)}"


def _refuse_redirect(response: requests.Response, what: str) -> None:
    if 300 <= response.status_code < 400:
        raise LaunchError(
            f"{what} answered with a redirect (HTTP {response.status_code}); "
            "redirects are not followed"
        )


def _json(response: requests.Response, what: str) -> dict[str, Any]:
    _refuse_redirect(response, what)
    if response.status_code != 200:
        raise LaunchError(f"{what} could not be read (HTTP {response.status_code})")
    if len(response.content) > RESPONSE_LIMIT:
        raise LaunchError(f"{what} is larger than {RESPONSE_LIMIT} bytes")
    try:
        body = response.json()
    except ValueError:
        raise LaunchError(f"{what} is not JSON") from None
    if not isinstance(body, dict):
        raise LaunchError(f"{what} is not a JSON object")
    return body
