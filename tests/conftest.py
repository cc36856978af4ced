"""Shared fixtures: users of each role, a real Huey worker process, a real browser."""

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from django.conf import settings
from django.contrib.auth.models import Group, Permission, User
from django.db import connection
from huey.contrib.djhuey import HUEY
from playwright.sync_api import sync_playwright
from sklearn.dummy import DummyClassifier

from app.mlmodels import serving
from app.mlmodels.predlog import prediction_log
from app.models import ModelVersion
from app.pipelines.registry import Params, param, pipeline, registry
from app.runs import engine

ROOT = Path(__file__).resolve().parent.parent
PASSWORD = "correct horse battery staple"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]


def wait_for(predicate, timeout=30.0, interval=0.05, message="condition"):
    """Poll `predicate` until it returns something truthy; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {message}")
        time.sleep(interval)


def run_on_worker(start_worker, package: str, name: str, params=None, timeout=60.0, **worker_env):
    """Start a real worker on the pipelines of `package`, run pipeline `name` on it and wait
    until the run has finished (returned); the suite's pipelines are loaded again after."""
    from app.models import Run
    from app.runs import tasks

    registry.discover(package)
    try:
        start_worker(PIPELINES_PACKAGE=package, **worker_env)
        run, ready = engine.start_run(name, params or {})
        tasks.enqueue(ready)
        return wait_for(lambda: Run.objects.filter(pk=run.pk, finished_at__isnull=False).first(), timeout=timeout,
                        message=f"the run of {name} to finish")
    finally:
        registry.discover(settings.PIPELINES_PACKAGE)


def database_url() -> str:
    """The URL of the database this test runs on (the test database pytest-django made),
    for the worker and web processes a test starts; any back end."""
    db = connection.settings_dict
    if db["ENGINE"] == "django.db.backends.sqlite3":
        return f"sqlite:///{db['NAME']}"
    return f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}"


def process_env(**extra) -> dict:
    """The environment of a worker, web or command process a test starts: the test settings
    on this test's database, artifact store and queue."""
    env = dict(
        os.environ,
        DJANGO_SETTINGS_MODULE="tests.settings",
        DATA_DIR=str(settings.DATA_DIR),
        TEST_DATABASE_URL=database_url(),
        PYTHONUNBUFFERED="1",
        # A worker stopped at the end of a test hands its running steps over in 2 s.
        WORKER_DRAIN_SECONDS="2",
    )
    env.update(extra)
    return env


def on_postgres() -> bool:
    return connection.vendor == "postgresql"


def served(answer: dict) -> dict:
    """A prediction answer without its request id (new for every request)."""
    assert isinstance(answer.get("id"), str) and len(answer["id"]) == 36, answer
    return {key: value for key, value in answer.items() if key != "id"}


@pytest.fixture(autouse=True)
def fresh_prediction_log():
    """Each test starts with an empty prediction log buffer: a record an earlier test left (its
    database gone, its write refused) must not be written into this test's database."""
    # A fresh shadow thread, with this test's settings (SHADOW_QUEUE); an earlier test's copy
    # still not answered is left behind with its thread.
    serving.shadow.wait_idle()
    serving.shadow.reset()
    serving.shadow.dropped = 0
    prediction_log.buffer.clear()
    prediction_log.dropped = 0
    yield


@contextlib.contextmanager
def database_refusing(table: str, message: str = "No space left on device"):
    """The database itself refuses every new row of `table` (a trigger), as a full disk or a
    broken table would; everything else works. SQLite says a full disk its own way."""
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(f"CREATE FUNCTION refuse_{table}() RETURNS trigger AS $$ BEGIN "
                           f"RAISE EXCEPTION 'could not extend file: {message}'; END $$ LANGUAGE plpgsql")
            cursor.execute(f"CREATE TRIGGER refuse_{table} BEFORE INSERT ON {table} FOR EACH ROW "
                           f"EXECUTE FUNCTION refuse_{table}()")
        else:
            cursor.execute(f"CREATE TRIGGER refuse_{table} BEFORE INSERT ON {table} "
                           "BEGIN SELECT RAISE(ABORT, 'database or disk is full'); END")
    try:
        yield
    finally:
        with connection.cursor() as cursor:
            if connection.vendor == "postgresql":
                cursor.execute(f"DROP TRIGGER refuse_{table} ON {table}")
                cursor.execute(f"DROP FUNCTION refuse_{table}()")
            else:
                cursor.execute(f"DROP TRIGGER refuse_{table}")


def make_user(username, group=None, superuser=False):
    user = User.objects.create_user(username, password=PASSWORD, is_staff=superuser, is_superuser=superuser)
    if group:
        # Transactional tests flush the tables, data-migration rows included; put the role
        # back as migration 0002 made it (tests/test_roles.py checks the migration itself).
        role, created = Group.objects.get_or_create(name=group)
        if created and group == "operators":
            role.permissions.add(Permission.objects.get(codename="operate", content_type__app_label="app"))
        user.groups.add(role)
    return user


@pytest.fixture
def operator(db):
    return make_user("olivia", "operators")


@pytest.fixture
def stakeholder(db):
    return make_user("sam", "stakeholders")


@pytest.fixture
def admin(db):
    return make_user("ada", superuser=True)


@pytest.fixture
def operator_client(client, operator):
    client.force_login(operator)
    return client


@pytest.fixture
def stakeholder_client(client, stakeholder):
    client.force_login(stakeholder)
    return client


@pytest.fixture
def remove_run_files(db):
    """Remove the outputs and logs of this test's runs: a later test whose run gets the same
    id (the database is rolled back, ids are given again) must not find them."""
    yield
    from app import artifacts
    from app.models import Run

    for run_id in Run.objects.values_list("pk", flat=True):
        artifacts.delete_tree(f"runs/{run_id}")
        artifacts.delete_tree(f"logs/{run_id}")


@pytest.fixture
def define():
    """Define test pipelines in the global registry for one test, then rediscover the examples."""
    try:
        yield pipeline
    finally:
        registry.discover(settings.PIPELINES_PACKAGE)


@pytest.fixture
def start_worker(transactional_db, tmp_path):
    """Start real `manage.py run_huey` processes on this test's database and queue files;
    all are stopped (SIGTERM, then SIGKILL) when the test ends."""
    HUEY.flush()  # drop tasks left by earlier tests
    processes = []

    def start(**extra_env):
        env = process_env(**{"HUEY_WORKERS": "4", **extra_env})
        log_path = tmp_path / f"worker-{len(processes)}.log"
        with open(log_path, "wb") as log:
            process = subprocess.Popen(
                [sys.executable, "manage.py", "run_huey"], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT
            )
        process.log_path = log_path
        processes.append(process)
        return process

    yield start
    for process in processes:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
    for process in processes:
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextlib.contextmanager
def gunicorn(log_path: Path, env: dict, workers: int = 2):
    """A real gunicorn serving with `env`, logging to `log_path`; its base URL. Stopped
    (SIGTERM, then SIGKILL) on the way out."""
    port = free_port()
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "app.wsgi", "--bind", f"127.0.0.1:{port}", "--workers", str(workers),
             "--no-control-socket"],
            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
        )

    def listening():
        if process.poll() is not None:
            raise AssertionError(f"gunicorn exited: {log_path.read_text()}")
        with socket.socket() as probe:
            return probe.connect_ex(("127.0.0.1", port)) == 0

    try:
        wait_for(listening, timeout=30, message="gunicorn to listen")
        yield f"http://127.0.0.1:{port}"
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture
def web_server(transactional_db, tmp_path):
    """A real gunicorn (two worker processes) serving this test's database; its base URL."""
    with gunicorn(tmp_path / "gunicorn.log", process_env()) as url:
        yield url


@pytest.fixture
def worker(start_worker):
    """One real worker process."""
    return start_worker()


def chromium_available():
    return Path(CHROMIUM).exists() or shutil.which("chromium")


@pytest.fixture(scope="session")
def browser():
    if not chromium_available():
        if os.environ.get("CI") == "true":
            pytest.fail("Debian's chromium is missing (make test installs it when run as root)")
        pytest.skip("Debian's chromium is not installed")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.set_default_timeout(20_000)
    yield page
    context.close()


# --- models ------------------------------------------------------------------------------


class ModelDemoParams(Params):
    model: str = param("demo", help="model name")
    constant: int = param(1, help="what every prediction is")
    accuracy: float = param(0.9, help="the metric the version is registered with")
    fail_after_register: bool = param(False, help="fail the step after registering")


@pytest.fixture
def model_demo(define):
    """A pipeline `t_model_demo` whose one step registers a model that predicts
    `constant` for every instance of two features (scikit-learn's DummyClassifier, so any
    process can load it), with `accuracy` as its metric and a confusion matrix."""
    pipe = define("t_model_demo", params=ModelDemoParams)

    @pipe.step()
    def train(ctx):
        model = DummyClassifier(strategy="constant", constant=ctx.params.constant)
        model.fit([[0.0, 0.0], [1.0, 1.0]], [ctx.params.constant, ctx.params.constant])
        ctx.log_confusion_matrix([0, 1, 1, 1], [0, 1, 1, 0], display_labels=["no", "yes"])
        ctx.register_model(ctx.params.model, model, metrics={"accuracy": ctx.params.accuracy, "loss": 1 - ctx.params.accuracy})
        if ctx.params.fail_after_register:
            raise RuntimeError("broke after registering")

    return pipe


def train_version(**params) -> ModelVersion:
    """Run t_model_demo inline; the version it registered."""
    run = engine.run_inline(*engine.start_run("t_model_demo", params))
    return ModelVersion.objects.select_related("model").filter(run=run).get()
