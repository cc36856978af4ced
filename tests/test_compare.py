"""Comparing two runs (/runs/compare/?a=…&b=…): the runs side by side, every parameter with
the differing ones marked in words, metrics with b − a, step durations in topological
order; the picker for the other run; bad input answered 400 or 404 with a message.

Runs are made in-process with the engine (`start_run`, `run_inline`), as the worker runs them.
"""

import datetime
import re

import pytest
from django.conf import settings
from django.utils import timezone

from app.models import Run, Status, StepRun
from app.pipelines import Params, param
from app.pipelines.registry import registry
from app.runs import engine, paramsets
from tests.conftest import make_user

pytestmark = pytest.mark.django_db


class CompareParams(Params):
    lr: float = param(0.1, ge=0, le=1, help="learning rate")
    label: str = param("plain", max_length=100, help="a free text")
    epochs: int = param(2, ge=1, help="how many")


def define_v1(define):
    """prepare → train; train logs accuracy once and loss twice."""
    pipe = define("t_compare", params=CompareParams)

    @pipe.step()
    def prepare(ctx):
        return 1

    @pipe.step(after=[prepare])
    def train(ctx, prepare):
        ctx.log_metric("accuracy", 0.5 + ctx.params.lr)
        ctx.log_metric("loss", 1.0)
        ctx.log_metric("loss", 1 - ctx.params.lr)

    return pipe


@pytest.fixture
def v1(define):
    return define_v1(define)


def finished(name="t_compare", user=None, revision=None, **params):
    return engine.run_inline(*engine.start_run(name, params, user=user, parameter_revision=revision))


def compare(client, a, b=None, **query):
    url = f"/runs/compare/?a={a.pk if isinstance(a, Run) else a}"
    if b is not None:
        url += f"&b={b.pk if isinstance(b, Run) else b}"
    return client.get(url, query)


def text(response):
    return response.content.decode()


def row(page, table_id, header):
    """The <tr> of the table `table_id` whose row header contains `header`."""
    table = re.search(rf'<table[^>]* id="{table_id}">(.*?)</table>', page, re.DOTALL).group(1)
    for found in re.findall(r"<tr[^>]*>.*?</tr>", table, re.DOTALL):
        if re.search(rf'<th scope="row">(<code>)?{re.escape(header)}\b', found):
            return found
    raise AssertionError(f"no row {header!r} in #{table_id}")


def set_times(run, step, start, seconds):
    StepRun.objects.filter(run=run, step_name=step).update(
        started_at=start, finished_at=start + datetime.timedelta(seconds=seconds)
    )


# --- access ----------------------------------------------------------------------------------


def test_it_sends_anonymous_visitors_to_the_login_page(client):
    response = client.get("/runs/compare/?a=1&b=2")

    assert response.status_code == 302
    assert response["Location"] == "/login/?next=/runs/compare/%3Fa%3D1%26b%3D2"


def test_it_forbids_stakeholders(stakeholder_client, v1):
    a, b = finished(), finished()

    response = compare(stakeholder_client, a, b)

    assert response.status_code == 403
    assert "Only operators may open this page or do this." in text(response)


def test_it_refuses_a_post(operator_client):
    response = operator_client.post("/runs/compare/?a=1&b=2")

    assert response.status_code == 405


# --- two runs side by side --------------------------------------------------------------------


def test_it_shows_the_two_runs_side_by_side(operator_client, operator, v1):
    a = finished(user=operator)
    b = finished(user=make_user("priya", "operators"), lr=0.3)

    response = compare(operator_client, a, b)

    page = text(response)
    assert response.status_code == 200
    assert f"<h1>Run #{a.pk} <small>compared with</small> run #{b.pk}</h1>" in page
    assert f'<a href="/runs/{a.pk}/">Run #{a.pk}</a>' in page and f'<a href="/runs/{b.pk}/">Run #{b.pk}</a>' in page
    started_by = row(page, "compare-runs", "Started by")
    assert "<td>olivia</td>" in started_by and "<td>priya</td>" in started_by
    assert "differs" not in row(page, "compare-runs", "Pipeline")
    assert "differs" not in row(page, "compare-runs", "Status")
    code = row(page, "compare-runs", "Code")
    assert "same code" in code and "differs" not in code
    digest = a.snapshot.source_hash
    assert code.count(f'<code title="{digest}">{digest[:10]}</code>') == 2
    assert "different pipelines" not in page
    assert f'href="/runs/compare/?a={b.pk}&amp;b={a.pk}"' in page  # swap


def test_it_marks_the_parameters_that_differ_in_words(operator_client, v1):
    a = finished(lr=0.1, label="same")
    b = finished(lr=0.3, label="same")

    page = text(compare(operator_client, a, b))

    lr = row(page, "compare-params", "lr")
    assert 'class="differs"' in lr and '<span class="differs-tag">differs</span>' in lr
    assert "<code>0.1</code>" in lr and "<code>0.3</code>" in lr
    for same in ("label", "epochs"):
        assert "differs" not in row(page, "compare-params", same)


def test_it_escapes_parameter_values(operator_client, v1):
    a = finished(label="<script>alert(1)</script>")
    b = finished(label="plain")

    page = text(compare(operator_client, a, b))

    assert "<script>alert(1)</script>" not in page
    assert "<code>&lt;script&gt;alert(1)&lt;/script&gt;</code>" in page
    assert "differs" in row(page, "compare-params", "label")


def test_it_shows_each_metric_with_the_difference(operator_client, v1):
    a, b = finished(lr=0.1), finished(lr=0.3)

    page = text(compare(operator_client, a, b))

    accuracy = row(page, "compare-metrics", "accuracy")
    assert '<td class="num">0.6000</td>' in accuracy and '<td class="num">0.8000</td>' in accuracy
    assert "+0.2" in accuracy and "(+33.3 %)" in accuracy
    loss = row(page, "compare-metrics", "loss")  # logged twice: the last value, saying so
    assert "0.9000 <span" in loss and "0.7000 <span" in loss and "(last of 2)" in loss
    assert "−0.2" in loss and "(−22.2 %)" in loss
    assert "<td><code>train</code></td>" in accuracy


def test_it_shows_the_step_durations_side_by_side_with_the_difference(operator_client, v1):
    a, b = finished(), finished()
    start = timezone.now()
    set_times(a, "train", start, 2)
    set_times(b, "train", start, 5)
    set_times(a, "prepare", start, 1.5)
    set_times(b, "prepare", start, 0.5)

    page = text(compare(operator_client, a, b))

    train = row(page, "compare-steps", "train")
    assert f'<a class="duration" href="/runs/{a.pk}/steps/train/" title="train of run #{a.pk}">2.000 s</a>' in train
    assert f'<a class="duration" href="/runs/{b.pk}/steps/train/" title="train of run #{b.pk}">5.000 s</a>' in train
    assert "+3.000 s" in train
    assert "−1.000 s" in row(page, "compare-steps", "prepare")
    assert "differs" not in train


def test_it_flags_other_code_and_lines_up_the_steps_of_both_in_topological_order(operator_client, v1, define):
    a = finished()
    registry.discover(settings.PIPELINES_PACKAGE)  # t_compare again, with one more step in the middle
    pipe = define("t_compare", params=CompareParams)

    @pipe.step()
    def prepare(ctx):
        return 1

    @pipe.step(after=[prepare])
    def tune(ctx, prepare):
        return 2

    @pipe.step(after=[tune])
    def train(ctx, tune):
        ctx.log_metric("accuracy", 0.9)

    b = finished()

    page = text(compare(operator_client, a, b))

    assert a.snapshot.source_hash != b.snapshot.source_hash
    code = row(page, "compare-runs", "Code")
    assert 'class="differs"' in code and '<span class="differs-tag">differs</span>' in code
    steps = re.findall(r'<th scope="row"><code>(\w+)</code>', page.split('id="compare-steps"')[1])
    assert steps == ["prepare", "tune", "train"]
    tune_row = row(page, "compare-steps", "tune")
    assert "— not in this run" in tune_row and "differs" in tune_row
    loss = row(page, "compare-metrics", "loss")  # only a logged it
    assert '<span class="muted">—</span>' in loss


def test_it_says_when_the_runs_are_of_different_pipelines(operator_client, v1):
    a = finished()
    b = finished("fanout_demo", rows=10)

    page = text(compare(operator_client, a, b))

    assert "These runs are of different pipelines" in page
    assert 'class="differs"' in row(page, "compare-runs", "Pipeline")
    assert "— not in this run" in row(page, "compare-steps", "load")
    assert "— not in this run" in row(page, "compare-steps", "train")
    rows = row(page, "compare-params", "rows")
    assert re.search(r'<td class="value"><span class="muted"[^>]*>—</span></td>', rows)


def test_it_names_the_parameter_sets(operator_client, operator, v1):
    chosen = paramsets.create("t_compare", "fast <b>one</b>", {"lr": 0.5}, operator)
    a = finished(revision=chosen.latest, lr=0.5)
    b = finished()

    page = text(compare(operator_client, a, b))

    sets = row(page, "compare-runs", "Parameter set")
    assert "“fast &lt;b&gt;one&lt;/b&gt;”</a> r1" in sets and '<span class="muted">none</span>' in sets
    assert "differs" in sets


# --- choosing the other run ---------------------------------------------------------------------


def test_it_offers_the_recent_runs_of_the_same_pipeline_when_b_is_missing(operator_client, operator, v1):
    chosen = paramsets.create("t_compare", "nightly", {"lr": 0.2}, operator)
    older = finished(revision=chosen.latest, lr=0.2)
    failed = finished()
    Run.objects.filter(pk=failed.pk).update(status=Status.FAILED)
    a = finished()
    finished("fanout_demo", rows=10)  # another pipeline's run is not offered

    response = compare(operator_client, a)

    page = text(response)
    assert response.status_code == 200
    assert f"<h1>Compare run #{a.pk} with…</h1>" in page and "<h2>A recent run of t_compare</h2>" in page
    options = re.findall(r'<option value="(\d+)">([^<]*)</option>', page)
    assert [int(pk) for pk, _label in options] == [failed.pk, older.pk]
    day = timezone.localtime(older.created_at).strftime("%Y-%m-%d")
    assert options[0][1].startswith(f"#{failed.pk} · failed · {day}")
    assert options[1][1].startswith(f"#{older.pk} · succeeded · {day}") and options[1][1].endswith("· “nightly” r1")
    assert f'<input type="hidden" name="a" value="{a.pk}">' in page
    assert '<input type="number" name="b"' in page
    assert 'method="get" action="/runs/compare/"' in page


def test_it_offers_at_most_50_recent_runs(operator_client, v1):
    run, _ready = engine.start_run("t_compare", {})
    Run.objects.bulk_create([
        Run(snapshot=run.snapshot, pipeline_name="t_compare", params={}, status=Status.SUCCEEDED) for _ in range(60)
    ])
    newest = Run.objects.order_by("-id").first()

    page = text(compare(operator_client, run))

    options = re.findall(r'<option value="(\d+)">', page)
    assert len(options) == 50 and int(options[0]) == newest.pk
    assert "The 50 most recent other runs of t_compare, newest first." in page


def test_it_shows_an_empty_form_without_a_query(operator_client):
    response = operator_client.get("/runs/compare/")

    assert response.status_code == 200
    assert "Compare two runs" in text(response)
    assert '<input type="number" name="a"' in text(response)


# --- bad input ----------------------------------------------------------------------------------


def test_it_answers_400_when_a_is_not_a_run_number(operator_client):
    response = operator_client.get("/runs/compare/", {"a": "x<b>", "b": "2"})

    assert response.status_code == 400
    assert "“x&lt;b&gt;” is not a run number: give a as a number, such as 12." in text(response)
    assert "x<b>" not in text(response)


def test_it_answers_400_when_b_is_not_a_run_number(operator_client, v1):
    a = finished()

    response = compare(operator_client, a, "abc")

    assert response.status_code == 400
    assert "“abc” is not a run number: give b as a number, such as 12." in text(response)
    assert f'<input type="hidden" name="a" value="{a.pk}">' in text(response)  # and the picker again


def test_it_answers_400_when_a_run_is_compared_with_itself(operator_client, v1):
    a = finished()

    response = compare(operator_client, a, a)

    assert response.status_code == 400
    assert f"Run #{a.pk} compared with itself shows no difference: pick another run." in text(response)


def test_it_answers_400_when_a_is_empty(operator_client):
    response = operator_client.get("/runs/compare/?a=&b=3")

    assert response.status_code == 400
    assert "Say which run to compare: give its number as a." in text(response)


@pytest.mark.parametrize("missing", ["a", "b"])
def test_it_answers_404_naming_a_missing_run(operator_client, v1, missing):
    run = finished()
    query = {"a": 99999, "b": run.pk} if missing == "a" else {"a": run.pk, "b": 99999}

    response = operator_client.get("/runs/compare/", query)

    assert response.status_code == 404
    assert "There is no run #99999." in text(response)


def test_it_answers_404_for_a_number_too_big_for_the_database(operator_client, v1):
    run = finished()

    response = compare(operator_client, run, "9" * 30)

    assert response.status_code == 404
    assert f"There is no run #{'9' * 30}." in text(response)
