"""Baseline: django-eventstream used as its README shows (its own view, its database storage,
send_event in the web process), on the project's settings otherwise."""
from nexus_site.settings import *  # noqa: F401,F403

ROOT_URLCONF = "bench.baselines.stock_urls"
EVENTSTREAM_STORAGE_CLASS = "django_eventstream.storage.DjangoModelStorage"
EVENTSTREAM_CHANNELMANAGER_CLASS = "django_eventstream.channelmanager.DefaultChannelManager"
NEXUS_EMBEDDED_WORKER = False
