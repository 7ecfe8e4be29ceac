"""WSGI entry point for any server: ``gunicorn 'cds_service.wsgi:app'``."""

import gc

from . import logs
from .app import create_app
from .config import Settings

settings = Settings.load()
logs.configure(settings.log_level)
app = create_app(settings)
gc.freeze()  # long-lived start-up objects out of full collections (see cli.py)
