"""Baselines on stock Django (its middleware, its SQLite backend and ASGI handler,
bench/baselines/stock_asgi.py): django-eventstream used as its README shows (its own view, its
database storage, send_event in the web process, its own listener manager), and a DRF model
viewset with DRF's token authentication, whose POST creates a row."""
from nexus_site.settings import *  # noqa: F401,F403
from nexus_site.settings import DATABASES, INSTALLED_APPS

ROOT_URLCONF = "bench.baselines.stock_urls"
EVENTSTREAM_STORAGE_CLASS = "django_eventstream.storage.DjangoModelStorage"
EVENTSTREAM_CHANNELMANAGER_CLASS = "django_eventstream.channelmanager.DefaultChannelManager"
NEXUS_EMBEDDED_WORKER = False
# None of the project's own speed-ups: its apps (content_jobs installs its listener manager),
# its middleware, its SQLite backend.
INSTALLED_APPS = [app for app in INSTALLED_APPS if app not in ("content_jobs", "job_logs")] + ["bench.baselines"]
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": ["rest_framework.authentication.TokenAuthentication"],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
}
MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]
DATABASES = {"default": {**DATABASES["default"], "ENGINE": "django.db.backends.sqlite3", "CONN_MAX_AGE": 0}}
