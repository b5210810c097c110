"""ASGI entry point: daphne serves this application."""
import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "nexus_site.settings")
# Build the Django app (and so load every app) before importing anything that touches models.
django_asgi_app = get_asgi_application()

application = django_asgi_app
