"""All studio settings, read from environment variables with local defaults."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent


def env_bool(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    if value is None:
        return default
    if value not in ("true", "false"):
        raise ImproperlyConfigured(f"{name} must be 'true' or 'false', not {value!r}")
    return value == "true"


def env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    if value is None:
        return default
    try:
        return int(value)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be a whole number") from None


def env_path(name: str, default: Path) -> Path:
    return Path(os.environ.get(name) or default).resolve()


def env_paths(name: str) -> list[Path]:
    """A list of folders separated by the OS path separator (":")."""
    return [Path(p).resolve() for p in os.environ.get(name, "").split(os.pathsep) if p]


def env_database(name: str, default: dict[str, Any]) -> dict[str, Any]:
    """The default database from a postgres:// URL; unset or empty = `default`.

    `postgres://user:password@host:5432/name?sslmode=require` (or postgresql://):
    user, password and name may be %-quoted; query parameters go to libpq.
    Errors never repeat the URL: it may hold a password.
    """
    url = os.environ.get(name, "")
    if not url:
        return default
    refused = ImproperlyConfigured(
        f"{name} must look like postgres://user:password@host:5432/name"
    )
    parts = urlsplit(url)
    database = unquote(parts.path.removeprefix("/"))
    if parts.scheme not in ("postgres", "postgresql") or not database:
        raise refused
    try:
        port = parts.port
    except ValueError:  # not a number from 0 to 65535
        raise refused from None
    return {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": database,
        "USER": unquote(parts.username or ""),
        "PASSWORD": unquote(parts.password or ""),
        "HOST": parts.hostname or "",
        "PORT": str(port or ""),
        "OPTIONS": dict(parse_qsl(parts.query)),
    }


def env_redis_url(name: str) -> str:
    """A redis://, rediss:// or unix:// URL for django-q2's broker; "" if unset."""
    url = os.environ.get(name, "")
    if url and urlsplit(url).scheme not in ("redis", "rediss", "unix"):
        raise ImproperlyConfigured(f"{name} must look like redis://host:6379/0")
    return url


DEBUG = env_bool("DEBUG", True)
SECRET_KEY = os.environ.get("SECRET_KEY", "")
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured("SECRET_KEY must be set when DEBUG=false")
    SECRET_KEY = "insecure-local-development-key"
ALLOWED_HOSTS = [h for h in os.environ.get("ALLOWED_HOSTS", "*").split(",") if h]

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django_q",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "studio",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "studio.urls"
WSGI_APPLICATION = "studio.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "studio.context_processors.workspace_areas",
            ],
        },
    },
]

STUDIO_DATA_DIR = env_path("STUDIO_DATA_DIR", BASE_DIR / "var")
# Uploaded assets and job folders; shared by every node when scaled out.
STUDIO_DATASTORE = env_path("STUDIO_DATASTORE", STUDIO_DATA_DIR / "datastore")
# Server-side folders users may register as model or data paths.
STUDIO_ALLOWED_ROOTS = env_paths("STUDIO_ALLOWED_ROOTS")
STUDIO_ENV_CACHE = env_path("STUDIO_ENV_CACHE", STUDIO_DATA_DIR / "environments")
STUDIO_NODE_NAME = os.environ.get("STUDIO_NODE_NAME", "")
STUDIO_MAX_UPLOAD_MB = env_int("STUDIO_MAX_UPLOAD_MB", 1024)
STUDIO_JOB_TIMEOUT_S = env_int("STUDIO_JOB_TIMEOUT_S", 24 * 3600)
# A running job whose heartbeat is older than this is taken back and resumed
# (its worker died). Keep it above the longest scoring-environment build.
STUDIO_JOB_STALE_S = env_int("STUDIO_JOB_STALE_S", 60)
# A node helping with a job (instance_count > 1) that has not reported for
# this long is lost: its in-flight mini-batches are tried again elsewhere.
STUDIO_INSTANCE_STALE_S = env_int("STUDIO_INSTANCE_STALE_S", 30)
# Seconds between a worker node's heartbeats (the Compute page).
STUDIO_NODE_HEARTBEAT_S = env_int("STUDIO_NODE_HEARTBEAT_S", 10)
# An MLflow tracking server or registry to import models from (empty = off).
STUDIO_MLFLOW_TRACKING_URI = os.environ.get("STUDIO_MLFLOW_TRACKING_URI", "")

# One machine: SQLite. Several: every node points DATABASE_URL at one PostgreSQL.
DATABASES = {
    "default": env_database(
        "DATABASE_URL",
        {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": STUDIO_DATA_DIR / "studio.sqlite3",
            "OPTIONS": {
                "transaction_mode": "IMMEDIATE",
                "init_command": "PRAGMA journal_mode=WAL;",
            },
        },
    )
}

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True
STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = STUDIO_DATA_DIR / "static"
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "studio:home"
LOGOUT_REDIRECT_URL = "login"
DATA_UPLOAD_MAX_MEMORY_SIZE = 10 * 1024 * 1024
FILE_UPLOAD_MAX_MEMORY_SIZE = 10 * 1024 * 1024
# A model or code folder uploaded from the browser arrives as many files.
DATA_UPLOAD_MAX_NUMBER_FILES = 10000

# django-q2 delivers at least once; tasks claim their row, so a redelivery is a
# no-op. queue_limit 1 stops long jobs waiting in a worker's prefetch queue from
# being redelivered while they wait; retry must exceed timeout.
# Nodes share one queue when they use the same broker, cluster name and
# SECRET_KEY (django-q signs tasks with it). The Redis broker has no delivery
# receipt, so `retry` only matters for the ORM broker.
STUDIO_REDIS_URL = env_redis_url("STUDIO_REDIS_URL")
Q_CLUSTER = {
    "name": os.environ.get("STUDIO_CLUSTER_NAME", "batch-studio"),
    **({"redis": STUDIO_REDIS_URL} if STUDIO_REDIS_URL else {"orm": "default"}),
    "workers": env_int("STUDIO_WORKERS", 2),
    "timeout": STUDIO_JOB_TIMEOUT_S,
    "retry": STUDIO_JOB_TIMEOUT_S + 600,
    "queue_limit": 1,
    "max_attempts": 1,
    "ack_failures": True,
    "catch_up": False,
    "sync": env_bool("STUDIO_SYNC_TASKS", False),
    "poll": 0.2,
}

# REST API (studio/api): bearer tokens or the browser's session; errors carry
# the services' messages (studio/api/errors.py::exception_handler).
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "studio.api.authentication.BearerTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": [
        "rest_framework.parsers.JSONParser",
        "rest_framework.parsers.MultiPartParser",
    ],
    "DEFAULT_PAGINATION_CLASS": "rest_framework.pagination.PageNumberPagination",
    "PAGE_SIZE": 50,
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "studio.api.errors.exception_handler",
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Batch Studio API",
    "DESCRIPTION": "Models, data, environments, batch endpoints, deployments and"
    " jobs of a workspace. Authenticate with `Authorization: Bearer <token>`"
    " (tokens are made on the studio's /settings/tokens/ page).",
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    "COMPONENT_SPLIT_REQUEST": True,
    # Swagger UI from the drf-spectacular-sidecar package: no CDN.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
}
