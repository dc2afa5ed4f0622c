"""Django settings of a Minga node. Operators configure it through ``MINGA_*`` variables
(see ``minga.conf`` and ``docs/operators.md``), never by editing this file."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import dj_database_url
import dj_email_url
from django.utils.translation import gettext_lazy as _

from minga import conf

PACKAGE_DIR = Path(__file__).resolve().parent
VAR_DIR = conf.var_dir()

SECRET_KEY = conf.secret_key()
DEBUG = conf.env_bool("MINGA_DEBUG")
ALLOWED_HOSTS = conf.env_list("MINGA_ALLOWED_HOSTS")
CSRF_TRUSTED_ORIGINS = conf.env_list("MINGA_CSRF_TRUSTED_ORIGINS")
MINGA_NODE_NAME = conf.env("MINGA_NODE_NAME")
MINGA_NODE_ID = conf.env("MINGA_NODE_ID")
MINGA_LISTEN = conf.env("MINGA_LISTEN")
MINGA_WEB_WORKERS = conf.env_int("MINGA_WEB_WORKERS")
MINGA_TRUSTED_PROXIES = conf.env_list("MINGA_TRUSTED_PROXIES")

INSTALLED_APPS = [
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    "django_tasks",
    "django_tasks_db",
    "axes",
    "ninja",
    "minga.core",
    "minga.directory",
    "minga.intel",
    "minga.taxii",
    "minga.pipeline",
    "minga.incidents",
    "minga.assistance",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "minga.core.middleware.RequestSizeLimitMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.locale.LocaleMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "minga.core.middleware.UserLanguageMiddleware",
    "minga.core.middleware.RejectNulMiddleware",
    "minga.core.middleware.ApiErrorBodyMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "minga.urls"
WSGI_APPLICATION = "minga.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.template.context_processors.i18n",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "minga.core.context_processors.node",
            ],
        },
    },
]


def _database() -> dict[str, Any]:
    config: dict[str, Any] = dict(
        dj_database_url.parse(conf.database_url(), conn_max_age=60, conn_health_checks=True)
    )
    if config["ENGINE"] == "django.db.backends.sqlite3":
        # WAL lets the web and worker processes read while one writes; IMMEDIATE takes the write
        # lock at BEGIN so two writers queue on the busy timeout instead of failing mid-way.
        config["CONN_MAX_AGE"] = 0
        config["OPTIONS"] = {
            "timeout": 30,
            "transaction_mode": "IMMEDIATE",
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        }
    return config


DATABASES = {"default": _database()}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_USER_MODEL = "core.User"
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
PASSWORD_HASHERS = [
    "django.contrib.auth.hashers.Argon2PasswordHasher",
    "django.contrib.auth.hashers.PBKDF2PasswordHasher",
]
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator", "OPTIONS": {"min_length": 12}},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "core:login"
LOGIN_REDIRECT_URL = "core:home"
LOGOUT_REDIRECT_URL = "core:login"

# Login throttling (django-axes): lock one user name from one address after repeated failures.
AXES_FAILURE_LIMIT = conf.env_int("MINGA_LOGIN_FAILURE_LIMIT")
AXES_COOLOFF_TIME = timedelta(minutes=conf.env_int("MINGA_LOGIN_COOLOFF_MINUTES"))
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_LOCKOUT_TEMPLATE = "core/locked_out.html"
AXES_VERBOSE = False

SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"
SESSION_COOKIE_AGE = 12 * 3600
SESSION_COOKIE_SECURE = conf.env_bool("MINGA_SECURE_COOKIES")
CSRF_COOKIE_SECURE = SESSION_COOKIE_SECURE
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"

MINGA_MAX_REQUEST_BYTES = conf.env_int("MINGA_MAX_REQUEST_BYTES")
DATA_UPLOAD_MAX_MEMORY_SIZE = MINGA_MAX_REQUEST_BYTES
MINGA_TAXII_MAX_CONTENT_LENGTH = conf.env_int("MINGA_TAXII_MAX_CONTENT_LENGTH")
MINGA_EVIDENCE_MAX_BYTES = conf.env_int("MINGA_EVIDENCE_MAX_BYTES")
MINGA_TOKEN_DEFAULT_DAYS = conf.env_int("MINGA_TOKEN_DEFAULT_DAYS")
MINGA_TASK_MAX_ATTEMPTS = conf.env_int("MINGA_TASK_MAX_ATTEMPTS")
MINGA_PIPELINE_STALLED_SECONDS = conf.env_int("MINGA_PIPELINE_STALLED_SECONDS")
MINGA_PIPELINE_INBOX = (
    Path(conf.env("MINGA_PIPELINE_INBOX").replace("<MINGA_VAR_DIR>", str(VAR_DIR))).expanduser().resolve()
)
MINGA_PIPELINE_SETTLE_SECONDS = conf.env_int("MINGA_PIPELINE_SETTLE_SECONDS")
MINGA_PIPELINE_PULL_TIMEOUT = conf.env_int("MINGA_PIPELINE_PULL_TIMEOUT")
MINGA_PIPELINE_PULL_MAX_BYTES = conf.env_int("MINGA_PIPELINE_PULL_MAX_BYTES")
MINGA_PIPELINE_PULL_PRIVATE = conf.env_bool("MINGA_PIPELINE_PULL_PRIVATE")
MINGA_PUBLIC_URL = conf.env("MINGA_PUBLIC_URL").rstrip("/")
MINGA_CONTACT_STALE_DAYS = conf.env_int("MINGA_CONTACT_STALE_DAYS")
MINGA_CONTACT_REMINDER_DAYS = conf.env_int("MINGA_CONTACT_REMINDER_DAYS")
MINGA_NODE_ORGANISATION = conf.env("MINGA_NODE_ORGANISATION")

LANGUAGE_CODE = "en"
LANGUAGES = [
    ("en", _("English")),
    ("es", _("Spanish")),
    ("pt-br", _("Portuguese")),
    ("fr", _("French")),
]
LOCALE_PATHS = [PACKAGE_DIR / "locale"]
USE_I18N = True
TIME_ZONE = "UTC"
USE_TZ = True

STATIC_URL = "/static/"
STATIC_ROOT = VAR_DIR / "static"
STATIC_ROOT.mkdir(exist_ok=True)
# Assets are vendored inside the apps and served from there: no collectstatic step, no CDN.
WHITENOISE_USE_FINDERS = True
WHITENOISE_AUTOREFRESH = DEBUG

if conf.env("MINGA_TASK_BACKEND") != "database":
    raise ValueError("MINGA_TASK_BACKEND must be 'database' (the only backend this release ships)")
TASKS = {"default": {"BACKEND": "django_tasks_db.DatabaseBackend"}}

_email = dj_email_url.parse(conf.env("MINGA_EMAIL_URL"))
EMAIL_BACKEND = _email["EMAIL_BACKEND"]
EMAIL_HOST = _email["EMAIL_HOST"] or "localhost"
EMAIL_PORT = _email["EMAIL_PORT"] or 25
EMAIL_HOST_USER = _email["EMAIL_HOST_USER"] or ""
EMAIL_HOST_PASSWORD = _email["EMAIL_HOST_PASSWORD"] or ""
EMAIL_USE_TLS = bool(_email["EMAIL_USE_TLS"])
EMAIL_USE_SSL = bool(_email["EMAIL_USE_SSL"])
EMAIL_TIMEOUT = 30
DEFAULT_FROM_EMAIL = conf.env("MINGA_EMAIL_FROM")
SERVER_EMAIL = DEFAULT_FROM_EMAIL

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": conf.env("MINGA_LOG_LEVEL")},
    "loggers": {"axes": {"level": "WARNING"}},
}
