"""A full disk at trigger time: the operator is told at once what refused the run, and
nothing of it runs later behind their back once the disk has room again.

When the database refuses to save a new run (trigger, retry, re-run), the page says so with
status 503 and nothing of the run exists. Then the whole machine: DATA_DIR on a small tmpfs,
filled for real, under a real web process and a real worker. On SQLite the database and the queue are files in DATA_DIR: the database refuses the run,
and the page says that nothing was saved or started. On PostgreSQL + Redis only the artifact
store is in DATA_DIR: the run is saved and queued, and its first step, which writes its log
there, fails saying the disk has no space; the run fails, nothing waits.
"""

import errno
import os
import sqlite3
import subprocess
import time
from contextlib import closing
from pathlib import Path

import pytest
import requests
from django.contrib.sessions.backends.db import SessionStore
from django.db import connection
from huey.contrib.djhuey import HUEY
from huey.storage import SqliteStorage

from app.models import UNFINISHED, AuditEvent, Run, Status, StepRun
from app.runs import engine, tasks
from app.web.security import ACTIVE_AT
from tests.conftest import PASSWORD, gunicorn, on_postgres, process_env, wait_for

# Transactional: on PostgreSQL a read-only default applies to the transactions that follow.
pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def read_only_database():
    """Call it to make this process's database refuse every write from then on, for real
    (SQLite's query_only, PostgreSQL's read-only transactions); writable again at the end."""

    def set_read_only(on: bool):
        with connection.cursor() as cursor:
            if on_postgres():
                cursor.execute(f"SET default_transaction_read_only = {'on' if on else 'off'}")
            else:
                cursor.execute(f"PRAGMA query_only = {int(on)}")

    yield lambda: set_read_only(True)
    set_read_only(False)


def test_a_trigger_the_database_refuses_says_so_and_saves_nothing(operator_client, read_only_database):
    read_only_database()

    response = operator_client.post("/pipelines/fanout_demo/run/", {"rows": "5", "seed": "7", "pause": "0"})

    page = response.content.decode()
    assert response.status_code == 503
    assert "The run could not be saved: the database refused it (" in page and "). Nothing was started." in page
    assert '<a href="/pipelines/fanout_demo/">Back</a>' in page
    assert not Run.objects.exists()


@pytest.mark.parametrize("action, pipeline, params", [
    ("retry/start", "flaky_demo", {"fail": "true"}),
    ("rerun", "fanout_demo", {"rows": "5"}),
])
def test_a_retry_or_rerun_the_database_refuses_says_so_and_saves_nothing(
    operator_client, read_only_database, action, pipeline, params
):
    earlier = engine.run_inline(*engine.start_run(pipeline, params))
    read_only_database()

    response = operator_client.post(f"/runs/{earlier.pk}/{action}/")

    page = response.content.decode()
    assert response.status_code == 503
    assert "The run could not be saved: the database refused it (" in page
    assert f'<a href="/runs/{earlier.pk}/">Back</a>' in page
    assert list(Run.objects.values_list("pk", flat=True)) == [earlier.pk] and not AuditEvent.objects.exists()


# --- the whole machine on a full disk -------------------------------------------------------


class Disk:
    def __init__(self, path: Path):
        self.path = path
        self.filler = path / "filler"

    def fill(self):
        """Write a file until not one more byte fits."""
        chunk = b"\0" * 65536
        with open(self.filler, "wb", buffering=0) as filler:
            try:
                while True:
                    filler.write(chunk)
            except OSError as exc:
                if exc.errno != errno.ENOSPC:
                    raise
        assert os.statvfs(self.path).f_bavail == 0

    def free(self):
        self.filler.unlink()


@pytest.fixture
def disk(tmp_path):
    """A 16 MB tmpfs of its own, unmounted at the end."""
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs as DATA_DIR needs root")
    path = tmp_path / "data"
    path.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m,mode=0700", "tmpfs", str(path)], check=True)
    try:
        yield Disk(path)
    finally:
        subprocess.run(["umount", str(path)], check=True)


@pytest.fixture
def site(disk, start_worker, operator, tmp_path, monkeypatch):
    """A real gunicorn and a real worker with DATA_DIR on `disk`: the site's base URL and the
    web process's log. On SQLite the database and queue files go there too: the test
    database is copied onto the disk, and this process reads that copy and that queue from
    here on. (Asked for before the worker, `disk` is unmounted after the worker stopped.)"""
    env = {"DATA_DIR": str(disk.path)}
    queue = None
    try:
        if not on_postgres():
            copy = disk.path / "db.sqlite3"
            with closing(sqlite3.connect(connection.settings_dict["NAME"])) as source, closing(sqlite3.connect(copy)) as target:
                source.backup(target)
            connection.close()
            monkeypatch.setitem(connection.settings_dict, "NAME", str(copy))
            queue = SqliteStorage(name=HUEY.name, filename=str(disk.path / "huey.sqlite3"))
            monkeypatch.setattr(HUEY, "storage", queue)
            env["TEST_DATABASE_URL"] = f"sqlite:///{copy}"
        start_worker(**env)
        log_path = tmp_path / "gunicorn.log"
        with gunicorn(log_path, process_env(**env), workers=1) as url:
            yield url, log_path
    finally:
        connection.close()  # this process's hold on the disk, so that it can be unmounted
        if queue is not None:
            queue.close()


def log_in(url, username) -> requests.Session:
    """A browser session logged in through the login form."""
    browser = requests.Session()
    browser.get(f"{url}/login/", timeout=10)
    response = browser.post(
        f"{url}/login/", {"username": username, "password": PASSWORD, "csrfmiddlewaretoken": browser.cookies["csrftoken"]},
        timeout=10,
    )
    assert response.status_code == 200 and "/login/" not in response.url
    return browser


def trigger(browser, url) -> requests.Response:
    """The run form of fanout_demo, submitted (redirects followed)."""
    return browser.post(
        f"{url}/pipelines/fanout_demo/run/",
        {"rows": "5", "seed": "7", "pause": "0", "csrfmiddlewaretoken": browser.cookies["csrftoken"]}, timeout=60,
    )


def finished(run_pk) -> Run | None:
    return Run.objects.exclude(status__in=UNFINISHED).filter(pk=run_pk).first()


def idle_for_two_minutes(browser):
    """As if the operator had read the page for two minutes: their next request records its
    activity in the session (a database write)."""
    session = SessionStore(session_key=browser.cookies["sessionid"])
    session[ACTIVE_AT] = time.time() - 120
    session.save()


@pytest.mark.worker
def test_a_run_triggered_on_a_full_disk_says_why_at_once_and_never_runs_later(site, disk, operator):
    url, web_log = site
    browser = log_in(url, operator.username)
    assert trigger(browser, url).status_code == 200  # the site works while the disk has room
    assert wait_for(lambda: finished(Run.objects.get().pk), timeout=60, message="the first run").status == Status.SUCCEEDED
    idle_for_two_minutes(browser)
    disk.fill()

    response = trigger(browser, url)

    if on_postgres():
        run = Run.objects.latest("pk")
        assert response.status_code == 200 and response.url == f"{url}/runs/{run.pk}/"
        assert f"Run #{run.pk} of fanout_demo started." in response.text
        run = wait_for(lambda: finished(run.pk), timeout=60, message="the run on the full disk to finish")
        assert run.status == Status.FAILED
        steps = {sr.step_name: sr for sr in run.step_runs.all()}
        assert steps["load"].status == Status.FAILED
        assert steps["load"].error.endswith("OSError: [Errno 28] No space left on device")
        assert {sr.status for name, sr in steps.items() if name != "load"} == {Status.UPSTREAM_FAILED}
        assert "No space left on device" in browser.get(response.url, timeout=10).text
    else:
        assert response.status_code == 503 and response.url == f"{url}/pipelines/fanout_demo/run/"
        assert ("The run could not be saved: the database refused it (database or disk is full). Nothing was started."
                in response.text)
        assert '<a href="/pipelines/fanout_demo/">Back</a>' in response.text
        assert Run.objects.count() == 1  # nothing half-saved
        assert "the run could not be saved: the database refused it (database or disk is full)" in web_log.read_text()

    disk.free()  # the worker has every chance now: a new run goes through, and nothing else runs
    after = trigger(browser, url)
    assert after.status_code == 200 and "started." in after.text
    latest = Run.objects.latest("pk")
    assert wait_for(lambda: finished(latest.pk), timeout=60, message="the run after the disk has room").status == (
        Status.SUCCEEDED
    )
    if on_postgres():
        run.refresh_from_db()
        assert run.status == Status.FAILED
        # load ran once, on the full disk, and was not tried again; the others never ran.
        assert {sr.step_name: sr.attempt for sr in run.step_runs.all()} == {
            "load": 1, "total": 0, "mean": 0, "spread": 0, "report": 0,
        }
    else:
        assert Run.objects.count() == 2  # the run before the disk filled and the one after
    # Nor would the watchdog ever find anything to queue: it only re-queues steps left
    # marked queued or retrying, and there are none.
    assert not StepRun.objects.filter(status__in=[Status.QUEUED, Status.RETRYING]).exists()
    assert tasks.stranded_steps() == []
    assert HUEY.pending_count() == 0
