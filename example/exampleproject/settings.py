"""
Settings for the dumbwaiter example project.

Not meant for production: the defaults below favour running from a fresh
checkout with no configuration at all. Each of them can be overridden with an
EXAMPLE_* environment variable.
"""

import os
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent


def env_flag(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    if value is None:
        return default
    return value.strip().lower() not in {"", "0", "false", "no", "off"}


SECRET_KEY = os.environ.get(
    "EXAMPLE_SECRET_KEY", "example-only-insecure-key-never-use-it-in-production"
)

DEBUG = env_flag("EXAMPLE_DEBUG", default=True)

# Left empty, Django accepts localhost while DEBUG is on; set
# EXAMPLE_ALLOWED_HOSTS (comma-separated) to serve the example with DEBUG off.
ALLOWED_HOSTS = [
    host for host in os.environ.get("EXAMPLE_ALLOWED_HOSTS", "").split(",") if host
]

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "dumbwaiter",
    "shop",
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

ROOT_URLCONF = "exampleproject.urls"

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

WSGI_APPLICATION = "exampleproject.wsgi.application"

DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": BASE_DIR / "db.sqlite3",
        # Overlapping ticks (separate processes), the functions' own queries
        # on a tick's worker threads and the web server all share this file.
        # IMMEDIATE takes the write lock when a transaction begins, so a
        # writer waits up to `timeout` seconds for its turn; under SQLite's
        # default (DEFERRED) a transaction that reads first and writes later
        # can fail at once with "database is locked" instead of waiting.
        "OPTIONS": {
            "timeout": 20,
            "transaction_mode": "IMMEDIATE",
        },
    }
}

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": f"django.contrib.auth.password_validation.{name}"}
    for name in (
        "UserAttributeSimilarityValidator",
        "MinimumLengthValidator",
        "CommonPasswordValidator",
        "NumericPasswordValidator",
    )
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"

# Django's own logging defaults are fine for the example, and the dumbwaiter
# commands show their own messages with -v 2. Set EXAMPLE_LOG_LEVEL=INFO (or
# DEBUG) to see them everywhere else too, e.g. from views reading values.
EXAMPLE_LOG_LEVEL = os.environ.get("EXAMPLE_LOG_LEVEL", "").strip().upper()
if EXAMPLE_LOG_LEVEL:
    LOGGING = {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {
            "plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"},
        },
        "handlers": {
            "console": {"class": "logging.StreamHandler", "formatter": "plain"},
        },
        "loggers": {
            "dumbwaiter": {
                "handlers": ["console"],
                "level": EXAMPLE_LOG_LEVEL,
                "propagate": False,
            },
        },
    }

# Frequencies are in seconds. The names are what views and the show_values
# command ask for.
DUMBWAITER_FUNCTION_LIST = [
    {
        "function": "shop.dumbwaiter_functions.order_totals",
        "name": "orders-total",
        "frequency": 60,
    },
    {
        "function": "shop.dumbwaiter_functions.top_customers",
        "name": "top-customers",
        "frequency": 60,
        "kwargs": {"limit": 5},
    },
    {
        "function": "shop.dumbwaiter_functions.load_average",
        "name": "load-average",
        "frequency": 60,
        # An hour of history at one run a minute.
        "saved": 60,
    },
    {
        "function": "shop.dumbwaiter_functions.disk_usage",
        "name": "disk-usage",
        "frequency": 60,
        "args": [str(BASE_DIR)],
    },
    {
        "function": "shop.dumbwaiter_functions.daily_revenue",
        "name": "daily-revenue",
        "frequency": 300,
        "kwargs": {"days": 14, "delay": 3},
    },
]
