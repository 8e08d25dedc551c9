"""The one settings module: every value comes from the environment.

Development gets safe embedded defaults (SQLite in WAL mode, a filesystem Celery
broker, a local-memory cache).  ``CONTROLPLANE_ENV=production`` turns on
production behaviour and makes missing secrets fail loudly.  Every secret may be
given as ``NAME_FILE`` (a path whose content is the value) instead of ``NAME``.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import environ
from django.core.exceptions import ImproperlyConfigured

from controlplane.logs import build_logging_config

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.FileAwareEnv()

CONTROLPLANE_ENV = env.str("CONTROLPLANE_ENV", default="development")
PRODUCTION = CONTROLPLANE_ENV == "production"
TESTING = env.bool("CONTROLPLANE_TESTING", default=False)

# Where the embedded defaults keep their state (SQLite file, broker folders).
DATA_DIR = Path(env.str("CONTROLPLANE_DATA_DIR", default=str(BASE_DIR / ".controlplane")))

if PRODUCTION:
    if not env.str("SECRET_KEY", default=""):
        raise ImproperlyConfigured(
            "SECRET_KEY (or SECRET_KEY_FILE) must be set when CONTROLPLANE_ENV=production"
        )
    SECRET_KEY = env.str("SECRET_KEY")
else:
    SECRET_KEY = env.str("SECRET_KEY", default="dev-insecure-" + "x" * 50)

DEBUG = env.bool("DEBUG", default=not PRODUCTION)
ALLOWED_HOSTS: list[str] = env.list(
    "ALLOWED_HOSTS", default=[] if PRODUCTION else ["localhost", "127.0.0.1", "[::1]", "testserver"]
)
if PRODUCTION and not ALLOWED_HOSTS:
    raise ImproperlyConfigured("ALLOWED_HOSTS must be set when CONTROLPLANE_ENV=production")
CSRF_TRUSTED_ORIGINS: list[str] = env.list("CSRF_TRUSTED_ORIGINS", default=[])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "corsheaders",
    "rest_framework",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_celery_beat",
    "django_prometheus",
    "controlplane",
    "deployments",
    "incidents",
    "backups",
]

MIDDLEWARE = [
    "django_prometheus.middleware.PrometheusBeforeMiddleware",
    "controlplane.middleware.RequestContextMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "controlplane.middleware.SecurityHeadersMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "corsheaders.middleware.CorsMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_prometheus.middleware.PrometheusAfterMiddleware",
]

ROOT_URLCONF = "controlplane.urls"
WSGI_APPLICATION = "controlplane.wsgi.application"
ASGI_APPLICATION = "controlplane.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "controlplane" / "templates"],
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

# --- Database -------------------------------------------------------------------
# PostgreSQL when DATABASE_URL is set; otherwise an embedded SQLite file in WAL
# mode so the web process, the worker and beat can share it.
if env.str("DATABASE_URL", default=""):
    DATABASES = {"default": env.db("DATABASE_URL")}
    DATABASES["default"].setdefault("CONN_MAX_AGE", env.int("DB_CONN_MAX_AGE", default=60))
    DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
else:
    DATA_DIR.mkdir(parents=True, exist_ok=True)
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": str(DATA_DIR / "controlplane.sqlite3"),
            "OPTIONS": {
                "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
                "transaction_mode": "IMMEDIATE",
                "timeout": 20,
            },
        }
    }
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Cache ----------------------------------------------------------------------
REDIS_URL = env.str("REDIS_URL", default="")
if env.str("CACHE_URL", default="") or REDIS_URL:
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": env.str("CACHE_URL", default=REDIS_URL),
            "KEY_PREFIX": env.str("CACHE_KEY_PREFIX", default="cp"),
            "TIMEOUT": 300,
        }
    }
else:
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.filebased.FileBasedCache",
            "LOCATION": str(DATA_DIR / "cache"),
        }
    }

# --- Auth -----------------------------------------------------------------------
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "admin:login"
AUTHENTICATION_BACKENDS = ["controlplane.auth_backends.LockoutModelBackend"]
# Brute-force protection: this many failed logins per (username, IP) lock it for the window.
LOGIN_MAX_FAILURES = env.int("LOGIN_MAX_FAILURES", default=5)
LOGIN_LOCKOUT_SECONDS = env.int("LOGIN_LOCKOUT_SECONDS", default=900)
API_TOKEN_DEFAULT_TTL_DAYS = env.int("API_TOKEN_DEFAULT_TTL_DAYS", default=365)

LANGUAGE_CODE = "en-us"
TIME_ZONE = env.str("TIME_ZONE", default="UTC")
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = Path(env.str("STATIC_ROOT", default=str(DATA_DIR / "static")))
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": (
            "whitenoise.storage.CompressedManifestStaticFilesStorage"
            if PRODUCTION
            else "django.contrib.staticfiles.storage.StaticFilesStorage"
        )
    },
}

# --- REST API -------------------------------------------------------------------
API_THROTTLE_RATE = env.str("API_THROTTLE_RATE", default="100/min")
API_MUTATION_THROTTLE_RATE = env.str("API_MUTATION_THROTTLE_RATE", default="60/min")
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "controlplane.authentication.ApiTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["controlplane.permissions.RolePermission"],
    "DEFAULT_THROTTLE_CLASSES": [
        "controlplane.api.throttling.UserRateThrottle",
        "controlplane.api.throttling.MutationRateThrottle",
    ],
    "DEFAULT_THROTTLE_RATES": {
        "user": API_THROTTLE_RATE,
        "mutation": API_MUTATION_THROTTLE_RATE,
    },
    "DEFAULT_PAGINATION_CLASS": "controlplane.api.pagination.PageNumberPagination",
    "PAGE_SIZE": 50,
    "DEFAULT_FILTER_BACKENDS": [
        "django_filters.rest_framework.DjangoFilterBackend",
        "rest_framework.filters.OrderingFilter",
    ],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "controlplane.api.errors.exception_handler",
    "DEFAULT_RENDERER_CLASSES": [
        "rest_framework.renderers.JSONRenderer",
        "rest_framework.renderers.BrowsableAPIRenderer",
    ],
    "TEST_REQUEST_DEFAULT_FORMAT": "json",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Control plane API",
    "DESCRIPTION": "Deployments, incidents and backups for production services.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "COMPONENT_SPLIT_REQUEST": True,
    "SCHEMA_PATH_PREFIX": r"/api/v1",
    "ENUM_NAME_OVERRIDES": {
        "DeploymentKindEnum": "deployments.models.Deployment.Kind",
        "DeploymentEventKindEnum": "deployments.models.DeploymentEvent.Kind",
    },
    # Swagger UI served from our own static files: works air-gapped, no CDN in the CSP.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "controlplane.api.schema.add_error_responses",
    ],
}

CORS_ALLOWED_ORIGINS: list[str] = env.list("ALLOWED_ORIGINS", default=[])
CORS_ALLOW_CREDENTIALS = True
CORS_PREFLIGHT_MAX_AGE = 86400

# --- Security -------------------------------------------------------------------
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
CONTENT_SECURITY_POLICY = env.str(
    "CONTENT_SECURITY_POLICY",
    default=(
        "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; "
        "script-src 'self' 'unsafe-inline'; connect-src 'self'; frame-ancestors 'none'; "
        "base-uri 'self'; form-action 'self'"
    ),
)
SESSION_COOKIE_HTTPONLY = True
if PRODUCTION:
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=31536000)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = True
    SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=True)
    # Health and metrics are scraped over plain HTTP inside the cluster.
    SECURE_REDIRECT_EXEMPT = [r"^health", r"^metrics$"]
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")

# --- Celery ---------------------------------------------------------------------
CELERY_BROKER_URL = env.str("CELERY_BROKER_URL", default="filesystem://")
if CELERY_BROKER_URL.startswith("filesystem://"):
    _broker_dir = DATA_DIR / "broker"
    for _sub in ("queue", "processed"):
        (_broker_dir / _sub).mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_TRANSPORT_OPTIONS: dict[str, object] = {
        "data_folder_in": str(_broker_dir / "queue"),
        "data_folder_out": str(_broker_dir / "queue"),
        "processed_folder": str(_broker_dir / "processed"),
        "store_processed": False,
    }
else:
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        # acks_late tasks are redelivered after this when a worker dies without acking.
        "visibility_timeout": env.int("CELERY_VISIBILITY_TIMEOUT", default=3600),
    }
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_RESULT_BACKEND = None
CELERY_TASK_IGNORE_RESULT = True
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_TIME_LIMIT = env.int("CELERY_TASK_TIME_LIMIT", default=3 * 3600)
CELERY_TASK_SOFT_TIME_LIMIT = env.int("CELERY_TASK_SOFT_TIME_LIMIT", default=3 * 3600 - 60)
CELERY_TASK_DEFAULT_QUEUE = env.str("CELERY_TASK_DEFAULT_QUEUE", default="controlplane")
CELERY_BEAT_SCHEDULER = "django_celery_beat.schedulers:DatabaseScheduler"
CELERY_TIMEZONE = TIME_ZONE
CELERY_TASK_ALWAYS_EAGER = env.bool("CELERY_TASK_ALWAYS_EAGER", default=False)
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
# Send-time failures (broker down) must not break the request that enqueued.
CELERY_BROKER_CONNECTION_TIMEOUT = env.float("CELERY_BROKER_CONNECTION_TIMEOUT", default=2.0)
CELERY_TASK_PUBLISH_RETRY = True
CELERY_TASK_PUBLISH_RETRY_POLICY = {"max_retries": 2, "interval_start": 0, "interval_step": 0.2}

# --- Health ---------------------------------------------------------------------
# Checks whose failure makes /health answer 503; the others only report.
HEALTH_CRITICAL_CHECKS: list[str] = env.list(
    "HEALTH_CRITICAL_CHECKS", default=["database", "cache", "broker", "disk"]
)
HEALTH_DISK_PATH = env.str("HEALTH_DISK_PATH", default=str(BASE_DIR))
HEALTH_DISK_MAX_PERCENT = env.float("HEALTH_DISK_MAX_PERCENT", default=90.0)
HEALTH_WORKER_MAX_AGE = timedelta(seconds=env.int("HEALTH_WORKER_MAX_AGE_SECONDS", default=90))

# --- Logging --------------------------------------------------------------------
LOG_LEVEL = env.str("LOG_LEVEL", default="INFO").upper()
LOG_FORMAT = env.str("LOG_FORMAT", default="json")
LOGGING = build_logging_config(level=LOG_LEVEL, fmt=LOG_FORMAT)

# --- Sentry ---------------------------------------------------------------------
SENTRY_DSN = env.str("SENTRY_DSN", default="")
if SENTRY_DSN:
    from controlplane.observability import init_sentry

    init_sentry(SENTRY_DSN, environment=CONTROLPLANE_ENV)

# --- Project-specific -----------------------------------------------------------
# Metrics from django-prometheus live per process; ours are read from the DB at scrape.
PROMETHEUS_EXPORT_MIGRATIONS = False

# --- Backups --------------------------------------------------------------------
# Parts of a streamed upload are held in memory: RSS ~ chunk x concurrency. 16 MiB parts
# allow objects up to 160 GiB (S3's 10,000-part limit); raise for bigger databases.
BACKUPS_MULTIPART_CHUNK_BYTES = env.int("BACKUPS_MULTIPART_CHUNK_BYTES", default=16 * 1024 * 1024)
BACKUPS_MULTIPART_THRESHOLD_BYTES = env.int(
    "BACKUPS_MULTIPART_THRESHOLD_BYTES", default=BACKUPS_MULTIPART_CHUNK_BYTES
)
BACKUPS_UPLOAD_CONCURRENCY = env.int("BACKUPS_UPLOAD_CONCURRENCY", default=2)
# Exact per-table row counts in the dump's snapshot (what restore drills compare against).
BACKUPS_COUNT_ROWS = env.bool("BACKUPS_COUNT_ROWS", default=True)
# Server where restore drills create scratch databases (a DSN to a maintenance database);
# empty = the control plane's own PostgreSQL server.
BACKUPS_SCRATCH_DSN = env.str("BACKUPS_SCRATCH_DSN", default="")
SPECTACULAR_SETTINGS["ENUM_NAME_OVERRIDES"].update(  # type: ignore[attr-defined]
    {
        "BackupStatusEnum": "backups.models.Backup.Status",
        "BackupCheckEnum": "backups.models.Backup.Check",
        "VerificationStatusEnum": "backups.models.Verification.Status",
        "RestoreStatusEnum": "backups.models.Restore.Status",
    }
)

# --- Incidents ------------------------------------------------------------------
# Notification endpoints and keys come only from the environment (never the API or admin).
SLACK_WEBHOOK_URL = env.str("SLACK_WEBHOOK_URL", default="")
PAGERDUTY_ROUTING_KEY = env.str("PAGERDUTY_ROUTING_KEY", default="")
PAGERDUTY_EVENTS_URL = env.str("PAGERDUTY_EVENTS_URL", default="https://events.pagerduty.com/v2/enqueue")
INCIDENT_WEBHOOK_URL = env.str("INCIDENT_WEBHOOK_URL", default="")
INCIDENT_WEBHOOK_SECRET = env.str("INCIDENT_WEBHOOK_SECRET", default="")
NOTIFICATION_TIMEOUT_SECONDS = env.float("NOTIFICATION_TIMEOUT_SECONDS", default=10.0)
NOTIFICATION_MAX_ATTEMPTS = env.int("NOTIFICATION_MAX_ATTEMPTS", default=8)
NOTIFICATION_BACKOFF_SECONDS = env.float("NOTIFICATION_BACKOFF_SECONDS", default=5.0)
NOTIFICATION_BACKOFF_MAX_SECONDS = env.float("NOTIFICATION_BACKOFF_MAX_SECONDS", default=3600.0)
# Alertmanager authenticates with this static bearer token (or an operator's API token).
ALERTMANAGER_TOKEN = env.str("ALERTMANAGER_TOKEN", default="")
# Links in notifications point here (e.g. https://ops.example.com).
CONTROLPLANE_PUBLIC_URL = env.str("CONTROLPLANE_PUBLIC_URL", default="")
if INCIDENT_WEBHOOK_URL and not INCIDENT_WEBHOOK_SECRET:
    raise ImproperlyConfigured("INCIDENT_WEBHOOK_URL needs INCIDENT_WEBHOOK_SECRET (deliveries are signed)")
SPECTACULAR_SETTINGS["ENUM_NAME_OVERRIDES"].update(  # type: ignore[attr-defined]
    {
        "IncidentStatusEnum": "incidents.models.Incident.Status",
        "PostMortemStatusEnum": "incidents.models.PostMortem.Status",
        "ActionItemStatusEnum": "incidents.models.ActionItem.Status",
        "AlertStatusEnum": "incidents.models.Alert.Status",
        "NotificationStatusEnum": "incidents.models.Notification.Status",
        # Incidents list suspect deployments, which brings the deployments status enum in too.
        "DeploymentStatusEnum": "deployments.models.Deployment.Status",
    }
)

# --- Maintenance ----------------------------------------------------------------
# Retention of history that grows without bound (days); see controlplane/maintenance.py.
# Nothing an active deployment, an unclosed incident or an unfinished restore needs is pruned.
RETENTION_DEPLOYMENT_EVENTS_DAYS = env.int("RETENTION_DEPLOYMENT_EVENTS_DAYS", default=90)
RETENTION_MEASUREMENTS_DAYS = env.int("RETENTION_MEASUREMENTS_DAYS", default=180)
RETENTION_NOTIFICATIONS_DAYS = env.int("RETENTION_NOTIFICATIONS_DAYS", default=30)
RETENTION_AUDIT_DAYS = env.int("RETENTION_AUDIT_DAYS", default=365)
# A client retries a POST within minutes; a day covers a CI job re-run after an outage.
IDEMPOTENCY_KEY_TTL_HOURS = env.int("IDEMPOTENCY_KEY_TTL_HOURS", default=24)
# Rows per DELETE/UPDATE statement: short transactions, short locks, bounded WAL bursts.
MAINTENANCE_BATCH_SIZE = env.int("MAINTENANCE_BATCH_SIZE", default=1000)
# --- Deployment gates -----------------------------------------------------------
SPECTACULAR_SETTINGS["ENUM_NAME_OVERRIDES"].update(  # type: ignore[attr-defined]
    {
        "ChecklistItemStateEnum": "deployments.models.ChecklistItem.State",
        "ApprovalStatusEnum": "deployments.models.Approval.Status",
        "InstanceStateEnum": "deployments.models.Instance.State",
    }
)
