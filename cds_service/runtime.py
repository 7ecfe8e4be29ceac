"""Per-app state the routes share: the settings and the pool that runs FHIR fetches."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from flask import Flask, current_app

from hooks import Policy

from .config import Settings
from .store import Store

EXTENSION = "alpha1_cds"


@dataclass(frozen=True, slots=True)
class Runtime:
    settings: Settings
    executor: ThreadPoolExecutor
    policy: Policy
    store: Store


def runtime() -> Runtime:
    return current_app.extensions[EXTENSION]


def runtime_of(app: Flask) -> Runtime:
    """The runtime of ``app`` outside a request (a worker starting or stopping)."""
    runtime: Runtime = app.extensions[EXTENSION]
    return runtime
