"""WSGI entry point for any server: ``gunicorn 'cds_service.wsgi:app'``."""

from . import logs
from .app import create_app
from .config import Settings
from .serving import settle_collector

settings = Settings.load()
logs.configure(settings.log_level)
app = create_app(settings)
settle_collector()  # as `alpha1-cds serve` does in each worker (serving.py says why)
