"""Settings for chatplatform, read from the environment in this one place.

Defaults give a self-contained process: SQLite and the in-memory channel layer.
``DATABASE_URL`` switches to PostgreSQL and ``REDIS_URL`` to channels-redis.
"""

import os
from datetime import timedelta
from pathlib import Path
from typing import Any

import dj_database_url
from csp.constants import NONE, SELF
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent


def env_str(name: str, default: str) -> str:
    """Return an environment variable as a string."""
    return os.environ.get(name, default)


def env_bool(name: str, default: bool) -> bool:
    """Return an environment variable as a boolean (1/true/yes/on)."""
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    value = raw.strip().lower()
    if value in {"1", "true", "yes", "on"}:
        return True
    if value in {"0", "false", "no", "off"}:
        return False
    raise ImproperlyConfigured(f"{name}={raw!r} is not a boolean (use 1/0, true/false)")


def env_int(name: str, default: int) -> int:
    """Return an environment variable as an integer."""
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError as exc:
        raise ImproperlyConfigured(f"{name}={raw!r} is not an integer") from exc


def env_float(name: str, default: float) -> float:
    """Return an environment variable as a float."""
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return float(raw)
    except ValueError as exc:
        raise ImproperlyConfigured(f"{name}={raw!r} is not a number") from exc


def env_list(name: str, default: list[str]) -> list[str]:
    """Return a comma-separated environment variable as a list."""
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    return [item.strip() for item in raw.split(",") if item.strip()]


DEBUG = env_bool("DEBUG", False)
SECRET_KEY = env_str("SECRET_KEY", "")
if not SECRET_KEY:
    # A development key; production sets SECRET_KEY (docs/operations.md). Its
    # "django-insecure-" prefix makes `check --deploy` flag it (security.W009).
    SECRET_KEY = "django-insecure-0b5f6c1e8a2d4f7e9c3b1a0d5e6f7a8b9c0d1e2f3a4b5c6d"

ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["127.0.0.1", "localhost", "[::1]"])
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "channels",
    "csp",
    "axes",
    "agents",
    "realtime",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "csp.middleware.CSPMiddleware",
    # Last, as django-axes asks: it turns a locked-out sign-in into its 429 page.
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "chatplatform.urls"
ASGI_APPLICATION = "chatplatform.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "chatplatform" / "templates"],
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

# 0: let SQLite checkpoint its log itself, inside commits.
SQLITE_CHECKPOINT_SECONDS = env_float("SQLITE_CHECKPOINT_SECONDS", 1.0)


def sqlite_database(path: str) -> dict[str, Any]:
    """Return the one SQLite configuration, however SQLite was chosen."""
    return {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": path,
        # Keep the connection: reopening it (and its PRAGMAs) per event costs ~8 ms.
        "CONN_MAX_AGE": None,
        "OPTIONS": {
            # Writers queue instead of failing with "database is locked", and
            # WAL lets readers (replay) run while the emitter writes. Under daphne
            # the log is checkpointed every SQLITE_CHECKPOINT_SECONDS by the
            # process (chatplatform/lifecycle.py), not inside the event writer's
            # commits, where its fsync stalled live events by 10+ ms.
            "timeout": 30,
            "transaction_mode": "IMMEDIATE",
            "init_command": (
                "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; "
                f"PRAGMA wal_autocheckpoint={0 if SQLITE_CHECKPOINT_SECONDS else 1000};"
            ),
        },
    }


DATABASE_URL = env_str("DATABASE_URL", "")
_database = dj_database_url.parse(
    DATABASE_URL or "sqlite:///" + env_str("SQLITE_PATH", str(BASE_DIR / "db.sqlite3")),
    conn_max_age=env_int("DATABASE_CONN_MAX_AGE", 600),
    conn_health_checks=True,
)
if _database["ENGINE"] == "django.db.backends.sqlite3":
    # SQLITE_PATH or DATABASE_URL=sqlite:///path: the same settings either way.
    SQLITE_PATH = str(_database["NAME"])
    DATABASES = {"default": sqlite_database(SQLITE_PATH)}
else:
    DATABASES = {"default": dict(_database)}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

REDIS_URL = env_str("REDIS_URL", "")
CHANNEL_LAYER_PREFIX = env_str("CHANNEL_LAYER_PREFIX", "chatplatform")
# The in-memory layer and RedisChannelLayer drop group messages silently once a
# channel's queue holds `capacity` messages (default 100); ours must never drop.
CHANNEL_CAPACITY = env_int("CHANNEL_CAPACITY", 100_000)
if REDIS_URL:
    # Pub/sub layer: one PUBLISH per group message whatever the number of tabs,
    # no per-channel capacity to overflow, and one connection per process for
    # publishing, so a burst of connects never exhausts redis-py's pool.
    # See docs/operations.md for the measurements behind this choice.
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "realtime.layers.PipelinedPubSubChannelLayer",
            "CONFIG": {
                "hosts": [
                    {
                        "address": REDIS_URL,
                        "max_connections": env_int("REDIS_MAX_CONNECTIONS", 1000),
                        "socket_connect_timeout": 5,
                        "health_check_interval": 15,
                        "retry_on_timeout": True,
                    }
                ],
                "prefix": CHANNEL_LAYER_PREFIX,
            },
        }
    }
else:
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels.layers.InMemoryChannelLayer",
            "CONFIG": {
                "capacity": CHANNEL_CAPACITY,
                # Group membership must not silently lapse for long-lived tabs.
                "group_expiry": 10 * 365 * 24 * 3600,
            },
        }
    }

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

# Sign-in throttling (django-axes): failures are counted in the database, so every
# process shares them; after AXES_FAILURE_LIMIT failures for a username, or from
# one address, the sign-in (chat page and admin alike) is refused for
# AXES_COOLOFF_MINUTES, even with the right password; a success resets the count.
# Behind a proxy, set AXES_IPWARE_PROXY_COUNT so the client's address is used.
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
AXES_FAILURE_LIMIT = env_int("AXES_FAILURE_LIMIT", 5)
AXES_COOLOFF_TIME = timedelta(minutes=env_float("AXES_COOLOFF_MINUTES", 15.0))
AXES_LOCKOUT_PARAMETERS = ["username", "ip_address"]
AXES_IPWARE_PROXY_COUNT = env_int("AXES_IPWARE_PROXY_COUNT", 0) or None
AXES_RESET_ON_SUCCESS = True
AXES_LOCKOUT_TEMPLATE = "registration/locked_out.html"
AXES_VERBOSE = False

# A strict Content-Security-Policy on every response (django-csp): scripts,
# styles and connections from this origin only, nothing inline, no framing.
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": [SELF],
        "script-src": [SELF],
        "style-src": [SELF],
        "img-src": [SELF, "data:"],
        "font-src": [SELF],
        "connect-src": [SELF],
        "object-src": [NONE],
        "base-uri": [NONE],
        "form-action": [SELF],
        "frame-ancestors": [NONE],
    }
}

LOGIN_URL = "/accounts/login/"
LOGIN_REDIRECT_URL = "/"
LOGOUT_REDIRECT_URL = "/accounts/login/"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "chatplatform" / "static"]
STATIC_ROOT = env_str("STATIC_ROOT", str(BASE_DIR / "staticfiles"))
# whitenoise serves static files from STATIC_ROOT (filled by `collectstatic`, which
# `make run` runs) with hashed names; with STATIC_FROM_FINDERS=1 it reads the app
# folders directly instead (development and tests, no collectstatic needed).
STATIC_FROM_FINDERS = env_bool("STATIC_FROM_FINDERS", DEBUG)
WHITENOISE_USE_FINDERS = STATIC_FROM_FINDERS
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"
        if STATIC_FROM_FINDERS
        else "whitenoise.storage.CompressedManifestStaticFilesStorage"
    },
}

# Behind a TLS-terminating proxy that sets X-Forwarded-Proto (docs/deploy/).
if env_bool("USE_X_FORWARDED_PROTO", False):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")

# HTTPS hardening for production (docs/security.md); all off by default for `make run`.
SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", False)
SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$", r"^metrics$"]
SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", False)
SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", False)
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"

SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SECURE = env_bool("SESSION_COOKIE_SECURE", False)
CSRF_COOKIE_SECURE = SESSION_COOKIE_SECURE

# Agent runtime.
AGENT_DEFAULT = env_str("AGENT_DEFAULT", "triage")
AGENT_MAX_CONCURRENT_RUNS = env_int("AGENT_MAX_CONCURRENT_RUNS", 3)
AGENT_TOOL_TIMEOUT_SECONDS = env_float("AGENT_TOOL_TIMEOUT_SECONDS", 30.0)
AGENT_RUN_TIMEOUT_SECONDS = env_float("AGENT_RUN_TIMEOUT_SECONDS", 600.0)
# Tools are found by name; each names its implementation by a dotted path.
AGENT_TOOLS = {
    "calculator": "agents.runtime.tools_builtin.CalculatorTool",
    "clock": "agents.runtime.tools_builtin.ClockTool",
    "kb_search": "agents.runtime.tools_builtin.KnowledgeSearchTool",
}

# Process housekeeping (see docs/operations.md).
PROCESS_LIFECYCLE_AUTOSTART = env_bool("PROCESS_LIFECYCLE_AUTOSTART", True)
PROCESS_HEARTBEAT_SECONDS = env_float("PROCESS_HEARTBEAT_SECONDS", 5.0)
PROCESS_STALE_SECONDS = env_float("PROCESS_STALE_SECONDS", 30.0)
PROCESS_SWEEP_SECONDS = env_float("PROCESS_SWEEP_SECONDS", 15.0)
AGENT_SHUTDOWN_GRACE_SECONDS = env_float("AGENT_SHUTDOWN_GRACE_SECONDS", 10.0)
AGENT_INPUT_TIMEOUT_SECONDS = env_float("AGENT_INPUT_TIMEOUT_SECONDS", 300.0)
AGUI_HEARTBEAT_SECONDS = env_float("AGUI_HEARTBEAT_SECONDS", 15.0)
AGUI_MAX_BODY_BYTES = env_int("AGUI_MAX_BODY_BYTES", 1024 * 1024)
SESSION_IDLE_TTL_SECONDS = env_float("SESSION_IDLE_TTL_SECONDS", 1800.0)

# The OpenAI-compatible `llm` agent (docs/llm.md); an Agent row's config may override
# base_url, model, system_prompt and api_key_env (the NAME of a variable holding the key).
LLM_BASE_URL = env_str("LLM_BASE_URL", "https://api.openai.com/v1")
LLM_API_KEY = env_str("LLM_API_KEY", "")
LLM_MODEL = env_str("LLM_MODEL", "gpt-4o-mini")
LLM_TIMEOUT_SECONDS = env_float("LLM_TIMEOUT_SECONDS", 60.0)
LLM_MAX_TOOL_ROUNDS = env_int("LLM_MAX_TOOL_ROUNDS", 4)
LLM_MAX_RETRIES = env_int("LLM_MAX_RETRIES", 2)
LLM_CONTEXT_CHARS = env_int("LLM_CONTEXT_CHARS", 12000)
LLM_STREAM_FLUSH_SECONDS = env_float("LLM_STREAM_FLUSH_SECONDS", 0.05)

# WebSocket protocol limits (see docs/protocol.md).
WS_MAX_FRAME_BYTES = env_int("WS_MAX_FRAME_BYTES", 64 * 1024)
WS_MAX_MESSAGE_CHARS = env_int("WS_MAX_MESSAGE_CHARS", 8000)
WS_START_RATE_PER_SECOND = env_float("WS_START_RATE_PER_SECOND", 2.0)
WS_START_RATE_BURST = env_int("WS_START_RATE_BURST", 10)
WS_MAX_CONNECTIONS_PER_USER = env_int("WS_MAX_CONNECTIONS_PER_USER", 20)
WS_MAX_OUTBOUND_BYTES = env_int("WS_MAX_OUTBOUND_BYTES", 4 * 1024 * 1024)

# Live delivery: the event writer's batching, and how often the GIL changes hands
# between its thread and the event loop (Python's default is 0.005).
EVENT_WRITER_MAX_BATCH = env_int("EVENT_WRITER_MAX_BATCH", 1000)
EVENT_WRITER_MAX_QUEUE = env_int("EVENT_WRITER_MAX_QUEUE", 10_000)
# SQLite: small batches stored on the event loop's thread when the write lock is free
# (agents/events/inline.py); off, every batch goes through the writer thread.
EVENT_WRITER_INLINE = env_bool("EVENT_WRITER_INLINE", True)
GIL_SWITCH_INTERVAL_SECONDS = env_float("GIL_SWITCH_INTERVAL_SECONDS", 0.0005)
# gc.freeze() once started (chatplatform/asgi.py): full collections skip what starting made.
GC_FREEZE_AT_START = env_bool("GC_FREEZE_AT_START", True)

API_TOKEN_DEFAULT_DAYS = env_int("API_TOKEN_DEFAULT_DAYS", 90)

# Operations (see docs/operations.md).
READY_TIMEOUT_SECONDS = env_float("READY_TIMEOUT_SECONDS", 2.0)
METRICS_ALLOWED_IPS = env_list("METRICS_ALLOWED_IPS", ["127.0.0.1", "::1"])
METRICS_TOKEN = env_str("METRICS_TOKEN", "")

LOG_LEVEL = env_str("LOG_LEVEL", "INFO")
LOG_FORMAT = env_str("LOG_FORMAT", "plain" if DEBUG else "json")
if LOG_FORMAT not in {"plain", "json"}:
    raise ImproperlyConfigured(f"LOG_FORMAT={LOG_FORMAT!r} must be plain or json")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"},
        "json": {"()": "chatplatform.logs.JsonFormatter"},
    },
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": LOG_FORMAT}},
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {
        "daphne": {"level": "WARNING"},
        "django.channels.server": {"level": "WARNING"},
    },
}
