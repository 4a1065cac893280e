"""Maskmill settings: every knob is an environment variable with an embedded default, so a fresh
clone runs with SQLite, a local media folder and kombu's filesystem broker, and production only
sets variables (DATABASE_URL, CELERY_BROKER_URL, S3, SECRET_KEY, ...)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(os.environ.get("MASKMILL_VAR_DIR", BASE_DIR / "var"))


def env_bool(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    if value.lower() in ("1", "true", "yes", "on"):
        return True
    if value.lower() in ("0", "false", "no", "off"):
        return False
    raise ImproperlyConfigured(f"{name}={value!r} is not a boolean (use 1/0, true/false, yes/no, on/off)")


def env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    try:
        return int(value.replace("_", ""))
    except ValueError as exc:
        raise ImproperlyConfigured(f"{name}={value!r} is not an integer") from exc


def env_list(name: str, default: list[str]) -> list[str]:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    return [item.strip() for item in value.split(",") if item.strip()]


# --- Core ---------------------------------------------------------------------------------------
DEBUG = env_bool("DEBUG", True)
SECRET_KEY = os.environ.get("SECRET_KEY", "")
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured("SECRET_KEY must be set when DEBUG is off")
    SECRET_KEY = "django-insecure-maskmill-development-only-key-never-use-in-production"

ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["127.0.0.1", "localhost", "[::1]"] if DEBUG else [])
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework.authtoken",
    "drf_spectacular",
    "drf_spectacular_sidecar",  # Swagger UI's files, served from here (no CDN)
    "django_celery_beat",
    "annotator.accounts",
    "annotator.projects",
    "annotator.images",
    "annotator.masks",
    "annotator.stages",
    "annotator.training",
    "annotator.exports",
    "annotator.annotation",
    "annotator.suggestions",
    "annotator.labelstudio",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    # /api/...: errors Django raises outside DRF (a body over the limit, 404s) answer JSON too.
    "annotator.middleware.ApiErrorsMiddleware",
    "annotator.middleware.ContentSecurityPolicyMiddleware",
    # Serves collected static files (the annotation page's modules, the admin) from gunicorn in
    # production, where nothing else would; in DEBUG runserver serves them itself.
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "annotator.urls"
WSGI_APPLICATION = "annotator.wsgi.application"
ASGI_APPLICATION = "annotator.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "annotator" / "templates", BASE_DIR / "frontend"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ]
        },
    }
]

# --- Database -----------------------------------------------------------------------------------
# SQLite by default (embedded), PostgreSQL through psycopg 3 in production:
# DATABASE_URL=postgres://user:password@host:5432/maskmill
# Connections are persistent (DATABASE_CONN_MAX_AGE seconds, 0 = one per request): each web thread
# keeps its own, so a click does not pay a new connection (PostgreSQL: TCP + authentication;
# SQLite: open + the WAL pragma). The health check re-opens one the server dropped before the
# request's first query. Celery tasks are unaffected: the worker closes its connections around
# every task. Under ASGI (annotator/asgi.py) the default is 0, as Django requires there.
DATABASES = {
    "default": dj_database_url.parse(
        os.environ.get("DATABASE_URL", f"sqlite:///{VAR_DIR / 'maskmill.sqlite3'}"),
        conn_max_age=env_int("DATABASE_CONN_MAX_AGE", 600),
        conn_health_checks=True,
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    if DATABASES["default"]["NAME"] not in ("", ":memory:"):
        Path(DATABASES["default"]["NAME"]).parent.mkdir(parents=True, exist_ok=True)
    # The web server, the worker and beat share the file: wait for locks instead of failing, and
    # let readers run beside the writer (WAL).
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        {"timeout": 30, "transaction_mode": "IMMEDIATE", "init_command": "PRAGMA journal_mode=WAL;"}
    )
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
# Every login (page, admin, API token) goes through the lockout (annotator.accounts.lockout).
AUTHENTICATION_BACKENDS = ["annotator.accounts.lockout.LockoutBackend"]
MASKMILL_LOGIN_MAX_FAILURES = env_int("MASKMILL_LOGIN_MAX_FAILURES", 10)  # per username and per address
MASKMILL_LOGIN_LOCKOUT_SECONDS = env_int("MASKMILL_LOGIN_LOCKOUT_SECONDS", 15 * 60)
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "projects-page"
LOGOUT_REDIRECT_URL = "login"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

# --- Files --------------------------------------------------------------------------------------
STATIC_URL = "static/"
# The annotation page (frontend/) is served as /static/maskmill/...
STATICFILES_DIRS = [("maskmill", BASE_DIR / "frontend")]
STATIC_ROOT = Path(os.environ.get("STATIC_ROOT", VAR_DIR / "static"))
STATIC_ROOT.mkdir(parents=True, exist_ok=True)  # WhiteNoise expects it even before collectstatic
MEDIA_URL = "/media/"  # never served publicly: files go through the permission-checking views
MEDIA_ROOT = Path(os.environ.get("MEDIA_ROOT", VAR_DIR / "media"))

# S3-compatible object storage (AWS, MinIO, ...) through django-storages when a bucket is named.
MASKMILL_S3_BUCKET = os.environ.get("MASKMILL_S3_BUCKET") or os.environ.get("AWS_STORAGE_BUCKET_NAME", "")
if MASKMILL_S3_BUCKET:
    AWS_STORAGE_BUCKET_NAME = MASKMILL_S3_BUCKET
    AWS_S3_ENDPOINT_URL = os.environ.get("AWS_S3_ENDPOINT_URL") or None
    AWS_S3_REGION_NAME = os.environ.get("AWS_S3_REGION_NAME") or None
    AWS_LOCATION = os.environ.get("MASKMILL_S3_PREFIX", "")
    AWS_DEFAULT_ACL = None
    AWS_QUERYSTRING_AUTH = True
    AWS_S3_FILE_OVERWRITE = False
    DEFAULT_FILE_STORAGE_BACKEND = "storages.backends.s3.S3Storage"
else:
    DEFAULT_FILE_STORAGE_BACKEND = "django.core.files.storage.FileSystemStorage"
STORAGES = {
    "default": {"BACKEND": DEFAULT_FILE_STORAGE_BACKEND},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}

# --- Maskmill -----------------------------------------------------------------------------------
MASKMILL_MODEL_TYPE = os.environ.get("MASKMILL_MODEL_TYPE", "")  # vit_b|vit_l|vit_h|vit_t|custom
MASKMILL_CHECKPOINT = os.environ.get("MASKMILL_CHECKPOINT", "")
try:
    MASKMILL_MODEL_CONFIG: dict = json.loads(os.environ.get("MASKMILL_MODEL_CONFIG") or "{}")
except json.JSONDecodeError as exc:
    raise ImproperlyConfigured(f"MASKMILL_MODEL_CONFIG is not valid JSON: {exc}") from exc
if not isinstance(MASKMILL_MODEL_CONFIG, dict):
    raise ImproperlyConfigured("MASKMILL_MODEL_CONFIG must be a JSON object of model sizes")
# The image encoder's precision in this process (engine.sam.with_precision): fp32, bf16 (fast only
# with native bf16: AVX512-BF16/AMX or a GPU) or int8 (dynamic quantization, CPU). The decoder stays fp32.
MASKMILL_ENCODER_PRECISION = os.environ.get("MASKMILL_ENCODER_PRECISION", "fp32")
if MASKMILL_ENCODER_PRECISION not in ("fp32", "bf16", "int8"):
    raise ImproperlyConfigured(
        f"MASKMILL_ENCODER_PRECISION={MASKMILL_ENCODER_PRECISION!r}: use fp32, bf16 or int8"
    )
MASKMILL_DEVICE = os.environ.get("MASKMILL_DEVICE", "auto")  # auto: cuda when available, else cpu
MASKMILL_MODEL_STORE = Path(os.environ.get("MASKMILL_MODEL_STORE", VAR_DIR / "models"))
MASKMILL_MAX_IMAGE_PIXELS = env_int("MASKMILL_MAX_IMAGE_PIXELS", 100_000_000)
# Exports are written here (one folder per export) and served only through the permission-checking
# download view, never as public files. Imports through the API are capped at this many bytes.
MASKMILL_EXPORT_DIR = Path(os.environ.get("MASKMILL_EXPORT_DIR", VAR_DIR / "exports"))
MASKMILL_EXPORT_TIME_LIMIT = env_int("MASKMILL_EXPORT_TIME_LIMIT", 6 * 3600)  # seconds per export task
MASKMILL_IMPORT_MAX_BYTES = env_int("MASKMILL_IMPORT_MAX_BYTES", 64 * 1024 * 1024)
MASKMILL_MAX_UPLOAD_BYTES = env_int("MASKMILL_MAX_UPLOAD_BYTES", 200 * 1024 * 1024)
MASKMILL_URL_FETCH_MAX_BYTES = env_int("MASKMILL_URL_FETCH_MAX_BYTES", 100 * 1024 * 1024)
MASKMILL_URL_FETCH_TIMEOUT = env_int("MASKMILL_URL_FETCH_TIMEOUT", 30)
MASKMILL_LEASE_SECONDS = env_int("MASKMILL_LEASE_SECONDS", 15 * 60)
MASKMILL_EMBED_TIME_LIMIT = env_int("MASKMILL_EMBED_TIME_LIMIT", 600)
MASKMILL_GENERATE_TIME_LIMIT = env_int("MASKMILL_GENERATE_TIME_LIMIT", 900)  # seconds per image
MASKMILL_GENERATE_MAX_ATTEMPTS = env_int("MASKMILL_GENERATE_MAX_ATTEMPTS", 5)  # claims before an item fails
MASKMILL_GENERATE_MAX_RETRIES = env_int("MASKMILL_GENERATE_MAX_RETRIES", 8)  # retries on transient errors
MASKMILL_TRAIN_TIME_LIMIT = env_int("MASKMILL_TRAIN_TIME_LIMIT", 6 * 3600)  # seconds per training run
# A running training run whose heartbeat is older than this belonged to a worker that died: the
# next delivery of its task, or the next request for a run, starts it again.
MASKMILL_TRAIN_STALE_SECONDS = env_int("MASKMILL_TRAIN_STALE_SECONDS", 600)
# Stage 2/3 mask generator: dotted path of a factory (empty: the engine's automatic generator).
MASKMILL_MASK_GENERATOR = os.environ.get("MASKMILL_MASK_GENERATOR", "")
MASKMILL_MASK_COPY = env_bool("MASKMILL_MASK_COPY", True)  # PostgreSQL: write generated masks with COPY
# Interactive annotation (annotator.annotation): where a missing embedding is computed when an
# annotator opens the image ("web": this process's encoder thread; "task": the embed queue), how many
# upcoming queue images get their embeddings prefetched, and the per-process memory caches.
MASKMILL_ON_DEMAND_EMBED = os.environ.get("MASKMILL_ON_DEMAND_EMBED", "web")
if MASKMILL_ON_DEMAND_EMBED not in ("web", "task"):
    raise ImproperlyConfigured(f"MASKMILL_ON_DEMAND_EMBED={MASKMILL_ON_DEMAND_EMBED!r}: use web or task")
# Label suggestions: masks each label needs before the head learns it, labelled masks that trigger
# a cheap head retraining (0: only with training runs and by hand), masks read per training.
MASKMILL_LABEL_MIN_MASKS_PER_LABEL = env_int("MASKMILL_LABEL_MIN_MASKS_PER_LABEL", 5)
MASKMILL_LABEL_RETRAIN_EVERY = env_int("MASKMILL_LABEL_RETRAIN_EVERY", 25)
MASKMILL_LABEL_MAX_TRAIN_MASKS = env_int("MASKMILL_LABEL_MAX_TRAIN_MASKS", 20000)
MASKMILL_PREFETCH_IMAGES = env_int("MASKMILL_PREFETCH_IMAGES", 3)
# torch threads of a web process's model thread (every click's decoder); 0: every core but one.
MASKMILL_MODEL_THREADS = env_int("MASKMILL_MODEL_THREADS", 0)
MASKMILL_EMBEDDING_CACHE_ITEMS = env_int("MASKMILL_EMBEDDING_CACHE_ITEMS", 32)
MASKMILL_EMBEDDING_CACHE_BYTES = env_int("MASKMILL_EMBEDDING_CACHE_BYTES", 512 * 1024 * 1024)
MASKMILL_CLASSIC_CACHE_ITEMS = env_int("MASKMILL_CLASSIC_CACHE_ITEMS", 8)
MASKMILL_CLASSIC_CACHE_BYTES = env_int("MASKMILL_CLASSIC_CACHE_BYTES", 512 * 1024 * 1024)
DATA_UPLOAD_MAX_MEMORY_SIZE = env_int("DATA_UPLOAD_MAX_MEMORY_SIZE", 10 * 1024 * 1024)
DATA_UPLOAD_MAX_NUMBER_FILES = env_int("DATA_UPLOAD_MAX_NUMBER_FILES", 1000)

# --- Celery -------------------------------------------------------------------------------------
BROKER_DIR = Path(os.environ.get("MASKMILL_BROKER_DIR", VAR_DIR / "broker"))
CELERY_BROKER_URL = os.environ.get("CELERY_BROKER_URL", "filesystem://")
if CELERY_BROKER_URL.startswith("filesystem://"):
    for _folder in ("queue", "processed", "control"):
        (BROKER_DIR / _folder).mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(BROKER_DIR / "queue"),
        "data_folder_out": str(BROKER_DIR / "queue"),
        "processed_folder": str(BROKER_DIR / "processed"),
        "control_folder": str(BROKER_DIR / "control"),  # exchange bindings; kombu's default is the CWD
        "store_processed": False,
    }
elif CELERY_BROKER_URL.startswith(("redis://", "rediss://")):
    # A shared Redis can host several deployments (or test runs): keys get this prefix.
    # kombu gives an unacknowledged message back (its worker died) once it is older than the
    # visibility timeout, checking every unacked_restore_interval seconds; its default throttle
    # (a real scan only every 10th check) would add ~100 s to that.
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "global_keyprefix": os.environ.get("MASKMILL_BROKER_KEY_PREFIX", ""),
        "visibility_timeout": env_int("MASKMILL_BROKER_VISIBILITY_TIMEOUT", 3600),
        "unacked_restore_interval": env_int("MASKMILL_BROKER_RESTORE_INTERVAL", 10),
        "unacked_restore_throttle": 1,
    }
else:
    CELERY_BROKER_TRANSPORT_OPTIONS = {}
# Redis for what the web processes share (the logits handles of interactive annotation):
# MASKMILL_REDIS_URL, else the broker when it is Redis; empty on the embedded defaults.
MASKMILL_REDIS_URL = os.environ.get("MASKMILL_REDIS_URL", "") or (
    CELERY_BROKER_URL if CELERY_BROKER_URL.startswith(("redis://", "rediss://")) else ""
)
# Django's cache holds the login-failure counters and the API throttles' history, which every web
# process must share: Redis when there is one, else this process's memory.
CACHES = {
    "default": (
        {
            "BACKEND": "annotator.cache.PrefixedRedisCache",
            "LOCATION": MASKMILL_REDIS_URL,
            "KEY_PREFIX": os.environ.get("MASKMILL_CACHE_KEY_PREFIX", "maskmill"),
        }
        if MASKMILL_REDIS_URL
        else {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}
    )
}
# Logits handles (an answer's low-res logits, the next click's mask prompt) must resolve in any web
# process: "redis" (the default when MASKMILL_REDIS_URL is set), "file" (files under
# MASKMILL_LOGITS_DIR, for one machine without Redis) or "memory" (a single process only).
MASKMILL_LOGITS_STORE = os.environ.get("MASKMILL_LOGITS_STORE", "") or (
    "redis" if MASKMILL_REDIS_URL else "file"
)
if MASKMILL_LOGITS_STORE not in ("redis", "file", "memory"):
    raise ImproperlyConfigured(f"MASKMILL_LOGITS_STORE={MASKMILL_LOGITS_STORE!r}: use redis, file or memory")
if MASKMILL_LOGITS_STORE == "redis" and not MASKMILL_REDIS_URL:
    raise ImproperlyConfigured("MASKMILL_LOGITS_STORE=redis needs MASKMILL_REDIS_URL (or a redis:// broker)")
MASKMILL_LOGITS_DIR = Path(os.environ.get("MASKMILL_LOGITS_DIR", VAR_DIR / "logits"))
MASKMILL_LOGITS_TTL = env_int("MASKMILL_LOGITS_TTL", 3600)
MASKMILL_LOGITS_KEY_PREFIX = os.environ.get("MASKMILL_LOGITS_KEY_PREFIX", "maskmill:logits:")
# Label Studio (annotator.labelstudio): seconds for its API calls and for fetching a task's image,
# and the seconds a predict request may spend computing before the rest of its tasks are queued.
MASKMILL_LS_TIMEOUT = env_int("MASKMILL_LS_TIMEOUT", 60)
MASKMILL_LS_FETCH_TIMEOUT = env_int("MASKMILL_LS_FETCH_TIMEOUT", 30)
MASKMILL_LS_PREDICT_BUDGET = env_int("MASKMILL_LS_PREDICT_BUDGET", 20)
# Progress and results live in Maskmill's own tables, so a result backend is optional
# (e.g. CELERY_RESULT_BACKEND=redis://...).
CELERY_RESULT_BACKEND = os.environ.get("CELERY_RESULT_BACKEND") or None
CELERY_TASK_ALWAYS_EAGER = env_bool("CELERY_TASK_ALWAYS_EAGER", False)
# Recycle a worker process after this many tasks (0: never).
CELERY_WORKER_MAX_TASKS_PER_CHILD = env_int("MASKMILL_WORKER_MAX_TASKS_PER_CHILD", 0) or None
CELERY_BEAT_SCHEDULER = "django_celery_beat.schedulers:DatabaseScheduler"
# The sweep that queues again work whose broker messages were lost (annotator.stages.sweep).
MASKMILL_SWEEP_INTERVAL = env_int("MASKMILL_SWEEP_INTERVAL", 60)
MASKMILL_SWEEP_PENDING_SECONDS = env_int("MASKMILL_SWEEP_PENDING_SECONDS", 300)
MASKMILL_SWEEP_GRACE_SECONDS = env_int("MASKMILL_SWEEP_GRACE_SECONDS", 60)
MASKMILL_SWEEP_BATCH = env_int("MASKMILL_SWEEP_BATCH", 1000)
CELERY_BEAT_SCHEDULE = {
    "maskmill-sweep": {
        "task": "annotator.stages.tasks.sweep_lost_work",
        "schedule": float(MASKMILL_SWEEP_INTERVAL),
        "options": {"expires": float(MASKMILL_SWEEP_INTERVAL)},  # a late sweep is replaced by the next
    }
}
CELERY_TIMEZONE = TIME_ZONE

# --- REST API -----------------------------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework.authentication.TokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_PAGINATION_CLASS": "annotator.api.Pagination",
    "PAGE_SIZE": env_int("MASKMILL_API_PAGE_SIZE", 50),
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "annotator.api.exception_handler",
    # JSON with a depth and size cap (annotator.parsers.JSONParser): deep nesting answers 400, not a
    # RecursionError.
    # Token requests per client address (annotator.accounts.api.ObtainToken).
    "DEFAULT_THROTTLE_RATES": {"auth-token": os.environ.get("MASKMILL_TOKEN_RATE", "20/min")},
    "DEFAULT_PARSER_CLASSES": [
        "annotator.parsers.JSONParser",
        "rest_framework.parsers.FormParser",
        "rest_framework.parsers.MultiPartParser",
    ],
}
MASKMILL_JSON_MAX_DEPTH = env_int("MASKMILL_JSON_MAX_DEPTH", 32)
SPECTACULAR_SETTINGS = {
    "TITLE": "Maskmill API",
    "DESCRIPTION": "Projects, images, masks and the data-engine stages of Maskmill.",
    "VERSION": "0.1.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    # <id:pk> (annotator.params.IdConverter): a bigint id.
    "PATH_CONVERTER_OVERRIDES": {"id": {"type": "integer", "minimum": 0, "maximum": 2**63 - 1}},
    "ENUM_NAME_OVERRIDES": {
        "ImageStatusEnum": "annotator.images.models.ImageStatus",
        "MaskStatusEnum": "annotator.masks.models.MaskStatus",
        "JobStatusEnum": "annotator.jobs.JobStatus",
        "ExportFormatEnum": "annotator.exports.models.ExportFormat",
        "ImportFormatEnum": "annotator.exports.imports.FORMATS",
    },
}

# --- Security (production: DEBUG=0) -------------------------------------------------------------
# Content-Security-Policy of every response (annotator.middleware): Maskmill's own scripts only,
# its own styles (inline style attributes and blocks of its templates allowed), images from itself
# (and from the object store, which the image file view redirects to). Empty: no header.
_IMAGE_SOURCES = "'self' data: blob:"
if MASKMILL_S3_BUCKET:
    _endpoint = os.environ.get("AWS_S3_ENDPOINT_URL", "")
    _IMAGE_SOURCES += f" {_endpoint.rstrip('/')}" if _endpoint else " https://*.amazonaws.com"
MASKMILL_CSP = os.environ.get(
    "MASKMILL_CSP",
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    f"img-src {_IMAGE_SOURCES}; connect-src 'self'; font-src 'self'; object-src 'none'; "
    "base-uri 'self'; form-action 'self'; frame-ancestors 'none'",
)
SESSION_COOKIE_SECURE = env_bool("SESSION_COOKIE_SECURE", not DEBUG)
CSRF_COOKIE_SECURE = env_bool("CSRF_COOKIE_SECURE", not DEBUG)
SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", not DEBUG)
SECURE_REDIRECT_EXEMPT = [r"^healthz$"]  # the container health check speaks plain HTTP on loopback
SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 0 if DEBUG else 31_536_000)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", not DEBUG)
SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", not DEBUG)
SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"
if env_bool("MASKMILL_BEHIND_TLS_PROXY", False):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": os.environ.get("LOG_LEVEL", "INFO")},
}
