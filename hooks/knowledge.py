"""The clinical knowledge the rules cite, loaded once from the JSON files in ``knowledge/``."""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

TOPIC_SYSTEM = "urn:alpha1-cds:topic"
OVERRIDE_REASON_SYSTEM = "urn:alpha1-cds:override-reason"


@dataclass(frozen=True, slots=True)
class Topic:
    code: str
    display: str
    indicator: str


@dataclass(frozen=True, slots=True)
class Guideline:
    id: str
    label: str
    title: str
    url: str


def load(name: str) -> dict[str, Any]:
    """A data file of this package, without its ``_about`` notes."""
    return _load(name)


def _load(name: str) -> dict[str, Any]:
    text = resources.files("hooks").joinpath("data", name).read_text(encoding="utf-8")
    return {key: value for key, value in json.loads(text).items() if not key.startswith("_")}


@cache
def topics() -> dict[str, Topic]:
    return {code: Topic(code, **entry) for code, entry in _load("topics.json").items()}


@cache
def guidelines() -> dict[str, Guideline]:
    return {gid: Guideline(gid, **entry) for gid, entry in _load("guidelines.json").items()}


@cache
def override_reasons() -> dict[str, str]:
    return _load("override_reasons.json")


@cache
def threshold(name: str) -> Any:
    """A clinical threshold from data/thresholds.json (a number, or a [low, high] pair)."""
    return _load("thresholds.json")[name]["value"]
