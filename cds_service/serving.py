"""The serving stack: granian's Rust HTTP server in front, the Flask app on a bounded pool.

Why not a plain WSGI server: a WSGI server hands a request to a thread as soon as its
headers arrive, and the thread then blocks reading the body. Clients that send their body a
byte at a time (or never) park every thread, and nothing else is answered (measured with
gunicorn's threaded workers: a few dozen such connections). Here granian reads headers
(with its own header-read timeout) and this bridge reads the body on the event loop, where
a waiting client costs a coroutine, not a thread: under a size cap and a deadline (413 / 408
with an OperationOutcome). Only complete requests reach the thread pool that runs the app.

The bridge also stamps each request with its arrival time (``ARRIVAL``), so the hook's
deadline counts time spent queued for a thread, and answers a failure of the app itself
with an OperationOutcome instead of a server's HTML page.
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
import sys
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Protocol

from . import logs
from .collector import settle_collector
from .config import Settings
from .health import POOL_GAUGE, PoolGauge
from .timing import ARRIVAL

Headers = list[tuple[str, str]]
WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


class Scope(Protocol):
    """What the bridge reads of granian's RSGI scope."""

    proto: str
    http_version: str
    client: str
    server: str
    scheme: str
    method: str
    path: str
    query_string: str

    @property
    def headers(self) -> Any: ...


class BodyTooLargeError(Exception):
    """The body is larger than ``max_body_bytes``."""


class IncompleteBodyError(Exception):
    """The connection ended before the body did: shorter than its Content-Length, or a
    chunked body without its last chunk. Processed, it would be a request nobody sent."""


class WsgiBridge:
    """An RSGI application running a WSGI app once its request has fully arrived."""

    def __init__(
        self,
        app: WsgiApp,
        *,
        threads: int,
        body_timeout: float,
        max_body_bytes: int,
        on_stop: Callable[[], None] = lambda: None,
    ) -> None:
        self.app = app
        self.body_timeout = body_timeout
        self.max_body_bytes = max_body_bytes
        self.on_stop = on_stop
        self.pool = ThreadPoolExecutor(threads, thread_name_prefix="request")
        self.gauge = PoolGauge(threads)  # requests handed to the pool, for /readyz

    def __rsgi_init__(self, loop: asyncio.AbstractEventLoop) -> None:
        """Granian calls this once per worker; nothing to prepare."""

    def __rsgi_del__(self, loop: asyncio.AbstractEventLoop) -> None:
        """Granian calls this when the worker stops (SIGTERM to the server): the requests in
        flight finish, then ``on_stop`` (the store writes its queued cards). It must: the
        worker then ends without running atexit handlers."""
        self.pool.shutdown(wait=True, cancel_futures=False)
        self.on_stop()

    async def __rsgi__(self, scope: Scope, protocol: Any) -> None:
        arrival = time.monotonic()
        if scope.proto != "http":  # websockets are off; nothing else is served
            protocol.response_empty(400, [])
            return
        host_problem = _host_problem(scope)
        if host_problem:
            _refuse(protocol, 400, "structure", host_problem)
            return
        try:
            async with asyncio.timeout(self.body_timeout):  # no extra task, as wait_for makes
                body = await self._read_body(scope, protocol)
        except BodyTooLargeError:
            _refuse(protocol, 413, "too-long", f"request body over {self.max_body_bytes} bytes")
            return
        except TimeoutError:
            message = f"request body not received within {self.body_timeout:g} s"
            _refuse(protocol, 408, "timeout", message)
            return
        except IncompleteBodyError:  # a half-closed client still reads its answer
            _refuse(protocol, 400, "incomplete", "the request body ended before it was complete")
            return
        except Exception:  # the client went away mid-body: nobody to answer
            return
        environ = wsgi_environ(scope, body, arrival)
        environ[POOL_GAUGE] = self.gauge
        loop = asyncio.get_running_loop()
        self.gauge.enter()
        try:
            status, headers, payload = await loop.run_in_executor(self.pool, self._call, environ)
        finally:
            self.gauge.leave()
        _send(protocol, status, headers, payload)

    async def _read_body(self, scope: Scope, protocol: Any) -> bytes:
        declared = scope.headers.get("content-length", "")
        length = int(declared) if declared.isdigit() else None
        if length is not None and length > self.max_body_bytes:
            raise BodyTooLargeError
        if length == 0:
            return b""
        if length is not None and "transfer-encoding" not in scope.headers:
            try:  # declared, within the limit: read in one call
                body: bytes = await protocol()
            except RuntimeError:  # granian: the stream broke before Content-Length bytes
                raise IncompleteBodyError from None
            if len(body) > self.max_body_bytes:
                raise BodyTooLargeError
            return body
        return await self._read_chunked(protocol)

    async def _read_chunked(self, protocol: Any) -> bytes:
        """A chunked body, counted as it comes and refused past the limit.

        Granian's body iterator does not raise when the stream breaks: it yields an empty
        chunk for the error and another for the end, where a complete body ends with one
        (granian 2.8, src/rsgi/io.rs ``__anext__``). So a second empty chunk means the last
        chunk never came. Trailer fields look the same and are refused alike; no CDS client
        sends them."""
        chunks, size, empty = [], 0, 0
        async for chunk in protocol:
            if not chunk:
                empty += 1
                continue
            size += len(chunk)
            if size > self.max_body_bytes:
                raise BodyTooLargeError
            chunks.append(chunk)
        if empty > 1:
            raise IncompleteBodyError
        return b"".join(chunks)

    def _call(self, environ: dict[str, Any]) -> tuple[int, Headers, bytes]:
        started: list[Any] = []

        def start_response(status: str, headers: Headers, exc_info: Any = None) -> None:
            started[:] = [int(status[:3]), headers]

        try:
            result = self.app(environ, start_response)
            try:
                payload = b"".join(result)
            finally:
                close = getattr(result, "close", None)
                if close is not None:
                    close()
            return started[0], started[1], payload
        except Exception as error:  # Flask answers its own errors; this is the last resort
            logs.event("error", logging.ERROR, status=500, errorClass=type(error).__name__)
            return (
                500,
                [("Content-Type", "application/fhir+json")],
                _outcome("exception", "internal error"),
            )


def wsgi_environ(scope: Scope, body: bytes, arrival: float) -> dict[str, Any]:
    """PEP 3333 environ for a request whose body has been read in full."""
    server_host, _, server_port = scope.server.rpartition(":")
    client_host = scope.client.rpartition(":")[0].strip("[]")
    environ: dict[str, Any] = {
        "REQUEST_METHOD": scope.method,
        "SCRIPT_NAME": "",
        # RSGI gives the decoded path as text; WSGI wants it as latin-1 code points.
        "PATH_INFO": scope.path.encode("utf-8", "surrogateescape").decode("latin-1"),
        "QUERY_STRING": scope.query_string,
        "SERVER_NAME": server_host.strip("[]"),
        "SERVER_PORT": server_port,
        "SERVER_PROTOCOL": f"HTTP/{scope.http_version}",
        "REMOTE_ADDR": client_host,
        "CONTENT_LENGTH": str(len(body)),
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": scope.scheme,
        "wsgi.input": io.BytesIO(body),
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": True,
        "wsgi.multiprocess": True,
        "wsgi.run_once": False,
        ARRIVAL: arrival,
    }
    for name, value in scope.headers.items():
        key = name.upper().replace("-", "_")
        if key in ("CONTENT_LENGTH", "TRANSFER_ENCODING"):
            continue  # the body is here whole and de-chunked: CONTENT_LENGTH above says so
        key = key if key == "CONTENT_TYPE" else f"HTTP_{key}"
        environ[key] = f"{environ[key]}, {value}" if key in environ else value
    return environ


def _host_problem(scope: Scope) -> str | None:
    """RFC 9112 section 3.2: an HTTP/1.1 request without a Host header, or with more than
    one, is a 400 (a request smuggled past a proxy that read the other Host)."""
    if scope.http_version != "1.1":
        return None  # HTTP/1.0 may omit it; HTTP/2 carries :authority instead
    hosts = sum(1 for name, _ in scope.headers.items() if name.lower() == "host")
    if hosts == 1:
        return None
    return "an HTTP/1.1 request needs exactly one Host header" + (
        "" if hosts else " (none was sent)"
    )


def _refuse(protocol: Any, status: int, code: str, message: str) -> None:
    logs.event("error", logging.WARNING, status=status, where=[code])
    headers = [("Content-Type", "application/fhir+json"), ("Connection", "close")]
    _send(protocol, status, headers, _outcome(code, message))


def _send(protocol: Any, status: int, headers: Headers, body: bytes) -> None:
    """The answer, unless the client has gone (granian then raises a RuntimeError subclass:
    nobody to answer, and no traceback for the log)."""
    try:
        protocol.response_bytes(status, headers, body)
    except RuntimeError:
        return


def _outcome(code: str, message: str) -> bytes:
    issue = {"severity": "error", "code": code, "diagnostics": message}
    return json.dumps({"resourceType": "OperationOutcome", "issue": [issue]}).encode()


def application() -> WsgiBridge:
    """Granian's factory target, called in each worker: settings from the environment."""
    from .app import close_app, create_app
    from .runtime import runtime_of

    settings = Settings.load()
    logs.configure(settings.log_level)
    app = create_app(settings)
    runtime_of(app).store.start()  # cards a stopped worker spooled are written now
    bridge = WsgiBridge(
        app,
        threads=settings.request_threads,
        body_timeout=settings.body_timeout,
        max_body_bytes=settings.max_body_bytes,
        on_stop=lambda: close_app(app),
    )
    settle_collector()
    return bridge
