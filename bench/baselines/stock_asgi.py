"""Stock Django's ASGI application, for the stock django-eventstream baseline."""
import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bench.baselines.stock_settings")
application = get_asgi_application()
