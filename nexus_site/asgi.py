"""ASGI entry point: daphne serves this application."""
import os

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "nexus_site.settings")
# Set Django up (and so load every app) before importing anything that touches models.
django.setup(set_prefix=False)

from django.conf import settings  # noqa: E402

from .asgi_handler import NexusASGIHandler  # noqa: E402

application = NexusASGIHandler(threads=settings.NEXUS_REQUEST_THREADS)
