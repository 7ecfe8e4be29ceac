"""JSON responses, compact and UTF-8, shared by every endpoint and error handler."""

from __future__ import annotations

from typing import Any

import orjson
from flask import Response


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    """orjson: compact UTF-8 bytes, about ten times faster than json.dumps on a response."""
    return Response(orjson.dumps(body), status=status, headers=headers, mimetype="application/json")
