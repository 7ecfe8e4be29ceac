"""HTTP and CDS Hooks: the app factory, routes, schemas, prefetch, rendering, CLI."""

from .app import create_app
from .config import Settings

__all__ = ["Settings", "create_app"]
