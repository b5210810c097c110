"""Settings for Nexus content jobs.

Everything comes from the environment; with nothing set, the service runs in its embedded
default: a SQLite file inside the checkout, the in-memory channel layer and the task worker
inside the server process.
"""
from pathlib import Path
import ipaddress
import os

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(os.environ.get("NEXUS_VAR_DIR", BASE_DIR / "var"))


def env_bool(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    return default if value in (None, "") else int(value)


def env_float(name: str, default: float) -> float:
    value = os.environ.get(name)
    return default if value in (None, "") else float(value)


def env_list(name: str, default: list[str]) -> list[str]:
    value = os.environ.get(name)
    if value is None:
        return default
    return [item.strip() for item in value.split(",") if item.strip()]


DEBUG = env_bool("DJANGO_DEBUG", False)
SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "")
if not SECRET_KEY:
    if not DEBUG and env_bool("NEXUS_REQUIRE_SECRET_KEY", False):
        raise ImproperlyConfigured("DJANGO_SECRET_KEY must be set")
    # The embedded default must start with nothing configured; a fixed development key is
    # only acceptable because it signs nothing that leaves this machine by default.
    SECRET_KEY = "nexus-embedded-development-key-change-me-in-production-0123456789"
ALLOWED_HOSTS = env_list("DJANGO_ALLOWED_HOSTS", ["127.0.0.1", "localhost", "[::1]", "testserver"])

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework.authtoken",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "channels",
    "corsheaders",
    "django_eventstream",
    "django_tasks",
    "django_tasks_db",
    "content_jobs",
    "job_logs",
]

# Django's stock middleware, run on the event loop rather than through a thread each (see
# nexus_site.middleware): a stream connection or an API call makes no hand-off for them.
MIDDLEWARE = [
    "nexus_site.middleware.SecurityMiddleware",
    "nexus_site.static_files.StaticFilesMiddleware",
    "corsheaders.middleware.CorsMiddleware",
    "nexus_site.middleware.SessionMiddleware",
    "nexus_site.middleware.CommonMiddleware",
    "nexus_site.middleware.CsrfViewMiddleware",
    "nexus_site.middleware.AuthenticationMiddleware",
    "nexus_site.middleware.MessageMiddleware",
    "nexus_site.middleware.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "nexus_site.urls"
APPEND_SLASH = False

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

ASGI_APPLICATION = "nexus_site.asgi.application"
WSGI_APPLICATION = None

# Database ---------------------------------------------------------------------------------
DEFAULT_SQLITE = VAR_DIR / "nexus.sqlite3"
DATABASES = {
    "default": dj_database_url.parse(
        os.environ.get("DATABASE_URL") or f"sqlite:///{DEFAULT_SQLITE}",
        conn_max_age=0,
        conn_health_checks=False,
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
    # A transaction's BEGIN goes out with its first statement (see nexus_site.postgresql.base).
    DATABASES["default"]["ENGINE"] = "nexus_site.postgresql"
    # A bounded pool per process (psycopg's): a worker runs about three times the tasks a
    # second on reused connections than on a new one per task. Requests run on a fixed set of
    # threads (nexus_site.asgi_handler) and the worker, reaper and lease-keeper threads have
    # their own; "closing" a connection hands it back to the pool, and a stream hands its connection
    # back after every read, so a waiting stream holds none.
    DATABASES["default"]["OPTIONS"] = {
        **DATABASES["default"].get("OPTIONS", {}),
        # Statements bound on the server, each prepared once it ran PREPARE_THRESHOLD times on
        # a connection: PostgreSQL then skips parsing and planning it (Django's default binds
        # on the client, so every statement is parsed and planned anew). 0 turns preparing off.
        "server_side_binding": True,
        "prepare_threshold": env_int("DATABASE_PREPARE_THRESHOLD", 5) or None,
        "pool": {
            "min_size": env_int("DATABASE_POOL_MIN", 2),
            "max_size": env_int("DATABASE_POOL_MAX", 10),
            "timeout": env_float("DATABASE_POOL_TIMEOUT", 30.0),
        },
    }
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # The worker thread and the request handlers write at the same time: IMMEDIATE takes the
    # write lock when a transaction starts (no deadlocking lock upgrades), WAL lets readers
    # go on while one writes, and the busy timeout waits for the lock instead of failing.
    # Connections are kept: requests run on a fixed set of threads (nexus_site.asgi_handler),
    # so there is one connection per thread, opened once.
    DATABASES["default"]["CONN_MAX_AGE"] = None
    # Writers of this process queue for SQLite's write lock instead of sleeping in its busy
    # handler (see nexus_site.sqlite.base).
    DATABASES["default"]["ENGINE"] = "nexus_site.sqlite"
    DATABASES["default"]["OPTIONS"] = {
        "transaction_mode": "IMMEDIATE",
        "timeout": 30,
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }
    # Tests use a file (WAL needs one; an in-memory database cannot be shared with the worker
    # thread), one per test process so parallel runs never share it.
    test_name = os.environ.get("NEXUS_TEST_SQLITE") or str(VAR_DIR / f"test-{os.getpid()}.sqlite3")
    DATABASES["default"]["TEST"] = {"NAME": test_name}

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# Tasks ------------------------------------------------------------------------------------
TASKS = {
    "default": {
        "BACKEND": "django_tasks_db.DatabaseBackend",
        "QUEUES": ["default"],
    }
}
# Run the task worker inside the server process: the embedded default. With REDIS_URL set
# (scale-out) web processes run no jobs unless this says so; `worker` processes run them.
NEXUS_EMBEDDED_WORKER = env_bool("NEXUS_EMBEDDED_WORKER", not os.environ.get("REDIS_URL"))
# How often an idle worker looks for due tasks it was not woken for (seconds).
NEXUS_WORKER_POLL_SECONDS = env_float("NEXUS_WORKER_POLL_SECONDS", 1.0)
# A running job's lease: renewed every HEARTBEAT seconds by its worker; a job whose lease ran
# out is queued again (while it has attempts left) or failed with worker_lost by the reaper.
NEXUS_HEARTBEAT_SECONDS = env_float("NEXUS_HEARTBEAT_SECONDS", 5.0)
NEXUS_LEASE_SECONDS = env_float("NEXUS_LEASE_SECONDS", 30.0)
NEXUS_MAX_ATTEMPTS = env_int("NEXUS_MAX_ATTEMPTS", 3)
# How long a worker told to stop (SIGTERM) lets its running job go on before it exits.
NEXUS_WORKER_GRACE_SECONDS = env_float("NEXUS_WORKER_GRACE_SECONDS", 30.0)

# Channels ---------------------------------------------------------------------------------
REDIS_URL = os.environ.get("REDIS_URL", "")
if REDIS_URL:
    # Parallel test workers each get their own prefix, so no one hears another's events.
    CHANNEL_PREFIX = os.environ.get("NEXUS_CHANNEL_PREFIX", "nexus") + os.environ.get("PYTEST_XDIST_WORKER", "")
    CHANNEL_LAYERS = {
        "default": {
            # Pub/sub, not the list-based RedisChannelLayer: group messages are fire-and-forget
            # here (every event is stored; a stream reads what it missed), and pub/sub delivers
            # about six times the messages at a quarter of the latency.
            "BACKEND": "channels_redis.pubsub.RedisPubSubChannelLayer",
            "CONFIG": {
                "hosts": [REDIS_URL],
                "prefix": CHANNEL_PREFIX,
            },
        },
        # Workers' wake-ups (content_jobs.stream_hub, content_jobs.wake_layer): a channel of
        # channels_redis's list-based layer hands each message to one of its readers, so a
        # submission wakes one sleeping worker, not all. Up to 16 wait while every worker is
        # busy, for 10 s at most (a worker also looks every NEXUS_WORKER_POLL_SECONDS).
        "wake": {
            "BACKEND": "content_jobs.wake_layer.WakeLayer",
            "CONFIG": {"hosts": [REDIS_URL], "prefix": CHANNEL_PREFIX + ":", "capacity": 16, "expiry": 10},
        },
    }
else:
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels.layers.InMemoryChannelLayer",
            # One hub channel per process takes every message: room for bursts, and group
            # memberships that last as long as the streams that asked for them.
            "CONFIG": {"capacity": 100_000, "expiry": 60, "group_expiry": 10 * 365 * 86400},
        }
    }

# django-eventstream: our storage reads the project's own tables; our channel manager decides
# who may read a channel.
EVENTSTREAM_STORAGE_CLASS = "content_jobs.stream_storage.ProjectStorage"
EVENTSTREAM_CHANNELMANAGER_CLASS = "content_jobs.stream_storage.ProjectChannelManager"
NEXUS_SSE_KEEPALIVE_SECONDS = env_float("NEXUS_SSE_KEEPALIVE_SECONDS", 15.0)
# Threads for the synchronous part of requests (views, the ORM); streams hold none while waiting.
NEXUS_REQUEST_THREADS = env_int("NEXUS_REQUEST_THREADS", 8)
# Events a stream may have waiting in memory; past that it reads them from storage instead.
NEXUS_SSE_QUEUE_EVENTS = env_int("NEXUS_SSE_QUEUE_EVENTS", 10_000)
NEXUS_SSE_RETRY_MS = env_int("NEXUS_SSE_RETRY_MS", 2000)
# Stream requests with a token header or stream token skip Django's request cycle (see
# nexus_site.asgi_streams); false sends every stream through Django's middleware.
NEXUS_DIRECT_STREAMS = env_bool("NEXUS_DIRECT_STREAMS", True)
NEXUS_INTERNAL_STATS = env_bool("NEXUS_INTERNAL_STATS", False)
# The web process's garbage collector (gc.set_threshold), collecting less often than Python's
# 700,10,10 (see content_jobs/management/commands/serve.py); empty keeps Python's.
NEXUS_GC_THRESHOLDS = [int(v) for v in env_list("NEXUS_GC_THRESHOLDS", ["10000", "10", "100"])]
# /metrics answers requests from these networks, or with `Authorization: Bearer <token>`.
NEXUS_METRICS_ALLOWED_NETWORKS = env_list("NEXUS_METRICS_ALLOWED_NETWORKS", ["127.0.0.0/8", "::1/128"])
for _network in NEXUS_METRICS_ALLOWED_NETWORKS:  # at start, not as a 500 on every scrape
    try:
        ipaddress.ip_network(_network, strict=False)
    except ValueError:
        raise ImproperlyConfigured(
            f"NEXUS_METRICS_ALLOWED_NETWORKS: {_network!r} is not an address or a network (such as 10.0.0.0/8)") from None
NEXUS_METRICS_TOKEN = os.environ.get("NEXUS_METRICS_TOKEN", "")

# CORS for browsers on other origins: off unless origins are listed.
CORS_ALLOWED_ORIGINS = env_list("NEXUS_CORS_ALLOWED_ORIGINS", [])
CORS_URLS_REGEX = r"^/(api|jobs)/.*$"
CORS_ALLOW_HEADERS = ["authorization", "content-type", "idempotency-key", "last-event-id"]
CORS_EXPOSE_HEADERS = ["Location", "Idempotent-Replayed"]

# REST framework ---------------------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "content_jobs.authentication.TokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_PARSER_CLASSES": ["content_jobs.parsers.LimitedJSONParser"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_CONTENT_NEGOTIATION_CLASS": "content_jobs.negotiation.KeptNegotiation",
    "EXCEPTION_HANDLER": "content_jobs.api_errors.exception_handler",
    "DEFAULT_PAGINATION_CLASS": "content_jobs.pagination.JobPagination",
    "PAGE_SIZE": 50,
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Nexus content jobs",
    "DESCRIPTION": "Submit, watch, cancel and retry content jobs per company. Errors are RFC 9457 problem details.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SCHEMA_PATH_PREFIX": r"/api/",
    "COMPONENT_SPLIT_REQUEST": True,
    "SWAGGER_UI_DIST": "SIDECAR",  # served from our own static files, no CDN
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "content_jobs.schema.add_sse_endpoints",
    ],
}
# Largest accepted JSON request body (bytes); a render.markdown body carries up to 1 MiB.
NEXUS_MAX_BODY_BYTES = env_int("NEXUS_MAX_BODY_BYTES", 2 * 1024 * 1024)
DATA_UPLOAD_MAX_MEMORY_SIZE = NEXUS_MAX_BODY_BYTES

# Jobs and logs ----------------------------------------------------------------------------
NEXUS_STREAM_TOKEN_SECONDS = env_int("NEXUS_STREAM_TOKEN_SECONDS", 3600)
NEXUS_IDEMPOTENCY_SECONDS = env_int("NEXUS_IDEMPOTENCY_SECONDS", 24 * 3600)
NEXUS_LOG_MAX_LINES = env_int("NEXUS_LOG_MAX_LINES", 100_000)
NEXUS_LOG_MAX_MESSAGE_BYTES = env_int("NEXUS_LOG_MAX_MESSAGE_BYTES", 64 * 1024)
NEXUS_PROGRESS_EVENTS_PER_SECOND = env_float("NEXUS_PROGRESS_EVENTS_PER_SECOND", 10.0)
NEXUS_RETENTION_DAYS = env_int("NEXUS_RETENTION_DAYS", 30)
# Extra modules that register job types (comma-separated dotted paths), e.g. `bench.jobtypes`.
NEXUS_JOB_TYPE_MODULES = env_list("NEXUS_JOB_TYPE_MODULES", [])

# Artifacts go through Django's storage API; on disk by default.
MEDIA_ROOT = Path(os.environ.get("NEXUS_MEDIA_ROOT", VAR_DIR / "media"))
MEDIA_URL = "/media/"

# Auth, i18n, static -----------------------------------------------------------------------
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
]
LOGIN_URL = "/console/login/"
LOGIN_REDIRECT_URL = "/console/"
LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True
STATIC_URL = "static/"
STATIC_ROOT = VAR_DIR / "static"
# WhiteNoise finds files in the apps' static folders: no collectstatic step for `make run`.
WHITENOISE_USE_FINDERS = True
WHITENOISE_AUTOREFRESH = DEBUG

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": os.environ.get("NEXUS_LOG_LEVEL", "INFO")},
    "loggers": {
        "django_tasks_db": {"level": "WARNING"},
        "django.tasks": {"level": "WARNING"},
        "django_tasks": {"level": "WARNING"},
        "django_eventstream": {"level": "WARNING"},
        "httpx": {"level": "WARNING"},
        "daphne.server": {"level": "WARNING"},
    },
}

VAR_DIR.mkdir(parents=True, exist_ok=True)
STATIC_ROOT.mkdir(parents=True, exist_ok=True)
