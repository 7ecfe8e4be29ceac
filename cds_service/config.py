"""Settings: embedded defaults, then an optional TOML file, then environment variables.

Every setting is documented in the README with its default. Environment variables are the
upper-cased field names prefixed with ``ALPHA1_CDS_`` (``ALPHA1_CDS_FHIR_TIMEOUT=1.5``);
the TOML file, named by ``ALPHA1_CDS_CONFIG``, uses the field names as keys.
"""

from __future__ import annotations

import json
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from fhir_mappings import Lookbacks
from fhir_mappings.aat import constants
from hooks import Policy
from hooks.knowledge import topics
from hooks.policy import DEFAULT_FEV1_WINDOW, REMINDER_STYLES

from .metrics_access import MODES as METRICS_MODES
from .urls import check_origins

ENV_PREFIX = "ALPHA1_CDS_"
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
AUTH_MODES = (None, "required", "off")


ASYMMETRIC = frozenset(
    {"ES256", "ES384", "ES512", "RS256", "RS384", "RS512", "PS256", "PS384", "PS512"}
)
DEFAULT_ALGORITHMS = ("ES384", "RS384")
# The clinical defaults are stated once, where they are used (fhir_mappings, hooks).
LOOKBACKS = Lookbacks()
# How long an override hides a topic for that patient (README, "Overrides"). Reminders
# come back when they may be due again; a contraindication is never hidden.
SNOOZE_DAYS = {
    "default": 30,
    "family-testing": 365,
    "vaccinations-due": 90,
    "liver-monitoring": 180,
    "spirometry-due": 90,
    "smoking-status-unknown": 90,
    "augmentation-contraindicated": 0,
}


class ConfigError(ValueError):
    """A setting has a value the service cannot run with."""


NEEDS_PUBLIC_BASE_URL = (
    "auth_mode 'required' needs public_base_url (the URL EHRs call): the JWT audience is "
    "that URL, never taken from the request's Host header"
)


@dataclass(frozen=True, slots=True)
class TrustedClient:
    """An EHR allowed to call: its issuer, where its keys are, and what it may use."""

    iss: str
    jku: tuple[str, ...] = ()
    jwks_url: str | None = None
    jwks_file: str | None = None
    tenant: str | None = None
    algorithms: tuple[str, ...] = DEFAULT_ALGORITHMS

    def __post_init__(self) -> None:
        if not (self.jku or self.jwks_url or self.jwks_file):
            raise ValueError(f"trusted client {self.iss}: give jku, jwks_url or jwks_file")
        unsafe = set(self.algorithms) - ASYMMETRIC
        if unsafe:
            raise ValueError(f"trusted client {self.iss}: algorithms not allowed: {sorted(unsafe)}")

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> TrustedClient:
        values = dict(data)
        for name in ("jku", "algorithms"):
            if isinstance(values.get(name), str):
                values[name] = [values[name]]
            if name in values:
                values[name] = tuple(values[name])
        return cls(**values)


@dataclass(frozen=True, slots=True)
class Settings:
    # Public URL of the service as EHRs reach it (behind a proxy); None: taken from each request.
    public_base_url: str | None = None
    # Browser origins allowed by CORS; "*" allows any origin (then never with credentials).
    cors_origins: tuple[str, ...] = ("https://sandbox.cds-hooks.org",)
    cors_allow_credentials: bool = False
    # Seconds one FHIR call may take, and all data gathering of one hook call together.
    fhir_timeout: float = 2.0
    fhir_deadline: float = 4.0
    # Bundle pages followed per prefetch key before the rest is reported as not read.
    fhir_max_pages: int = 10
    # FHIR calls made at the same time for one hook call.
    fhir_parallel: int = 8
    # Largest decoded body one FHIR answer (one page) may have, in bytes.
    fhir_max_bytes: int = 20 * 1024 * 1024
    # Largest request body accepted, in bytes.
    max_body_bytes: int = 5 * 1024 * 1024
    # Seconds a client may take to send its request body (408 after), and the threads per
    # worker that run requests once they have fully arrived (`alpha1-cds serve`).
    body_timeout: float = 10.0
    request_threads: int = 8
    # `alpha1-cds serve`: connections one instance holds open, idle ones included (shared
    # among its workers; requests run on request_threads whatever this is), the kernel's
    # queue of connections not yet accepted (capped by net.core.somaxconn), and the seconds
    # a connection may take to send a request's headers, idle keep-alive time included.
    max_connections: int = 20_000
    connection_backlog: int = 4096
    idle_timeout: float = 5.0
    log_level: str = "INFO"
    # Clinical policy where guidelines differ (README "Policy").
    fev1_window: str = DEFAULT_FEV1_WINDOW
    lookback_spirometry_days: int = LOOKBACKS.spirometry
    lookback_smoking_days: int = LOOKBACKS.smoking
    lookback_weight_days: int = LOOKBACKS.weight
    lookback_igg_days: int = LOOKBACKS.igg
    lookback_liver_tests_days: int = LOOKBACKS.liver_tests
    aat_grey_zone_mg_dl: tuple[float, ...] = tuple(map(float, constants().grey_zone_mg_dl))
    # Client JWTs: "required", or "off" for a developer on loopback; unset: required, except
    # that `alpha1-cds serve` on a loopback address starts with it off.
    auth_mode: str | None = None
    trusted_clients: tuple[TrustedClient, ...] = ()
    auth_leeway_seconds: float = 5.0
    # When the store cannot say whether a jti was seen: "per-worker" accepts a token this
    # process has not seen (a replay window of seconds, across workers, while the store is
    # away); "refuse" answers 401 until the store answers again (README "Security").
    replay_check_unavailable: str = "per-worker"
    auth_max_token_lifetime_seconds: float = 3600.0
    jwks_refresh_seconds: float = 60.0
    # FHIR servers the EHR's access token may be sent to (URL prefixes; "*": any https
    # server). With auth off, http on a loopback address is allowed as well.
    fhir_allowed_servers: tuple[str, ...] = ()
    # Resources accepted in one request (prefetch and draft orders together).
    max_resources: int = 20_000
    # Where issued cards and feedback are kept: an SQLite file by default, or PostgreSQL
    # ("postgresql+psycopg://user@host/db"). The key, when set, stores a keyed hash of the
    # patient id with each issued card; without it no patient reference is stored at all.
    database_url: str = "sqlite:///alpha1-cds.sqlite"
    # Where issued cards the database could not take in time are kept until it can (a
    # stop during an outage, a full queue). Unset: beside the SQLite file, or
    # ./alpha1-cds-spool for PostgreSQL; on a disk that survives a restart.
    spool_dir: str | None = None
    # Secret for the keyed hash of patient ids (overrides are remembered per patient). Unset:
    # a random key is made at first start and kept in the database (README, "Feedback").
    patient_hash_key: str | None = None
    # The SMART app (/app/): the client id it is registered under in the EHR, and the EHR
    # origins that may show it in a frame (Content-Security-Policy frame-ancestors).
    smart_client_id: str = "alpha1-cds"
    smart_frame_ancestors: tuple[str, ...] = ()
    # FHIR servers whose records the app may open without an authorization (`?iss=&patient=`,
    # a demo or test server) while auth is required; with auth off any allowed server may.
    smart_open_servers: tuple[str, ...] = ()
    # Who may read /metrics: "loopback" (a scraper on this machine, not through a proxy),
    # "token" (Authorization: Bearer metrics_token) or "open" (docs/operations.md).
    metrics_access: str = "loopback"
    metrics_token: str | None = None
    # Days feedback is kept (deleted hourly after; 0: kept for ever; issued cards follow
    # audit_retention_days). A full year for the feedback report, past the longest snooze.
    retention_days: int = 400
    # Seconds `alpha1-cds serve` keeps retrying a database it cannot reach at start-up
    # (back-off 1, 2, 4... s), then exits with the reason in one line.
    database_start_timeout: float = 30.0
    # Patient-view reminders: one care-checklist card ("checklist") or a card each ("cards").
    reminders: str = REMINDER_STYLES[0]
    # A JSON file of the site's own codes per concept (fhir_mappings/site.py), e.g. a
    # local AAT test code; they join the mapping, the prefetch templates and /valuesets.
    site_codes: str | None = None
    # Going live (README "Going live"): "show" answers with cards; "silent" decides and
    # records every card as usual but answers {"cards": []} (silent_topics: per topic);
    # topics_off are not decided at all; indicator_floor raises a topic's indicator.
    display_mode: str = "show"
    silent_topics: tuple[str, ...] = ()
    topics_off: tuple[str, ...] = ()
    indicator_floor: Mapping[str, str] = field(default_factory=dict)
    # Epic fires patient-view for other triggers than opening the chart, saying which in
    # com.epic.cdshooks.request.bpa-trigger-action ("60": open patient chart). A call from
    # another trigger gets no chart-open reminders unless this is "show".
    other_trigger_reminders: str = "hide"
    chart_open_trigger_actions: tuple[str, ...] = ("60",)
    # Days the audit trail (each issued card: to whom, by which client, on what knowledge)
    # is kept; six years, the HIPAA documentation retention (45 CFR 164.316(b)(2)). 0: kept.
    audit_retention_days: int = 2190
    # Days a topic stays hidden for a patient after a clinician overrode it; "default" for
    # topics not named; 0: never hidden.
    snooze_days: Mapping[str, int] = field(default_factory=lambda: dict(SNOOZE_DAYS))
    # Days an override without a reason (a plain "Dismiss") hides a topic: a clinician in a
    # hurry has not decided the topic away (reasons' own periods: README "Chart-open").
    dismiss_snooze_days: int = 3

    def __post_init__(self) -> None:
        for name in ("fhir_timeout", "fhir_deadline", "body_timeout", "database_start_timeout"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"{name} must be positive")
        for name in (
            "fhir_max_pages",
            "fhir_parallel",
            "fhir_max_bytes",
            "max_body_bytes",
            "request_threads",
            "max_connections",
        ):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be at least 1")
        if self.connection_backlog < 128:
            raise ConfigError("connection_backlog must be at least 128")
        if not 1 <= self.idle_timeout <= 60:
            raise ConfigError("idle_timeout must be between 1 and 60 seconds")
        if self.dismiss_snooze_days < 0:
            raise ConfigError("dismiss_snooze_days must be 0 (never hidden) or a number of days")
        if self.retention_days < 0:
            raise ConfigError("retention_days must be 0 (keep) or a number of days")
        if "*" in self.cors_origins and self.cors_allow_credentials:
            raise ConfigError("cors_origins '*' cannot be combined with cors_allow_credentials")
        if self.auth_mode not in AUTH_MODES:
            raise ConfigError("auth_mode must be 'required' or 'off'")
        if self.display_mode not in ("show", "silent"):
            raise ConfigError('display_mode must be "show" or "silent"')
        if self.other_trigger_reminders not in ("hide", "show"):
            raise ConfigError('other_trigger_reminders must be "hide" or "show"')
        if self.audit_retention_days < 0:
            raise ConfigError("audit_retention_days must be 0 (keep) or a number of days")
        if self.metrics_access not in METRICS_MODES:
            raise ConfigError(f"metrics_access must be one of {', '.join(METRICS_MODES)}")
        if self.metrics_access == "token" and not self.metrics_token:
            raise ConfigError('metrics_access "token" needs metrics_token')
        if self.replay_check_unavailable not in ("per-worker", "refuse"):
            raise ConfigError('replay_check_unavailable must be "per-worker" or "refuse"')
        if self.auth_leeway_seconds < 0 or self.auth_max_token_lifetime_seconds <= 0:
            raise ConfigError("auth leeway and token lifetime must be positive")
        if self.log_level.upper() not in LOG_LEVELS:
            raise ConfigError(f"log_level must be one of {', '.join(LOG_LEVELS)}")
        if self.public_base_url is not None and not self.public_base_url.startswith(
            ("https://", "http://")
        ):
            raise ConfigError("public_base_url must be an absolute http(s) URL")
        try:
            check_origins("smart_frame_ancestors", self.smart_frame_ancestors)
        except ValueError as error:
            raise ConfigError(str(error)) from None
        if self.database_url.rstrip("/") in ("sqlite:", "sqlite:///:memory:"):
            raise ConfigError(
                "database_url must name a file or a server: an in-memory "
                "database is lost and cannot be shared between threads"
            )
        try:
            self.policy()

        except ValueError as error:
            raise ConfigError(str(error)) from None

    @property
    def auth_required(self) -> bool:
        return self.auth_mode != "off"

    def check_audience(self) -> None:
        """With auth required, the service must know the URL EHRs call."""
        if self.auth_required and not self.public_base_url:
            raise ConfigError(NEEDS_PUBLIC_BASE_URL)

    def policy(self) -> Policy:
        """The clinical policy these settings choose."""
        if len(self.aat_grey_zone_mg_dl) != 2:
            raise ValueError("aat_grey_zone_mg_dl must be two values: low, high")
        low, high = self.aat_grey_zone_mg_dl
        lookbacks = Lookbacks(
            spirometry=self.lookback_spirometry_days,
            smoking=self.lookback_smoking_days,
            weight=self.lookback_weight_days,
            igg=self.lookback_igg_days,
            liver_tests=self.lookback_liver_tests_days,
        )
        silent = topics().keys() if self.display_mode == "silent" else self.silent_topics
        return Policy(
            self.fev1_window,
            lookbacks,
            (low, high),
            self.reminders,
            topics_off=frozenset(self.topics_off),
            silent_topics=frozenset(silent),
            indicator_floor=tuple(sorted(self.indicator_floor.items())),
        )

    @classmethod
    def load(
        cls, environ: Mapping[str, str] | None = None, path: str | Path | None = None
    ) -> Settings:
        """Defaults, overlaid by the TOML file, overlaid by the environment."""
        environ = os.environ if environ is None else environ
        path = path or environ.get(f"{ENV_PREFIX}CONFIG")
        values: dict[str, Any] = {}
        if path:
            with open(path, "rb") as handle:
                values.update(tomllib.load(handle))
        for setting in fields(cls):
            raw = environ.get(ENV_PREFIX + setting.name.upper())
            if raw is not None:
                values[setting.name] = raw
        values |= _secret_files(environ)
        return cls().with_values(values)

    def with_values(self, values: Mapping[str, Any]) -> Settings:
        """A copy with some settings changed; strings are parsed to each field's type."""
        known = {field.name: field for field in fields(self)}
        unknown = set(values) - set(known)
        if unknown:
            raise ConfigError(f"unknown setting(s): {', '.join(sorted(unknown))}")
        parsed = {name: _parse(name, value, getattr(self, name)) for name, value in values.items()}
        return replace(self, **parsed)


# Settings that hold secrets, which may come from a file instead (Docker and Kubernetes
# secrets): ALPHA1_CDS_<NAME>_FILE names the file, its content (trimmed) is the value.
SECRET_SETTINGS = ("database_url", "patient_hash_key", "metrics_token")


def _secret_files(environ: Mapping[str, str]) -> dict[str, str]:
    found = {}
    for name in SECRET_SETTINGS:
        variable = f"{ENV_PREFIX}{name.upper()}_FILE"
        path = environ.get(variable)
        if path is None:
            continue
        if environ.get(f"{ENV_PREFIX}{name.upper()}") is not None:
            raise ConfigError(f"{variable} and {ENV_PREFIX}{name.upper()} are both set: give one")
        try:
            found[name] = Path(path).read_text(encoding="utf-8").strip()
        except OSError as error:
            raise ConfigError(f"{variable}: cannot read {path} ({type(error).__name__})") from None
    return found


def _parse(name: str, value: Any, default: Any) -> Any:
    """Coerce a TOML or environment value to the type of the setting's default."""
    try:
        if name == "trusted_clients":
            return _trusted_clients(value)
        if name == "indicator_floor":
            return _indicator_floor(value)
        if isinstance(default, Mapping):
            return _snooze_days(value, default)
        if isinstance(default, bool):
            return _parse_bool(value)
        if isinstance(default, tuple):
            items = value.split(",") if isinstance(value, str) else list(value)
            kind = type(default[0]) if default else str
            return tuple(kind(str(item).strip()) for item in items if str(item).strip())
        if isinstance(default, int | float):
            return type(default)(value)
        if value in ("", None):
            return None
        return str(value)
    except (TypeError, ValueError) as error:
        raise ConfigError(f"{name}: cannot read {value!r} ({error})") from None


def _snooze_days(value: Any, default: Mapping[str, int]) -> dict[str, int]:
    """A JSON object (environment) or a table (TOML) of topic -> days, over the defaults."""
    given = json.loads(value) if isinstance(value, str) else value
    if not isinstance(given, Mapping):
        raise ValueError("expected a table of topic = days")
    known = set(topics()) | {"default"}
    unknown = set(given) - known
    if unknown:
        raise ValueError(f"unknown topic(s): {', '.join(sorted(unknown))}")
    days = {str(k): int(v) for k, v in given.items()}
    if any(v < 0 for v in days.values()):
        raise ValueError("days cannot be negative")
    return {**default, **days}


def _indicator_floor(value: Any) -> dict[str, str]:
    """A JSON object (environment) or a table (TOML) of topic -> lowest indicator."""
    given = json.loads(value) if isinstance(value, str) else value
    if not isinstance(given, Mapping):
        raise ValueError('expected a table of topic = "info" | "warning" | "critical"')
    return {str(k): str(v) for k, v in given.items()}


def _trusted_clients(value: Any) -> tuple[TrustedClient, ...]:
    """A JSON list (environment) or an array of tables (TOML) of trusted clients."""
    items = json.loads(value) if isinstance(value, str) else value
    if not isinstance(items, list) or not all(isinstance(item, dict) for item in items):
        raise ValueError("expected a list of tables with iss and jku, jwks_url or jwks_file")
    return tuple(TrustedClient.from_mapping(item) for item in items)


def _parse_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise ValueError("expected true or false")
