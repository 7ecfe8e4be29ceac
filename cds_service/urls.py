"""URL checks by parsed parts, never by string prefix: where the EHR's access token may go.

A FHIR base (``fhirServer``) and every ``next`` link are compared by scheme, host, port and
normalised path. Dot segments, encoded dots, backslashes, user info, queries and
fragments in a base are refused: ``https://allowed/fhir/../evil`` is not below
``https://allowed/fhir`` however a client library would normalise it.
"""

from __future__ import annotations

import ipaddress
import re
from urllib.parse import SplitResult, urlsplit

_DOT_SEGMENT = re.compile(r"(^|/)\.{1,2}(/|$)")
_ENCODED = re.compile(r"%2e|%2f|%5c", re.IGNORECASE)
DEFAULT_PORTS = {"http": 80, "https": 443}
# An origin as CSP's frame-ancestors takes it: https://host[:port], or https://*.host.
ORIGIN = re.compile(r"https?://(\*\.)?[A-Za-z0-9.-]+(:[0-9]{1,5})?")


def check_origins(name: str, values: tuple[str, ...]) -> None:
    """Each entry is an origin: nothing that could end a CSP directive and start another."""
    for value in values:
        if not ORIGIN.fullmatch(value):
            raise ValueError(f"{name}: {value!r} is not an origin such as https://ehr.example.org")


def is_loopback(host: str) -> bool:
    """``localhost`` or a loopback address, decided by parsing it (``127.0.0.1.evil`` is
    not an address, so it is not loopback)."""
    host = host.strip("[]").lower()
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def problem(url: str, *, allow_query: bool = False) -> str | None:
    """Why ``url`` cannot be a FHIR base (or, with ``allow_query``, a next link), or None."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises on a malformed port
    except ValueError:
        return "is not a URL"
    if parts.scheme not in DEFAULT_PORTS or not parts.hostname:
        return "is not an http(s) URL"
    if "\\" in url:
        return "contains a backslash"
    if parts.username is not None or parts.password is not None:
        return "contains user information"
    if parts.fragment or (parts.query and not allow_query):
        return "has a query or a fragment"
    if _DOT_SEGMENT.search(parts.path) or _ENCODED.search(parts.path):
        return "has dot segments or encoded separators in its path"
    return None


def _origin(parts: SplitResult) -> tuple[str, str, int]:
    port = parts.port or DEFAULT_PORTS[parts.scheme]
    return parts.scheme, (parts.hostname or "").lower(), port


def within(url: str, base: str, *, allow_query: bool = False) -> bool:
    """``url`` is ``base`` or below it: same scheme, host and port, and a path under the
    base's path by whole segments (``/fhir`` does not cover ``/fhir-evil``)."""
    if problem(url, allow_query=allow_query) or problem(base):
        return False
    target, root = urlsplit(url), urlsplit(base)
    if _origin(target) != _origin(root):
        return False
    prefix = root.path.rstrip("/")
    return target.path.rstrip("/") == prefix or target.path.startswith(prefix + "/")
