"""Who may read ``/metrics``: the setting ``metrics_access``.

- ``loopback`` (default): a scraper on the same machine, connecting directly. A request
  that came through a proxy (``Forwarded`` or ``X-Forwarded-For``) is refused even from
  loopback: a reverse proxy on the host would otherwise publish the metrics to anyone.
- ``token``: ``Authorization: Bearer <metrics_token>`` (compared in constant time), from
  anywhere; for a scraper on another machine.
- ``open``: anyone (a private network where the port is not reachable otherwise).

The metrics hold counts and codes only, no patient data; still, rates per topic and
refusal reasons are an organisation's operational data.
"""

from __future__ import annotations

import hmac
from typing import Any

from .urls import is_loopback

MODES = ("loopback", "token", "open")


def metrics_refusal(request: Any, settings: Any) -> str | None:
    """Why this request may not read the metrics, or None when it may."""
    mode = settings.metrics_access
    if mode == "open":
        return None
    if mode == "token":
        given = request.headers.get("Authorization", "")
        scheme, _, value = given.partition(" ")
        wanted = settings.metrics_token or ""
        if wanted and scheme.lower() == "bearer" and hmac.compare_digest(value.strip(), wanted):
            return None
        return "metrics need the bearer token set in metrics_token"
    proxied = "Forwarded" in request.headers or "X-Forwarded-For" in request.headers
    if is_loopback(request.remote_addr or "") and not proxied:
        return None
    return 'metrics are served to loopback only (metrics_access = "loopback")'
