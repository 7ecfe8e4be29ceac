"""WSGI entry point for any server: ``gunicorn 'cds_service.wsgi:app'``."""

from . import logs
from .app import create_app
from .collector import settle_collector
from .config import Settings

settings = Settings.load()
logs.configure(settings.log_level)
app = create_app(settings)
settle_collector()  # as `alpha1-cds serve` does in each worker (collector.py says why)
