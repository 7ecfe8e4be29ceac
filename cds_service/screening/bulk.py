"""A FHIR Bulk Data client: kick-off, poll, download (Bulk Data Access IG, the async pattern).

``Patient/$export`` or ``Group/<id>/$export`` with ``_type`` limited to what the rules read
and ``_since`` for an incremental run; ``Prefer: respond-async``; the status URL from
``Content-Location``, polled while it answers 202, waiting what ``Retry-After`` asks
(seconds or an HTTP date, within bounds); the manifest's output files downloaded as NDJSON,
its error files kept in ``errors/`` and counted, its deleted files (with ``_since``) in
``deleted/``; ``export.json`` records the server, group, ``_since`` and
``transactionTime``. The access token follows the hooks' rule: the server must be one the
service may send tokens to (``server_problem``), and the token goes only to URLs below its
base: a status URL elsewhere is not polled, a file elsewhere is fetched without it, and a
manifest that wants the token sent elsewhere is refused. An export that does not finish by
the deadline is cancelled (DELETE on the status URL) and said.
"""

from __future__ import annotations

import contextlib
import json
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urljoin

import requests

from fhir_mappings import QUERIES

from .. import urls
from ..config import Settings
from ..prefetch import server_problem
from .export import ABOUT, DELETED

# What the rules read (the types of the hooks' queries, declared there once), and the
# Medications that orders name by reference.
TYPES = (*sorted({query.resource_type for query in QUERIES.values()}), "Medication")
FHIR_JSON = "application/fhir+json"
WAIT_FIRST, WAIT_MAX = 1.0, 60.0  # seconds between polls without (or past) a Retry-After
CHUNK = 1 << 16
# Where each list of the manifest is saved, below the export folder.
SUBFOLDERS = {"output": ".", "error": "errors", "deleted": DELETED}


class BulkError(Exception):
    """The export could not be had: what the server answered, in words for the operator."""


@dataclass
class Downloaded:
    folder: Path
    files: list[Path] = field(default_factory=list)
    error_files: list[Path] = field(default_factory=list)
    transaction_time: str | None = None


@dataclass
class BulkClient:
    base: str
    settings: Settings
    token: str | None = None
    deadline_seconds: float = 3600.0
    sleep: Any = time.sleep  # tests make waiting instant

    def __post_init__(self) -> None:
        self.base = self.base.rstrip("/") + "/"
        why = server_problem(self.base.rstrip("/"), self.settings)
        if why:
            raise BulkError(f"{self.base} may not be used: {why}")

    def export(
        self, folder: Path, group: str | None = None, since: str | None = None
    ) -> Downloaded:
        """Kick off, wait for, and download one export into ``folder``, with
        ``export.json`` saying where and when it was taken (the next ``_since``)."""
        status = self.kick_off(group, since)
        manifest = self.wait(status)
        found = self.download(manifest, folder)
        about = {
            "server": self.base.rstrip("/"),
            "group": group,
            "since": since,
            "transactionTime": found.transaction_time,
        }
        (folder / ABOUT).write_text(json.dumps(about, indent=2), encoding="utf-8")
        return found

    def kick_off(self, group: str | None = None, since: str | None = None) -> str:
        path = f"Group/{group}/$export" if group else "Patient/$export"
        params = {"_type": ",".join(TYPES), **({"_since": since} if since else {})}
        response = self._get(urljoin(self.base, path) + "?" + urlencode(params), respond_async=True)
        if response.status_code != 202:
            raise BulkError(
                f"the kick-off was answered HTTP {response.status_code}{_said(response)}"
            )
        location = response.headers.get("Content-Location")
        if not location:
            raise BulkError("the kick-off was accepted without a Content-Location to poll")
        status = urljoin(self.base, location)
        if not self._may_have_token(status):
            raise BulkError(f"the status URL {status[:200]} is outside {self.base}: not polled")
        return status

    def wait(self, status: str) -> dict[str, Any]:
        """Poll ``status`` until the manifest comes; cancel the export past the deadline."""
        deadline = time.monotonic() + self.deadline_seconds
        pause = WAIT_FIRST
        while True:
            response = self._get(status)
            if response.status_code == 200:
                return _manifest(response)
            if response.status_code != 202:
                raise BulkError(f"the export failed: HTTP {response.status_code}{_said(response)}")
            pause = _retry_after(response.headers.get("Retry-After"), pause)
            if time.monotonic() + pause > deadline:
                self._cancel(status)
                waited = f"{self.deadline_seconds:g} s"
                raise BulkError(f"the export did not finish within {waited}; it was cancelled")
            self.sleep(pause)
            pause = min(pause * 2, WAIT_MAX)

    def download(self, manifest: dict[str, Any], folder: Path) -> Downloaded:
        folder.mkdir(parents=True, exist_ok=True)
        found = Downloaded(folder, transaction_time=manifest.get("transactionTime"))
        with_token = bool(manifest.get("requiresAccessToken"))
        for kind, entries in (
            ("output", manifest.get("output", [])),
            ("error", manifest.get("error", [])),
            ("deleted", manifest.get("deleted", [])),  # with _since: what was deleted since
        ):
            for n, entry in enumerate(entries):
                url, rtype = entry.get("url"), entry.get("type", "Bundle")
                if not isinstance(url, str) or not isinstance(rtype, str) or not rtype.isalpha():
                    raise BulkError(f"the manifest's {kind} entry {n} has no usable url or type")
                target = folder / SUBFOLDERS[kind] / f"{rtype}.{n}.ndjson"
                target.parent.mkdir(parents=True, exist_ok=True)
                self._fetch(urljoin(self.base, url), target, with_token)
                (found.error_files if kind == "error" else found.files).append(target)
        return found

    # --- HTTP ---------------------------------------------------------------------------------

    def _may_have_token(self, url: str) -> bool:
        """The token goes to the export server's own URLs only (as a hook's goes only to
        its fhirServer): a status or file URL elsewhere never receives it."""
        return urls.within(url, self.base.rstrip("/"), allow_query=True)

    def _headers(self, token: bool = True) -> dict[str, str]:
        headers = {"Accept": FHIR_JSON}
        if token and self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        return headers

    def _get(self, url: str, respond_async: bool = False) -> requests.Response:
        headers = self._headers() | ({"Prefer": "respond-async"} if respond_async else {})
        try:
            return requests.get(
                url, headers=headers, timeout=self.settings.fhir_timeout * 5, allow_redirects=False
            )
        except requests.RequestException as error:
            raise BulkError(f"{url} could not be reached ({type(error).__name__})") from None

    def _fetch(self, url: str, target: Path, with_token: bool) -> None:
        """One output file, streamed to disk; the token only where it may go."""
        send_token = with_token and self._may_have_token(url)
        if with_token and not send_token:
            raise BulkError(
                f"the manifest asks for the access token at {url}, which may not have it"
            )
        headers = self._headers(token=send_token) | {"Accept": "application/fhir+ndjson"}
        try:
            with requests.get(
                url,
                headers=headers,
                timeout=self.settings.fhir_timeout * 5,
                stream=True,
                allow_redirects=False,
            ) as response:
                if response.status_code != 200:
                    raise BulkError(
                        f"a file of the export was answered HTTP {response.status_code}"
                    )
                with target.open("wb") as handle:
                    for chunk in response.iter_content(CHUNK):
                        handle.write(chunk)
        except requests.RequestException as error:
            raise BulkError(
                f"a file of the export could not be read ({type(error).__name__})"
            ) from None

    def _cancel(self, status: str) -> None:
        # The export is abandoned either way; if this fails, the server's own expiry ends it.
        with contextlib.suppress(requests.RequestException):
            requests.delete(status, headers=self._headers(), timeout=self.settings.fhir_timeout)


def _retry_after(value: str | None, current: float) -> float:
    """Seconds to wait: ``Retry-After`` as seconds or an HTTP date, bounded to 0-60 s; our
    own back-off when the server says nothing usable."""
    if value is None:
        return current
    value = value.strip()
    if value.isdigit():
        return min(float(value), WAIT_MAX)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return current
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, min((when - datetime.now(UTC)).total_seconds(), WAIT_MAX))


def _manifest(response: requests.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        raise BulkError("the export's manifest is not JSON") from None
    if not isinstance(body, dict) or not isinstance(body.get("output", []), list):
        raise BulkError("the export's manifest has no output list")
    return body


def _said(response: requests.Response) -> str:
    """The first diagnostics of an OperationOutcome answer, bounded."""
    try:
        body = response.json()
    except ValueError:
        return ""
    issues = body.get("issue") if isinstance(body, dict) else None
    if isinstance(issues, list) and issues and isinstance(issues[0], dict):
        text = str(issues[0].get("diagnostics") or issues[0].get("code") or "")[:300]
        return f": {text}" if text else ""
    return ""
