"""Self-contained HTML pages the command line writes (the card gallery, the screen
report): Jinja templates in ``cds_service/templates``, every value escaped."""

from __future__ import annotations

from functools import cache
from typing import Any

from jinja2 import Environment, PackageLoader, select_autoescape


@cache
def _environment() -> Environment:
    return Environment(
        loader=PackageLoader("cds_service", "templates"), autoescape=select_autoescape()
    )


def render_page(template: str, **values: Any) -> str:
    return _environment().get_template(template).render(**values)
