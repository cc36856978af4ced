"""Test settings: the real settings on a throwaway DATA_DIR (real SQLite files)."""

import atexit
import os
import shutil
import tempfile

if "DATA_DIR" not in os.environ:
    # A throwaway directory per test session (worker processes get it passed explicitly).
    os.environ["DATA_DIR"] = tempfile.mkdtemp(prefix="mlops-test-")
    atexit.register(shutil.rmtree, os.environ["DATA_DIR"], ignore_errors=True)
os.environ.setdefault("SECRET_KEY", "test-only-secret-key")
os.environ["HUEY_IMMEDIATE"] = "false"
# The suite's own pipelines (the shipped examples, nothing else a user adds); workers the
# tests start inherit it.
os.environ.setdefault("PIPELINES_PACKAGE", "tests.pipelines")
# Playwright's sync API runs an event loop in the test thread; the ORM calls next to it are
# still synchronous, so allow them here (never in production settings).
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")

from app.settings import *  # noqa: E402,F401,F403

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]  # fast logins in tests
STORAGES["staticfiles"]["BACKEND"] = "django.contrib.staticfiles.storage.StaticFilesStorage"  # noqa: F405
