"""Floor apps: the least any Flask service could do with the same request on this machine.

Each parses the request body with orjson and answers a JSON body of the size alpha1-cds
would answer (the client names it in ``X-Response-Bytes``), doing nothing else. Served by
granian two ways, with as many workers as alpha1-cds:

- ``bridge``: behind the same bridge as ``alpha1-cds serve`` (cds_service/serving.py), so
  the ratio shows what alpha1-cds itself costs on its own stack;
- ``app`` with granian's native WSGI interface: the fastest Flask floor measured here (it
  has no protection against slow bodies, which is why ``serve`` does not use it).
"""

from __future__ import annotations

import orjson
from flask import Flask, Response, request

from cds_service.serving import WsgiBridge

app = Flask(__name__)


@app.post("/cds-services/<service_id>")
def hook(service_id: str) -> Response:
    body = orjson.loads(request.get_data())
    size = int(request.headers.get("X-Response-Bytes", "16"))
    filler = "x" * max(0, size - 40)
    payload = orjson.dumps({"cards": [], "keys": len(body), "filler": filler})
    return Response(payload, mimetype="application/json")


@app.get("/healthz")
def healthz() -> Response:
    return Response(b'{"status":"ok"}', mimetype="application/json")


bridge = WsgiBridge(app, threads=8, body_timeout=10.0, max_body_bytes=5 * 1024 * 1024)
