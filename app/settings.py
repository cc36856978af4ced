"""Settings, read from the environment only.

Every value has a default that makes `make run` work on one machine (SQLite files in
DATA_DIR). A malformed value stops start-up with a message naming the variable.
"""

import datetime
import math
import os
import re
from pathlib import Path
from urllib.parse import urlsplit

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent


def env_str(name, default=None):
    value = os.environ.get(name)
    return default if value in (None, "") else value


def env_bool(name, default=False):
    value = env_str(name)
    if value is None:
        return default
    lowered = value.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ImproperlyConfigured(f"{name}={value!r} is not a boolean (use 1/0, true/false, yes/no, on/off)")


def env_int(name, default, minimum=None):
    value = env_str(name)
    if value is None:
        return default
    try:
        number = int(value)
    except ValueError:
        raise ImproperlyConfigured(f"{name}={value!r} is not an integer") from None
    if minimum is not None and number < minimum:
        raise ImproperlyConfigured(f"{name}={number} must be at least {minimum}")
    return number


def env_float(name, default, minimum=None):
    value = env_str(name)
    if value is None:
        return default
    try:
        number = float(value)
    except ValueError:
        raise ImproperlyConfigured(f"{name}={value!r} is not a number") from None
    if not math.isfinite(number):
        raise ImproperlyConfigured(f"{name}={value!r} is not a finite number")
    if minimum is not None and number < minimum:
        raise ImproperlyConfigured(f"{name}={number:g} must be at least {minimum:g}")
    return number


def env_list(name, default=()):
    value = env_str(name)
    if value is None:
        return list(default)
    return [item.strip() for item in value.split(",") if item.strip()]


DEBUG = env_bool("DEBUG", False)
# What this process creates (the database, queue, artifacts, logs, the secret key) is for the
# service's own user only: files 0600, directories 0700.
os.umask(0o077)
DATA_DIR = Path(env_str("DATA_DIR", str(BASE_DIR / ".data"))).resolve()
DATA_DIR.mkdir(parents=True, exist_ok=True)

# SECRET_KEY from the environment; else the key `make run` keeps in DATA_DIR/secret_key (so
# `manage.py` commands work on a development machine without a prefix).
SECRET_KEY = env_str("SECRET_KEY")
if not SECRET_KEY and (DATA_DIR / "secret_key").is_file():
    SECRET_KEY = (DATA_DIR / "secret_key").read_text().strip()
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured(
            f"SECRET_KEY is not set: set it in the environment, or run `make run` once to create {DATA_DIR / 'secret_key'}"
        )
    SECRET_KEY = "insecure-development-key-only-used-with-DEBUG"

ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["127.0.0.1", "localhost", "[::1]"])
# Where people reach the dashboard: links printed by commands (run_pipeline --wait).
SITE_URL = env_str("SITE_URL", "http://127.0.0.1:8000").rstrip("/")
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS")
CSRF_FAILURE_VIEW = "app.web.errors.csrf_failure"  # "this form has expired", not Django's raw 403
ARTIFACTS_DIR = DATA_DIR / "artifacts"
# Set for several machines: every process then keeps and reads artifacts in one bucket.
ARTIFACTS_URL = env_str("ARTIFACTS_URL")
# Files a step or a model format needs on this machine's disk while the store is remote.
ARTIFACTS_SCRATCH_DIR = DATA_DIR / "scratch"
PIPELINES_PACKAGE = env_str("PIPELINES_PACKAGE", "pipelines")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django_htmx",
    "template_partials",
    "axes",
    "csp",
    # django-ninja, for its API docs page's own copy of Swagger UI (no CDN).
    "ninja",
    # Before djhuey, so app's run_huey (queues, a sign of life, draining on SIGTERM)
    # replaces djhuey's own.
    "app.apps.MlopsConfig",
    "huey.contrib.djhuey",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "csp.middleware.CSPMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    # Before the login check: an expired session is ended, and an htmx request that needs a
    # login is sent to the login page as a whole page, not pasted into the one it polls.
    "app.web.security.SessionPolicyMiddleware",
    "app.web.times.TimezoneMiddleware",  # times in the viewer's zone (the browser's, see static/js/live.js)
    "django.contrib.auth.middleware.LoginRequiredMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "app.web.htmx.MessagesMiddleware",  # an action done with htmx replaces the messages shown
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "app.web.errors.NotAllowedPageMiddleware",  # a page, not a blank 405, for a GET of a POST-only address
    # Last, as django-axes requires: it turns a locked-out login into the lockout page.
    "axes.middleware.AxesMiddleware",
]

AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",  # refuses a locked-out login before the password is checked
    "django.contrib.auth.backends.ModelBackend",
]

ROOT_URLCONF = "app.urls"
WSGI_APPLICATION = "app.wsgi.application"

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
                "app.web.access.roles",
            ],
            "builtins": ["app.web.times"],  # the `when` and `ago` filters, in every template
        },
    },
]



def database_settings(url: str) -> dict:
    """The default database from a URL: SQLite by default; PostgreSQL for many workers."""
    database = dj_database_url.parse(
        url,
        # Persistent connections: a worker would otherwise reconnect for every step.
        conn_max_age=env_int("DB_CONN_MAX_AGE", 600, minimum=0),
        conn_health_checks=True,
    )
    if database["ENGINE"] == "django.db.backends.sqlite3":
        database["OPTIONS"] = {
            # IMMEDIATE: a step's bookkeeping transaction takes the write lock at BEGIN, so two
            # workers finishing sibling steps are serialised instead of failing on lock upgrade.
            "transaction_mode": "IMMEDIATE",
            "timeout": 30,
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        }
        database["TEST"] = {"NAME": str(DATA_DIR / "test_db.sqlite3")}
    elif database["ENGINE"] == "django.db.backends.postgresql":
        options = database.setdefault("OPTIONS", {})
        options.setdefault("connect_timeout", env_int("DB_CONNECT_TIMEOUT", 10, minimum=1))
        if env_bool("DB_PREPARED_STATEMENTS", True):
            # Parameters bound by the server, and a statement run 5 times prepared once: the
            # engine's per-step statements are then parsed and planned once per connection.
            # Turn off behind a transaction-pooling PgBouncer, which cannot keep them.
            options.setdefault("server_side_binding", True)
            options.setdefault("prepare_threshold", 5)
        pool_size = env_int("DB_POOL_MAX_SIZE", 0, minimum=0)
        if pool_size:
            # Django's psycopg pool, one per process: a connection is taken per request or
            # task and given back after, instead of each thread keeping one open. It starts
            # with one connection and grows to DB_POOL_MAX_SIZE under load; a process waits
            # at most DB_POOL_TIMEOUT seconds for a free one. (A pool replaces persistent
            # connections: DB_CONN_MAX_AGE does not apply.)
            options["pool"] = {
                "min_size": 1,
                "max_size": pool_size,
                "timeout": env_float("DB_POOL_TIMEOUT", 10.0, minimum=0.1),
                "max_idle": 300,
            }
            database["CONN_MAX_AGE"] = 0
    return database


DATABASES = {"default": database_settings(env_str("DATABASE_URL", f"sqlite:///{DATA_DIR / 'db.sqlite3'}"))}

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "home"
LOGOUT_REDIRECT_URL = "login"

LANGUAGE_CODE = "en-us"
TIME_ZONE = env_str("TIME_ZONE", "UTC")
USE_I18N = False
USE_TZ = True

STATIC_URL = "/static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = BASE_DIR / "staticfiles"
S3_BUCKET_NAME = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")


def artifact_storage(url: str | None) -> dict:
    """The artifact store (app.artifacts): files under ARTIFACTS_DIR by default; with
    ARTIFACTS_URL=s3://bucket/prefix, that bucket (credentials, endpoint and region from the
    usual AWS_* variables, or boto3's own lookup when they are not set)."""
    if url is None:
        return {"BACKEND": "django.core.files.storage.FileSystemStorage", "OPTIONS": {"location": ARTIFACTS_DIR}}
    parts = urlsplit(url)
    bucket, prefix = parts.netloc, parts.path.strip("/")
    if parts.scheme != "s3" or not S3_BUCKET_NAME.fullmatch(bucket) or parts.query or parts.fragment:
        raise ImproperlyConfigured(f"ARTIFACTS_URL={url!r} is not s3://bucket or s3://bucket/prefix")
    if prefix and any(segment in ("", ".", "..") for segment in prefix.split("/")):
        raise ImproperlyConfigured(f"ARTIFACTS_URL={url!r} has an empty, '.' or '..' part in its prefix")
    options = {"bucket_name": bucket, "location": prefix, "file_overwrite": True}
    for option, variable in [
        ("access_key", "AWS_ACCESS_KEY_ID"),
        ("secret_key", "AWS_SECRET_ACCESS_KEY"),
        ("endpoint_url", "AWS_S3_ENDPOINT_URL"),
        ("region_name", "AWS_S3_REGION_NAME"),
    ]:
        value = env_str(variable)
        if value is not None:
            options[option] = value
    return {"BACKEND": "storages.backends.s3.S3Storage", "OPTIONS": options}


STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "artifacts": artifact_storage(ARTIFACTS_URL),
    "staticfiles": {
        "BACKEND": (
            "django.contrib.staticfiles.storage.StaticFilesStorage"
            if DEBUG
            else "whitenoise.storage.CompressedManifestStaticFilesStorage"
        )
    },
}

# --- security ---------------------------------------------------------------------------
# HTTPS: the site is reached over HTTPS (directly, or through a proxy that terminates TLS).
# On unless DEBUG; `make run` serves plain HTTP on 127.0.0.1 and turns it off. It turns on
# the redirect to HTTPS, HSTS and cookies sent over HTTPS only, so `check --deploy` is clean.
HTTPS = env_bool("HTTPS", not DEBUG)
SECURE_SSL_REDIRECT = HTTPS
SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 31_536_000 if HTTPS else 0, minimum=0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", HTTPS)
SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", HTTPS)
# Behind a proxy that terminates TLS: the header it sets to say the request was HTTPS (e.g.
# X-Forwarded-Proto). Only with a proxy that sets it on every request (and drops the client's).
if env_str("PROXY_SSL_HEADER"):
    SECURE_PROXY_SSL_HEADER = ("HTTP_" + env_str("PROXY_SSL_HEADER").upper().replace("-", "_"), "https")
SESSION_COOKIE_SECURE = env_bool("SECURE_COOKIES", HTTPS)
CSRF_COOKIE_SECURE = SESSION_COOKIE_SECURE
SESSION_COOKIE_HTTPONLY = True
X_FRAME_OPTIONS = "DENY"
# A session ends after SESSION_IDLE_MINUTES without a request from its user (a page polling
# on its own does not count), and at the latest SESSION_MAX_HOURS after the login.
SESSION_IDLE_MINUTES = env_int("SESSION_IDLE_MINUTES", 120, minimum=1)
SESSION_COOKIE_AGE = env_int("SESSION_MAX_HOURS", 12, minimum=1) * 3600

# Login throttling (django-axes): after LOGIN_FAILURE_LIMIT failed logins in a row for one
# username from one address, that login is refused for LOGIN_LOCKOUT_MINUTES (also on the
# admin's login). `manage.py unlock_login USERNAME` lifts it at once; both are audited.
AXES_FAILURE_LIMIT = env_int("LOGIN_FAILURE_LIMIT", 10, minimum=1)
AXES_COOLOFF_TIME = datetime.timedelta(minutes=env_int("LOGIN_LOCKOUT_MINUTES", 15, minimum=1))
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True  # consecutive failures: a successful login starts the count again
AXES_LOCKOUT_CALLABLE = "app.web.security.lockout_response"
AXES_VERBOSE = False

# Content-Security-Policy (django-csp): scripts and styles from this site only, no inline
# script; inline style attributes (a progress bar's width, a heat-map cell's shade) allowed.
# A load balancer's health check may come over plain HTTP.
SECURE_REDIRECT_EXEMPT = [r"^healthz$"]
# Prometheus scrapes GET /metrics with this token (Authorization: Bearer …); unset: no metrics.
METRICS_TOKEN = env_str("METRICS_TOKEN", "")

CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": ["'self'"],
        "script-src": ["'self'"],
        "style-src": ["'self'"],
        "style-src-attr": ["'unsafe-inline'"],
        "img-src": ["'self'", "data:"],
        "object-src": ["'none'"],
        "base-uri": ["'self'"],
        "form-action": ["'self'"],
        "frame-ancestors": ["'none'"],
    },
}

# The task queue. `immediate` is always explicit: otherwise djhuey follows DEBUG and would
# run pipeline code inside the web process.


def huey_settings(redis_url: str | None, name: str = "mlops") -> dict:
    """The task queue: a SQLite file in DATA_DIR by default; Redis for many machines.
    `immediate` is always explicit: otherwise djhuey follows DEBUG and would run pipeline
    code inside the web process."""
    huey = {
        "name": name,
        "immediate": env_bool("HUEY_IMMEDIATE", False),
        "results": False,
        "consumer": {
            "workers": env_int("HUEY_WORKERS", 4, minimum=1),
            "worker_type": "thread",
            # Idle polling backs off from 10 ms to at most 100 ms (huey's default is 10 s, which
            # would make a run triggered on an idle worker wait that long for its first step).
            "initial_delay": 0.01,
            "backoff": 1.15,
            "max_delay": env_int("HUEY_MAX_DELAY_MS", 100, minimum=1) / 1000,
            # No periodic tasks: each worker's own thread does the periodic work, once per
            # period across workers (app.runs.worker).
            "periodic": False,
            # SIGTERM (what Docker and Kubernetes send) drains: running steps may finish for
            # WORKER_DRAIN_SECONDS, then are handed over to another worker (app.runs.supervisor).
            "graceful_signal": "TERM",
            "shutdown_timeout": env_float("WORKER_DRAIN_SECONDS", 20.0, minimum=0.0),
        },
    }
    if redis_url:
        huey.update({"huey_class": "huey.RedisHuey", "url": redis_url})
    else:
        # No fsync per queue operation: a process crash loses nothing (WAL), and a task lost
        # to a power failure is found again by the watchdog (app.runs.tasks.stranded_steps).
        huey.update({"huey_class": "huey.SqliteHuey", "filename": str(DATA_DIR / "huey.sqlite3"), "fsync": False})
    return huey


HUEY_REDIS_URL = env_str("HUEY_REDIS_URL")
HUEY = huey_settings(HUEY_REDIS_URL)
# The queue a worker serves unless `run_huey --queue` says otherwise (app.runs.queues).
HUEY_QUEUE = env_str("HUEY_QUEUE", "default")
if not re.fullmatch(r"[a-z0-9][a-z0-9_-]{0,49}", HUEY_QUEUE):
    raise ImproperlyConfigured(f"HUEY_QUEUE={HUEY_QUEUE!r}: a queue is 1–50 lowercase letters, digits, _ or -")
# How often each worker records its sign of life and tries for the watchdog's lease.
WORKER_BEAT_SECONDS = env_float("WORKER_BEAT_SECONDS", 5.0, minimum=0.1)
# How often a worker looks for schedules' due slots (app.ops.scheduler): a slot starts at
# most this long (plus a beat) after its time.
SCHEDULER_SECONDS = env_float("SCHEDULER_SECONDS", 15.0, minimum=0.1)
# How often a worker checks the alert rules (app.ops.alerts) and sends what is due.
ALERTS_SECONDS = env_float("ALERTS_SECONDS", 30.0, minimum=0.1)

# Email for alerts: printed to the worker's output until EMAIL_HOST is set.
EMAIL_HOST = env_str("EMAIL_HOST", "")
EMAIL_PORT = env_int("EMAIL_PORT", 587, minimum=1)
EMAIL_HOST_USER = env_str("EMAIL_HOST_USER", "")
EMAIL_HOST_PASSWORD = env_str("EMAIL_HOST_PASSWORD", "")
EMAIL_USE_TLS = env_bool("EMAIL_USE_TLS", True)
EMAIL_TIMEOUT = env_int("EMAIL_TIMEOUT", 10, minimum=1)
EMAIL_BACKEND = env_str(
    "EMAIL_BACKEND",
    "django.core.mail.backends.smtp.EmailBackend" if EMAIL_HOST else "django.core.mail.backends.console.EmailBackend",
)
DEFAULT_FROM_EMAIL = env_str("DEFAULT_FROM_EMAIL", "mlops@localhost")

# A worker marks the steps it runs as alive every STEP_HEARTBEAT_SECONDS; a running step not
# marked for STEP_LOST_AFTER_SECONDS lost its worker (killed, machine gone) and is re-queued.
STEP_HEARTBEAT_SECONDS = env_float("STEP_HEARTBEAT_SECONDS", 10.0, minimum=0.1)
STEP_LOST_AFTER_SECONDS = env_float("STEP_LOST_AFTER_SECONDS", 60.0, minimum=0.5)
# Each attempt runs in a child process of the worker (app.runs.supervisor), stopped after
# STEP_TIMEOUT_SECONDS unless its step sets timeout= (SIGTERM, then SIGKILL after the grace).
STEP_TIMEOUT_SECONDS = env_float("STEP_TIMEOUT_SECONDS", 86400.0, minimum=1.0)
STEP_KILL_GRACE_SECONDS = env_float("STEP_KILL_GRACE_SECONDS", 10.0, minimum=0.1)
# A child process that ran an attempt well runs the next one too (a fresh one costs ~30 ms),
# up to this many attempts or this much memory; 1 gives every attempt a fresh process.
STEP_PROCESS_REUSE = env_int("STEP_PROCESS_REUSE", 100, minimum=1)
STEP_PROCESS_MAX_MEMORY_MB = env_float("STEP_PROCESS_MAX_MEMORY_MB", 1024.0, minimum=1.0)
# An attempt whose whole worker vanished is tried again this many times (or as often as
# its retries= allow, if more); then the step fails, so a poison step cannot loop forever.
STEP_LOST_RETRIES = env_int("STEP_LOST_RETRIES", 2, minimum=0)
# A worker whose loaded code of a pipeline is not a run's leaves the run's steps for another
# worker; a step no worker with the right code takes within this time fails, saying why.
STEP_CODE_WAIT_SECONDS = env_float("STEP_CODE_WAIT_SECONDS", 120.0, minimum=0.0)
# A step that may not start yet (its concurrency pool is full, its pipeline's
# max_active_runs are all active) is queued again and tried again this many seconds later.
POOL_RECHECK_SECONDS = env_float("POOL_RECHECK_SECONDS", 2.0, minimum=0.05)
# What one attempt of a step may log (a file in the artifact store); the rest is dropped.
STEP_LOG_MAX_BYTES = env_int("STEP_LOG_MAX_BYTES", 10 * 1024 * 1024, minimum=1024)
# A step output whose pickle is at most this big is kept in the database, not as a file
# (no file to create, or to PUT and GET in an object store); 0: every output is a file.
STEP_OUTPUT_INLINE_BYTES = env_int("STEP_OUTPUT_INLINE_BYTES", 1024, minimum=0)
# A mapped step (@p.map) runs one step run per item of a list; at most this many items.
MAP_MAX_ITEMS = env_int("MAP_MAX_ITEMS", 10_000, minimum=1)
# The step page previews an output (unpickling it in the web process) only up to this size;
# a bigger one shows its size and can be downloaded.
STEP_OUTPUT_PREVIEW_BYTES = env_int("STEP_OUTPUT_PREVIEW_BYTES", 5 * 1024 * 1024, minimum=0)
# Retention (app.ops.retention): once a day a worker prunes finished runs older than this
# many days (0: never; `manage.py prune` does it by hand), keeping each pipeline's newest
# PRUNE_KEEP_LAST runs and whatever a deployed model version came from.
PRUNE_OLDER_THAN_DAYS = env_int("PRUNE_OLDER_THAN_DAYS", 0, minimum=0)
PRUNE_KEEP_LAST = env_int("PRUNE_KEEP_LAST", 20, minimum=0)

# Model monitoring (app.mlmodels.predlog, health, drift, trials). Every prediction request
# is logged, off the request path: each web process buffers up to PREDICTION_LOG_BUFFER
# records and a thread of its own writes them every PREDICTION_LOG_FLUSH_SECONDS (a full
# buffer drops the newest, counted and logged; a prediction never waits or fails for it).
PREDICTION_LOG = env_bool("PREDICTION_LOG", True)
PREDICTION_LOG_BUFFER = env_int("PREDICTION_LOG_BUFFER", 10_000, minimum=1)
PREDICTION_LOG_FLUSH_SECONDS = env_float("PREDICTION_LOG_FLUSH_SECONDS", 1.0, minimum=0.01)
# One request in 1/PREDICTION_SAMPLE_RATE keeps its inputs (its first
# PREDICTION_SAMPLE_MAX_INSTANCES instances) for drift, at most PREDICTION_SAMPLES_PER_DAY
# requests per version per day. Outputs are kept for feedback up to that many instances.
PREDICTION_SAMPLE_RATE = env_float("PREDICTION_SAMPLE_RATE", 0.1, minimum=0.0)
if PREDICTION_SAMPLE_RATE > 1:
    raise ImproperlyConfigured(f"PREDICTION_SAMPLE_RATE={PREDICTION_SAMPLE_RATE:g} is a share: between 0 and 1")
PREDICTION_SAMPLES_PER_DAY = env_int("PREDICTION_SAMPLES_PER_DAY", 1000, minimum=0)
PREDICTION_SAMPLE_MAX_INSTANCES = env_int("PREDICTION_SAMPLE_MAX_INSTANCES", 100, minimum=1)
# The prediction log and its per-minute roll-up are kept this many days (0: for ever).
PREDICTION_LOG_DAYS = env_int("PREDICTION_LOG_DAYS", 30, minimum=0)
# How often a worker rolls the log up, computes drift and ends shadow periods.
MONITORING_SECONDS = env_float("MONITORING_SECONDS", 60.0, minimum=0.1)
# Drift (app.mlmodels.drift) compares the sampled inputs (instances) of the last
# DRIFT_WINDOW_HOURS with the training reference, once there are at least DRIFT_MIN_ROWS of
# them; a version's report is computed again once it is DRIFT_EVERY_MINUTES old (0: every
# monitoring period), and reports are kept DRIFT_REPORT_DAYS days (0: for ever).
DRIFT_WINDOW_HOURS = env_float("DRIFT_WINDOW_HOURS", 24.0, minimum=0.01)
DRIFT_MIN_ROWS = env_int("DRIFT_MIN_ROWS", 100, minimum=1)
DRIFT_EVERY_MINUTES = env_float("DRIFT_EVERY_MINUTES", 15.0, minimum=0.0)
DRIFT_REPORT_DAYS = env_int("DRIFT_REPORT_DAYS", 30, minimum=0)
# A shadow copy of a live request waits in a bounded queue for the candidate; when the
# queue is full the copy is dropped (counted), never the live answer slowed.
SHADOW_QUEUE = env_int("SHADOW_QUEUE", 1000, minimum=1)
if STEP_LOST_AFTER_SECONDS <= 2 * STEP_HEARTBEAT_SECONDS:
    raise ImproperlyConfigured("STEP_LOST_AFTER_SECONDS must be more than twice STEP_HEARTBEAT_SECONDS")

# LOG_FORMAT=json: one JSON object per line, with the run and step a line is about.
LOG_FORMAT = env_str("LOG_FORMAT", "plain")
if LOG_FORMAT not in ("plain", "json"):
    raise ImproperlyConfigured(f"LOG_FORMAT={LOG_FORMAT!r} is not one of: plain, json")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"},
        "json": {
            "()": "pythonjsonlogger.json.JsonFormatter",
            "fmt": "%(levelname)s %(name)s %(message)s",
            "rename_fields": {"levelname": "level", "name": "logger"},
            "timestamp": "time",  # ISO 8601, UTC
        },
    },
    "filters": {"step": {"()": "app.runs.logcontext.StepFields"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": LOG_FORMAT, "filters": ["step"]}},
    "root": {"handlers": ["console"], "level": env_str("LOG_LEVEL", "INFO")},
    # A handler of its own, or run_huey adds one at INFO and every step logs four lines.
    "loggers": {
        "huey": {"handlers": ["console"], "level": env_str("HUEY_LOG_LEVEL", "WARNING"), "propagate": False}
    },
}

ALERT_EMAILS = env_list("ALERT_EMAILS")
