"""Django settings for Switchyard, read from environment variables.

Every knob is documented in `.env.example`. Without `DATABASE_URL` the control plane uses an
embedded SQLite file under `var/`; without `REDIS_URL` it expects Redis on 127.0.0.1:6379
(`make run` starts the bundled server and sets `REDIS_URL` for you).
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import dj_database_url

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(os.environ.get("SWITCHYARD_VAR_DIR", BASE_DIR / "var"))


def env_bool(name: str, default: bool = False) -> bool:
    """Read a boolean environment variable (1/true/yes/on)."""
    value = os.environ.get(name)
    if value is None:
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def env_list(name: str, default: str = "") -> list[str]:
    """Read a comma-separated environment variable into a list of non-empty items."""
    return [item.strip() for item in os.environ.get(name, default).split(",") if item.strip()]


DEBUG = env_bool("DEBUG", False)
SECRET_KEY = os.environ.get("SECRET_KEY", "")
if not SECRET_KEY:
    if not DEBUG and env_bool("SWITCHYARD_REQUIRE_SECRET_KEY", False):
        raise RuntimeError("SECRET_KEY must be set in production")
    SECRET_KEY = "insecure-development-key-set-SECRET_KEY-in-production"

ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", "127.0.0.1,localhost,[::1]")
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS")
SWITCHYARD_BASE_URL = os.environ.get("SWITCHYARD_BASE_URL", "http://127.0.0.1:8000").rstrip("/")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "channels",
    "orchestrator",
    "executions",
    "agents",
    "approvals",
]

MIDDLEWARE = [
    "orchestrator.db_unavailable.DatabaseUnavailableMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "orchestrator.unstorable.UnstorableUrlMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "orchestrator.csp.ContentSecurityPolicyMiddleware",
]

ROOT_URLCONF = "orchestrator.urls"
ASGI_APPLICATION = "orchestrator.asgi.application"

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
                "orchestrator.roles.user_actions",
            ],
        },
    },
]


def database_from_env() -> dict:
    """Build the default database from `DATABASE_URL`, tuned per engine."""
    url = os.environ.get("DATABASE_URL") or f"sqlite:///{VAR_DIR / 'switchyard.sqlite3'}"
    config = dj_database_url.parse(url, conn_max_age=int(os.environ.get("DB_CONN_MAX_AGE", "60")))
    config["CONN_HEALTH_CHECKS"] = True
    if config["ENGINE"] == "django.db.backends.sqlite3":
        # Several processes share the file: WAL lets readers run beside the writer, and
        # IMMEDIATE transactions take the write lock up front instead of deadlocking on upgrade.
        config["OPTIONS"] = {
            "transaction_mode": "IMMEDIATE",
            "timeout": 30,
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        }
        config["CONN_MAX_AGE"] = 0
        config.setdefault("TEST", {})["NAME"] = None
    elif config["ENGINE"] == "django.db.backends.postgresql" and env_bool("DB_POOL", True):
        # Django's connections are per thread: a process-wide pool shares a few connections
        # among all request threads (orchestrator/asgi_handler.py) instead of one per thread.
        config["CONN_MAX_AGE"] = 0
        config.setdefault("OPTIONS", {})["pool"] = {
            "min_size": int(os.environ.get("DB_POOL_MIN_SIZE", "2")),
            "max_size": int(os.environ.get("DB_POOL_MAX_SIZE", "16")),
            "timeout": float(os.environ.get("DB_POOL_TIMEOUT", "10")),
        }
    return config


DATABASES = {"default": database_from_env()}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")

# The channel layer waits for messages with 5 s blocking pops; redis-py 8 gives every socket a
# 5 s read timeout by default, which races those pops and drops idle live connections. Reads
# get a timeout well above the pop's.
CHANNEL_LAYER_SOCKET_TIMEOUT_S = 30

# Messages a live channel may hold before the layer drops them: per web process in Redis
# (a group message to a process's watchers is one entry) and per watcher in the process.
# channels_redis's default of 100 lost messages of a 120-event run to a crowd of 200 watchers
# whose process fell two seconds behind; entries expire after a minute whatever the number.
SWITCHYARD_LIVE_CAPACITY = int(os.environ.get("SWITCHYARD_LIVE_CAPACITY", "2000"))
CHANNEL_LAYERS = {
    "default": {
        "BACKEND": "channels_redis.core.RedisChannelLayer",
        "CONFIG": {
            "hosts": [
                {
                    "address": REDIS_URL,
                    "socket_timeout": CHANNEL_LAYER_SOCKET_TIMEOUT_S,
                    "socket_connect_timeout": 5,
                }
            ],
            "capacity": SWITCHYARD_LIVE_CAPACITY,
        },
    }
}

# Celery: JSON only (pickle disabled everywhere), no result backend: PostgreSQL holds the truth.
CELERY_BROKER_URL = os.environ.get("CELERY_BROKER_URL", REDIS_URL)
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_DEFAULT_QUEUE = "control"
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_ACKS_LATE = True
CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": 3600}
CELERY_TIMEZONE = "UTC"

# The broker URL handed to agents at registration (they may sit behind another address).
SWITCHYARD_AGENT_BROKER_URL = os.environ.get("SWITCHYARD_AGENT_BROKER_URL", CELERY_BROKER_URL)
# Send live execution events from a background thread per process (off the request path).
SWITCHYARD_LIVE_IN_BACKGROUND = env_bool("SWITCHYARD_LIVE_IN_BACKGROUND", True)
SWITCHYARD_HEARTBEAT_INTERVAL = float(os.environ.get("SWITCHYARD_HEARTBEAT_INTERVAL", "10"))
SWITCHYARD_DEFAULT_POOL = os.environ.get("SWITCHYARD_DEFAULT_POOL", "default")
# Jobs still `pending` this long after commit were never published (crash between commit and
# publish): the sweeper publishes them. Jobs `dispatched` but unclaimed this long are re-published
# (e.g. the broker lost its queue); the claim protocol drops the duplicates.
SWITCHYARD_REPUBLISH_PENDING_AFTER = float(
    os.environ.get("SWITCHYARD_REPUBLISH_PENDING_AFTER", "3")
)
SWITCHYARD_REPUBLISH_DISPATCHED_AFTER = float(
    os.environ.get("SWITCHYARD_REPUBLISH_DISPATCHED_AFTER", "60")
)
SWITCHYARD_SWEEP_INTERVAL = float(os.environ.get("SWITCHYARD_SWEEP_INTERVAL", "2"))
# Grace on top of a job's own timeout before the control plane marks it `timeout` itself.
SWITCHYARD_JOB_TIMEOUT_GRACE = float(os.environ.get("SWITCHYARD_JOB_TIMEOUT_GRACE", "30"))
# Live output kept per job (chunks); past it, a truncation marker. The final report's
# stdout/stderr keep only their tail (SWITCHYARD_REPORT_TAIL_BYTES each).
SWITCHYARD_MAX_OUTPUT_BYTES = int(os.environ.get("SWITCHYARD_MAX_OUTPUT_BYTES", str(10 << 20)))
SWITCHYARD_REPORT_TAIL_BYTES = int(os.environ.get("SWITCHYARD_REPORT_TAIL_BYTES", str(1 << 20)))
# Fernet keys for secrets at rest, newest first (rotation); default: derived from SECRET_KEY.
SWITCHYARD_SECRETS_KEYS = env_list("SWITCHYARD_SECRETS_KEYS")
# Private/loopback networks `http` and `notify` actions may reach (CIDRs or host names).
SWITCHYARD_NETWORK_ALLOW = env_list("SWITCHYARD_NETWORK_ALLOW")
# Webhooks (`POST /hooks/{key}`): bodies above this size get 413; a sent X-Switchyard-Timestamp
# must be within this many seconds of the server's clock (replay protection).
SWITCHYARD_WEBHOOK_MAX_BODY_BYTES = int(
    os.environ.get("SWITCHYARD_WEBHOOK_MAX_BODY_BYTES", str(1 << 20))
)
SWITCHYARD_WEBHOOK_REPLAY_WINDOW = float(os.environ.get("SWITCHYARD_WEBHOOK_REPLAY_WINDOW", "300"))

CELERY_IMPORTS = ["orchestrator.retention", "executions.rollups"]
CELERY_WORKER_HIJACK_ROOT_LOGGER = False

CELERY_BEAT_SCHEDULE = {
    "sweep-jobs": {
        "task": "executions.tasks.sweep_jobs",
        "schedule": SWITCHYARD_SWEEP_INTERVAL,
        "options": {"expires": SWITCHYARD_SWEEP_INTERVAL * 2},
    },
    "purge-executions": {
        "task": "orchestrator.retention.purge",
        "schedule": 3600.0,
        "options": {"expires": 600.0},
    },
    "fold-rollups": {
        "task": "executions.rollups.fold_rollups",
        "schedule": 60.0,
        "options": {"expires": 120.0},
    },
    "fire-cron-triggers": {
        "task": "orchestrator.tasks.fire_cron_triggers",
        "schedule": 5.0,
        "options": {"expires": 10.0},
    },
}

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "orchestrator.authentication.ApiTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["orchestrator.roles.RoleRequired"],
    "DEFAULT_PARSER_CLASSES": ["orchestrator.parsers.StorableJSONParser"],
    "DEFAULT_RENDERER_CLASSES": [
        "rest_framework.renderers.JSONRenderer",
        "rest_framework.renderers.BrowsableAPIRenderer",
    ],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "orchestrator.api_errors.exception_handler",
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
}

SPECTACULAR_SETTINGS = {
    "TITLE": "Switchyard API",
    "DESCRIPTION": (
        "Workflows, executions, agents and approvals.\n\n"
        "Users authenticate with `Authorization: Token <key>` (or a session); agents use "
        "`Authorization: Bearer <agent token>` on `/api/agent/v1/`. Every 4xx response has the "
        "body `{detail, errors: [{path, message}]}`."
    ),
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    # Separate request and response components, so read-only fields are not request fields.
    "COMPONENT_SPLIT_REQUEST": True,
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "orchestrator.schema.require_model_response_fields",
        "orchestrator.schema.document_role_rules",
        "orchestrator.schema.document_unstorable_url_400",
    ],
    "ENUM_NAME_OVERRIDES": {
        "ExecutionStatusEnum": "executions.models.ExecutionStatus",
        "JobStatusEnum": "executions.models.JobStatus",
        "EventLevelEnum": "executions.models.EventLevel",
        "ApprovalStatusEnum": "approvals.models.ApprovalStatus",
        "ReportedStatusEnum": "agents.serializers.REPORTED_STATUSES",
    },
    "TAGS": [
        {"name": "workflows", "description": "Workflow definitions, versions and runs."},
        {"name": "executions", "description": "Runs: status, log, job output, cancel."},
        {"name": "approvals", "description": "Approval gates waiting for a decision."},
        {"name": "secrets", "description": "Write-only secret values with their metadata."},
        {"name": "agents", "description": "Agent registry, pools and enrollment tokens."},
        {"name": "agent-protocol", "description": "Called by agents (Bearer agent token)."},
    ],
    # Swagger UI and Redoc from drf-spectacular-sidecar: the docs work without internet.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
}

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

LOGIN_URL = "/login/"
LOGIN_REDIRECT_URL = "/executions/"

STATIC_URL = "static/"
# Front-end libraries come from npm (`npm ci` in `make bootstrap`), served from node_modules.
# Only the distributables the UI loads are exposed, under /static/vendor/<name>/.
STATICFILES_DIRS = [
    ("vendor/dagre", BASE_DIR / "node_modules" / "@dagrejs" / "dagre" / "dist"),
    ("vendor/chartjs", BASE_DIR / "node_modules" / "chart.js" / "dist"),
]
STATIC_ROOT = Path(os.environ.get("STATIC_ROOT", VAR_DIR / "static"))
# WhiteNoise serves static files from the ASGI app itself; finders avoid a collectstatic step,
# so STATIC_ROOT only exists once `collectstatic` ran (production images do).
WHITENOISE_USE_FINDERS = True
warnings.filterwarnings("ignore", message="No directory at")

SESSION_COOKIE_SECURE = env_bool("SESSION_COOKIE_SECURE", not DEBUG)
CSRF_COOKIE_SECURE = env_bool("CSRF_COOKIE_SECURE", not DEBUG)
# HTTPS in production (`manage.py check --deploy` is clean with these set, see docs/security.md).
# Off by default: TLS usually ends at a proxy, and HSTS is hard to undo.
SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", False)
# Probes, the scrape and in-cluster agents talk plain HTTP to the web process itself.
SECURE_REDIRECT_EXEMPT = env_list(
    "SECURE_REDIRECT_EXEMPT", r"^healthz$,^readyz$,^metrics$,^api/agent/v1/"
)
SECURE_HSTS_SECONDS = int(os.environ.get("SECURE_HSTS_SECONDS", "0"))
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", False)
SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", False)
if os.environ.get("SECURE_PROXY_SSL_HEADER"):
    SECURE_PROXY_SSL_HEADER = (os.environ["SECURE_PROXY_SSL_HEADER"], "https")

# E-mail (approval notifications). Without EMAIL_HOST, mail goes to the console in DEBUG.
EMAIL_HOST = os.environ.get("EMAIL_HOST", "")
EMAIL_PORT = int(os.environ.get("EMAIL_PORT", "25"))
EMAIL_HOST_USER = os.environ.get("EMAIL_HOST_USER", "")
EMAIL_HOST_PASSWORD = os.environ.get("EMAIL_HOST_PASSWORD", "")
EMAIL_USE_TLS = env_bool("EMAIL_USE_TLS", False)
EMAIL_USE_SSL = env_bool("EMAIL_USE_SSL", False)
EMAIL_TIMEOUT = 10
DEFAULT_FROM_EMAIL = os.environ.get("DEFAULT_FROM_EMAIL", "switchyard@localhost")
EMAIL_BACKEND = os.environ.get(
    "EMAIL_BACKEND",
    "django.core.mail.backends.smtp.EmailBackend"
    if EMAIL_HOST
    else "django.core.mail.backends.console.EmailBackend",
)
# Global chat incoming webhook (Slack-compatible) for approval requests; nodes may set their own.
SWITCHYARD_APPROVAL_CHAT_WEBHOOK = os.environ.get("SWITCHYARD_APPROVAL_CHAT_WEBHOOK", "")
# Lifetime of decision links when the request has no timeout.
SWITCHYARD_APPROVAL_LINK_TTL = float(os.environ.get("SWITCHYARD_APPROVAL_LINK_TTL", str(7 * 86400)))

# LOG_FORMAT=json: one JSON object per line (time, level, logger, message, execution_id, job_id,
# ...); text (default): `time LEVEL logger: message [execution_id=... job_id=...]`.
LOG_FORMAT = os.environ.get("LOG_FORMAT", "text").strip().lower()
if LOG_FORMAT not in {"text", "json"}:
    raise RuntimeError(f"LOG_FORMAT must be 'text' or 'json', not {LOG_FORMAT!r}")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "text": {"()": "orchestrator.logging.TextFormatter"},
        "json": {"()": "orchestrator.logging.JsonFormatter"},
    },
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": LOG_FORMAT}},
    "root": {"handlers": ["console"], "level": os.environ.get("LOG_LEVEL", "INFO")},
    "loggers": {"django.db.backends": {"level": "WARNING"}},
}

# Operations. `/metrics` requires `Authorization: Bearer <token>` when set (open when empty).
SWITCHYARD_METRICS_TOKEN = os.environ.get("SWITCHYARD_METRICS_TOKEN", "")

# Optional LLM failure analysis through an OpenAI-compatible `/v1/chat/completions` endpoint;
# off while SWITCHYARD_LLM_BASE_URL is unset (the rule-based diagnosis always works).
SWITCHYARD_LLM_BASE_URL = os.environ.get("SWITCHYARD_LLM_BASE_URL", "").rstrip("/")
SWITCHYARD_LLM_API_KEY = os.environ.get("SWITCHYARD_LLM_API_KEY", "")
SWITCHYARD_LLM_MODEL = os.environ.get("SWITCHYARD_LLM_MODEL", "gpt-4o-mini")
SWITCHYARD_LLM_TIMEOUT = float(os.environ.get("SWITCHYARD_LLM_TIMEOUT", "60"))
# Retention of finished executions (0 = no limit of that kind; both 0: keep everything): purge
# those finished more than DAYS ago that are not among the COUNT newest of their workflow.
SWITCHYARD_RETENTION_DAYS = int(os.environ.get("SWITCHYARD_RETENTION_DAYS", "0"))
SWITCHYARD_RETENTION_COUNT = int(os.environ.get("SWITCHYARD_RETENTION_COUNT", "0"))
