"""Framing and authorization errors the app explains instead of a blank page.

A browser refuses to show the app inside an EHR page whose origin is not in
``smart_frame_ancestors`` (Content-Security-Policy ``frame-ancestors``), and shows an empty
frame. The browser says in its request that the page is for a frame (``Sec-Fetch-Dest:
iframe``) and, usually, where from (``Referer``): then the app answers with a page that
says what to set, framed by that origin only and holding nothing but the explanation, and
logs the case once per origin and process. What an authorization server answered (RFC 6749
``error`` and ``error_description``) is shown, bounded and escaped, never a bare refusal.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Iterable, Mapping
from urllib.parse import urlsplit

from .. import logs
from ..tracing import Headers
from ..urls import ORIGIN

# RFC 6749 appendix A.7 and A.8: error is NQSCHAR, error_description NQSCHAR with spaces.
ERROR_CODE = re.compile(r"[\x20\x21\x23-\x5B\x5D-\x7E]{1,64}")
DESCRIPTION_LIMIT = 300
_LOGGED: set[str] = set()
_LOGGED_LIMIT = 256
_LOCK = threading.Lock()


def refused_frame(headers: Headers, allowed: Iterable[str]) -> str | None:
    """The origin a browser will refuse to frame this page in, from the request's own
    Fetch Metadata and Referer; None when it is not for a frame or the frame is allowed.
    Without a Referer the origin is known to be refused only when none is allowed."""
    if headers.get("Sec-Fetch-Dest") != "iframe" or headers.get("Sec-Fetch-Site") in (
        None,
        "same-origin",
    ):
        return None
    allowed = tuple(allowed)
    origin = _origin(headers.get("Referer") or "")
    if origin is None:
        return "" if not allowed else None
    return None if any(_matches(origin, source) for source in allowed) else origin


def log_refused_once(origin: str) -> None:
    """One warning per embedding origin and process, with the setting that would allow it."""
    with _LOCK:
        if origin in _LOGGED or len(_LOGGED) >= _LOGGED_LIMIT:
            return
        _LOGGED.add(origin)
    shown = origin or "(the browser sent no Referer)"
    logs.event(
        "smart-frame-refused",
        logging.WARNING,
        origin=shown,
        set=f'smart_frame_ancestors = ["{origin or "https://<the EHR origin>"}"]',
    )


def error_code(fields: Mapping[str, object]) -> str:
    """The RFC 6749 ``error`` code, or "unrecognised error" when it is not one (for logs)."""
    code = str(fields.get("error", "") or "")
    return code if ERROR_CODE.fullmatch(code) else "unrecognised error"


def oauth_error(fields: Mapping[str, object]) -> str:
    """What the authorization server said, as a clinician's support desk needs it:
    "access_denied: The user denied the request". Unlisted characters are dropped."""
    code = error_code(fields)
    description = "".join(
        ch for ch in str(fields.get("error_description", "") or "") if ch.isprintable()
    )[:DESCRIPTION_LIMIT].strip()
    return f"{code}: {description}" if description else code


def _origin(url: str) -> str | None:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return None
    origin = f"{parts.scheme}://{parts.netloc.rsplit('@', 1)[-1]}"
    return origin if ORIGIN.fullmatch(origin) else None


def _matches(origin: str, source: str) -> bool:
    """CSP host-source matching, for the forms ``check_ancestors`` accepts."""
    if "://*." not in source:
        return origin.rstrip("/") == source.rstrip("/")
    scheme, host = source.split("://*.", 1)
    parts = urlsplit(origin)
    return parts.scheme == scheme and parts.netloc.endswith("." + host)
