"""A step's output on its page: type, size and a capped, escaped look inside (read only under
a size limit, any failure to read it one line), and the stored bytes as a download."""

import html
import pickle

import numpy
import pytest
from django.test import override_settings
from django.urls import reverse

from app import artifacts
from app.models import StepRun
from app.runs import engine
from tests.conftest import train_version

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("remove_run_files")]

RETURNED = {}  # what the step of t_returns returns, set by each test




class Exploding:
    """Pickles fine; unpickling it raises (as a class whose module changed would)."""

    def __reduce__(self):
        return (_explode, ("the columns changed",))


def _explode(message):
    raise ValueError(message)


class FrameLike:
    """Enough of a pandas DataFrame: shape, columns, dtypes, head() and itertuples()."""

    def __init__(self, rows, columns):
        self.rows, self.columns = rows, columns

    @property
    def shape(self):
        return (len(self.rows), len(self.columns))

    def head(self, n):
        return FrameLike(self.rows[:n], self.columns)

    def itertuples(self, index=True, name=None):
        return ((i, *row) for i, row in enumerate(self.rows))


@pytest.fixture
def returning(define):
    """Run t_returns, whose one step `give` returns `value`; its step run."""
    pipe = define("t_returns")

    @pipe.step()
    def give(ctx):
        return RETURNED["value"]

    def run(value):
        RETURNED["value"] = value
        run = engine.run_inline(*engine.start_run("t_returns", {}))
        return run.step_runs.get()

    return run


def step_page(client, step_run):
    response = client.get(reverse("run_step", args=[step_run.run_id, step_run.step_name]))
    assert response.status_code == 200
    return response.content.decode()


def test_it_previews_a_dict(returning, operator_client):
    give = returning({"accuracy": 0.93, "labels": ["cat", "dog"]})

    page = step_page(operator_client, give)

    size = len(bytes(give.output_inline))
    assert "<dt>Type</dt><dd><code>dict</code></dd>" in page
    assert f"{size} bytes" in page and "kept in the database" in page
    assert html.escape(repr({"accuracy": 0.93, "labels": ["cat", "dog"]})) in page
    assert f'href="/runs/{give.run_id}/steps/give/output/"' in page


def test_it_previews_a_list(returning, operator_client):
    page = step_page(operator_client, returning([1, 2, 3]))

    assert "<code>list</code>" in page and "[1, 2, 3]</pre>" in page
    assert "Cut:" not in page


def test_it_previews_a_numpy_array_with_its_shape_and_dtype(returning, operator_client):
    page = step_page(operator_client, returning(numpy.arange(12, dtype="float64").reshape(3, 4)))

    assert "<code>numpy.ndarray</code>" in page
    assert "<dt>Shape</dt><dd>3 × 4</dd>" in page and "<dt>dtype</dt><dd><code>float64</code></dd>" in page
    assert "array([[ 0.,  1.,  2.,  3.]," in page


def test_it_shows_a_big_array_short(returning, operator_client):
    page = step_page(operator_client, returning(numpy.zeros((500, 500))))

    assert "<dd>500 × 500</dd>" in page and "..." in page
    assert "Cut:" not in page  # numpy summarised it


def test_it_cuts_a_long_repr_and_says_so(returning, operator_client):
    value = list(range(5000))

    page = step_page(operator_client, returning(value))

    assert f"Cut: the first 2000 of {len(repr(value))} characters." in page
    assert repr(value)[:2000] + "</pre>" in page


def test_it_shows_the_head_of_a_dataframe_escaped(returning, operator_client):
    rows = [[i, f"name {i}"] for i in range(25)] + [[99, "<b>bold</b>"]]
    page = step_page(operator_client, returning(FrameLike(rows, ["id", "<i>name</i>"])))

    assert "<dt>Shape</dt><dd>26 rows × 2 columns</dd>" in page
    assert "<th>&lt;i&gt;name&lt;/i&gt;</th>" in page and "<i>name</i>" not in page
    assert '<th scope="row">9</th><td>9</td><td>name 9</td>' in page
    assert "name 10" not in page  # the first 10 rows only
    assert "The first 10 rows" in page


def test_it_escapes_what_an_output_holds(returning, operator_client):
    page = step_page(operator_client, returning({"note": "<script>alert(1)</script>"}))

    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "<script>alert(1)" not in page


def test_it_says_in_one_line_that_an_output_cannot_be_read(returning, operator_client):
    page = step_page(operator_client, returning(Exploding()))

    assert "The output could not be read: ValueError: the columns changed." in page
    assert "<dt>Type</dt><dd><span class=\"muted\">not read</span></dd>" in page


def test_it_says_so_for_bytes_that_are_no_pickle(returning, operator_client):
    give = returning(1)
    StepRun.objects.filter(pk=give.pk).update(output_inline=b"\x80\x05not a pickle")

    page = step_page(operator_client, StepRun.objects.get(pk=give.pk))

    assert "The output could not be read: UnpicklingError:" in page


@override_settings(STEP_OUTPUT_PREVIEW_BYTES=1000)
def test_it_does_not_read_an_output_over_the_limit(returning, operator_client):
    give = returning(list(range(2000)))

    page = step_page(operator_client, give)

    assert give.output_path and give.output_inline is None  # bigger than STEP_OUTPUT_INLINE_BYTES: a file
    assert "was not read: it is bigger than the 1,000 bytes a preview reads" in page
    assert f"{artifacts.size_of(give.output_path)} bytes" in page and "⤓ Download" in page


def test_it_downloads_the_stored_bytes_of_a_file(returning, operator_client):
    give = returning(list(range(2000)))

    response = operator_client.get(reverse("step_output", args=[give.run_id, "give"]))

    with artifacts.open_artifact(give.output_path) as stored:
        assert b"".join(response.streaming_content) == stored.read()
    assert response.status_code == 200 and response["Content-Type"] == "application/octet-stream"
    assert response["Content-Disposition"] == f'attachment; filename="run-{give.run_id}-give.pkl"'


def test_it_downloads_an_output_kept_in_the_database(returning, operator_client):
    give = returning({"a": 1})

    response = operator_client.get(reverse("step_output", args=[give.run_id, "give"]))

    assert pickle.loads(b"".join(response.streaming_content)) == {"a": 1}


def test_it_answers_404_for_a_step_without_output(operator_client):
    run = engine.run_inline(*engine.start_run("flaky_demo", {}))

    response = operator_client.get(reverse("step_output", args=[run.pk, "validate"]))

    assert response.status_code == 404
    assert "Step validate of run" in response.content.decode() and "has no output: it is failed" in response.content.decode()


def test_it_forbids_stakeholders_the_download(returning, stakeholder_client):
    give = returning(1)

    assert stakeholder_client.get(reverse("step_output", args=[give.run_id, "give"])).status_code == 403


def test_it_names_the_model_files_a_step_registered_with_their_size(model_demo, operator_client):
    version = train_version()

    page = step_page(operator_client, version.step_run)

    assert "Models registered" in page
    assert f'<a href="/models/demo/versions/{version.version}/">demo v{version.version}</a>' in page
    assert f"joblib, {version.file_size} bytes" in page
