"""Settings for the test suite.

The database comes from DUMBWAITER_TEST_DATABASE: sqlite (default),
postgresql or mariadb (alias mysql). Child processes started by the tests
(the real management command) use the same module; the parent tells them the
test database's name and their function list through environment variables.
"""

from __future__ import annotations

import json
import os
import tempfile

BASE_DIR = os.path.dirname(os.path.abspath(__file__))

SECRET_KEY = "dumbwaiter-tests-not-secret"
DEBUG = False
USE_TZ = os.environ.get("DUMBWAITER_TEST_USE_TZ", "1") == "1"
TIME_ZONE = "UTC"

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "dumbwaiter",
    "tests",
]
MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
]
ROOT_URLCONF = "tests.urls"
TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
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

VENDOR = os.environ.get("DUMBWAITER_TEST_DATABASE", "sqlite").lower()
# Lets two suites share one server without dropping each other's database.
TEST_DB_NAME = "test_dumbwaiter" + os.environ.get("DUMBWAITER_TEST_DB_SUFFIX", "")
# Set by the tests for the child processes they start: the test database the
# parent created, so both sides see the same rows.
CHILD_DB_NAME = os.environ.get("DUMBWAITER_TEST_DB_NAME")

if VENDOR == "sqlite":
    # A file, not the in-memory default: child processes must share it.
    _sqlite_path = os.environ.get(
        "DUMBWAITER_TEST_SQLITE_PATH",
        os.path.join(tempfile.gettempdir(), f"dumbwaiter-tests-{os.getpid()}.sqlite3"),
    )
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": CHILD_DB_NAME or _sqlite_path,
            "TEST": {"NAME": _sqlite_path},
            "OPTIONS": {"timeout": 30, "transaction_mode": "IMMEDIATE"},
        }
    }
elif VENDOR in {"postgresql", "postgres"}:
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.postgresql",
            "NAME": CHILD_DB_NAME or "dumbwaiter",
            "USER": os.environ.get("PGUSER", "postgres"),
            "HOST": os.environ.get("PGHOST", "127.0.0.1"),
            "PORT": os.environ.get("PGPORT", "5432"),
            "TEST": {"NAME": TEST_DB_NAME},
        }
    }
elif VENDOR in {"mariadb", "mysql"}:
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.mysql",
            "NAME": CHILD_DB_NAME or "dumbwaiter",
            "USER": os.environ.get("MYSQL_USER", "root"),
            "HOST": os.environ.get("MYSQL_HOST", "127.0.0.1"),
            "PORT": os.environ.get("MYSQL_PORT", "3306"),
            "OPTIONS": {"charset": "utf8mb4"},
            "TEST": {"NAME": TEST_DB_NAME, "CHARSET": "utf8mb4"},
        }
    }
    # test_databases.py gives a child tick a short session wait_timeout this
    # way, so the server drops its connection while a function runs.
    if "DUMBWAITER_TEST_INIT_COMMAND" in os.environ:
        DATABASES["default"]["OPTIONS"]["init_command"] = os.environ[
            "DUMBWAITER_TEST_INIT_COMMAND"
        ]
else:
    raise RuntimeError(
        f"DUMBWAITER_TEST_DATABASE={VENDOR!r}: use sqlite, postgresql or mariadb"
    )

DUMBWAITER_FUNCTION_LIST = json.loads(os.environ.get("DUMBWAITER_TEST_FUNCTIONS", "[]"))
if "DUMBWAITER_TEST_LOCK_DIR" in os.environ:
    DUMBWAITER_LOCK_DIR = os.environ["DUMBWAITER_TEST_LOCK_DIR"]
if "DUMBWAITER_TEST_LEASE" in os.environ:
    DUMBWAITER_LEASE = float(os.environ["DUMBWAITER_TEST_LEASE"])
if "DUMBWAITER_TEST_THREADED" in os.environ:
    DUMBWAITER_THREADED = os.environ["DUMBWAITER_TEST_THREADED"] == "1"
