"""Test settings: the real settings on a throwaway DATA_DIR: real SQLite files, or the
throwaway PostgreSQL and Redis of `python -m tests.servers` (make test runs both)."""

import atexit
import os
import shutil
import tempfile

if "DATA_DIR" not in os.environ:
    # A throwaway directory per test session (worker processes get it passed explicitly).
    os.environ["DATA_DIR"] = tempfile.mkdtemp(prefix="mlops-test-")
    atexit.register(shutil.rmtree, os.environ["DATA_DIR"], ignore_errors=True)
os.environ.setdefault("SECRET_KEY", "test-only-secret-key")
# The test client and the servers the tests start speak plain HTTP on loopback, as `make run`
# does (tests/test_security.py checks the production defaults in a process of their own).
os.environ.setdefault("HTTPS", "0")
# The tests never reach a production database or queue: DATABASE_URL and HUEY_REDIS_URL
# from the environment are ignored; TEST_DATABASE_URL and TEST_REDIS_URL (set by
# `python -m tests.servers`, which starts throwaway PostgreSQL and Redis servers) replace them.
os.environ.pop("DATABASE_URL", None)
os.environ.pop("HUEY_REDIS_URL", None)
os.environ["HUEY_IMMEDIATE"] = "false"
# The suite's own pipelines (the shipped examples, nothing else a user adds); workers the
# tests start inherit it.
os.environ.setdefault("PIPELINES_PACKAGE", "tests.pipelines")
# Playwright's sync API runs an event loop in the test thread; the ORM calls next to it are
# still synchronous, so allow them here (never in production settings).
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")

from app.settings import *  # noqa: E402,F401,F403
from app.settings import database_settings, huey_settings  # noqa: E402

if os.environ.get("TEST_DATABASE_URL"):
    DATABASES = {"default": database_settings(os.environ["TEST_DATABASE_URL"])}
if os.environ.get("TEST_REDIS_URL"):
    HUEY_REDIS_URL = os.environ["TEST_REDIS_URL"]
    HUEY = huey_settings(HUEY_REDIS_URL)

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]  # fast logins in tests
STORAGES["staticfiles"]["BACKEND"] = "django.contrib.staticfiles.storage.StaticFilesStorage"  # noqa: F405
