"""Outputs that scale: each output in its format (pickle, Parquet, .npy; chosen by type or
declared), several named outputs from one step (a step naming one reads that one only), and
the time a step spent loading its inputs and saving its outputs."""

import datetime
import pickle

import numpy
import pandas
import pyarrow
import pytest
from django.conf import settings
from django.urls import reverse

from app import artifacts
from app.api import tokens
from app.artifacts import formats
from app.models import Run, Status, StepRun
from app.ops import retention
from app.pipelines import registry as registry_module
from app.pipelines.registry import Pipeline, registry
from app.runs import engine, tasks
from tests.conftest import wait_for
from tests.test_artifact_storage import bucket, s3_endpoint  # noqa: F401 — fixtures: the store in a bucket

OUTPUTS = "tests.fixtures.output_pipelines"
RETURNED = {}  # what the steps of the pipelines defined here return, by step
RECEIVED = {}  # what they received, by step


def frame(rows=500):
    """Numbers, text, datetimes and a category, under a named index that is not 0 … n-1."""
    return pandas.DataFrame(
        {
            "amount": numpy.linspace(0, 1, rows),
            "count": numpy.arange(rows, dtype="int32"),
            "name": [f"row {i}" for i in range(rows)],
            "when": pandas.date_range("2026-01-01", periods=rows, freq="min"),
            "kind": pandas.Categorical(["cat", "dog", "eel"] * (rows // 3) + ["cat"] * (rows % 3)),
        },
        index=pandas.Index([f"id-{i}" for i in range(rows)], name="row_id"),
    )


def run(name):
    return engine.run_inline(*engine.start_run(name))


def steps_of(run):
    return {sr.step_name: sr for sr in StepRun.objects.filter(run=run)}


@pytest.fixture
def two_steps(define):
    """`t_pass`: `give` returns RETURNED["give"] (declaring `format`, if given), `take` records
    what it received and returns it."""

    def make(format=None):
        pipe = define("t_pass")

        @pipe.step(format=format)
        def give(ctx):
            return RETURNED["give"]

        @pipe.step()
        def take(ctx, give):
            RECEIVED["take"] = give
            return give

        return pipe

    yield make
    RETURNED.clear()
    RECEIVED.clear()


def passed(two_steps, value, format=None):
    """Run t_pass with `value`: (give's step run, take's step run, what take received)."""
    two_steps(format)
    RETURNED["give"] = value
    finished = run("t_pass")
    steps = steps_of(finished)
    assert finished.status == Status.SUCCEEDED, steps["give"].error or steps["take"].error
    return steps["give"], steps["take"], RECEIVED["take"]


pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("remove_run_files")]


# --- formats chosen by type -------------------------------------------------------------------


def test_it_saves_a_dataframe_as_parquet_and_the_next_step_gets_the_same_dataframe(two_steps):
    value = frame()

    give, take, received = passed(two_steps, value)

    assert give.output_path == f"runs/{give.run_id}/give.parquet" and give.output_inline is None
    assert type(received) is pandas.DataFrame
    pandas.testing.assert_frame_equal(received, value)  # index, its name and every dtype included
    assert received.index.name == "row_id" and str(received["kind"].dtype) == "category"
    assert str(received["when"].dtype).startswith("datetime64")
    assert take.output_path.endswith("take.parquet")


def test_it_saves_a_pyarrow_table_as_parquet_and_gives_back_a_table(two_steps):
    value = pyarrow.table({"x": numpy.arange(1000), "label": ["a", "b"] * 500})

    give, _take, received = passed(two_steps, value)

    assert give.output_path.endswith("give.parquet")
    assert type(received) is pyarrow.Table and received.equals(value)
    assert received.schema.metadata is None  # our mark of a DataFrame is not added to a table


def test_it_saves_a_numpy_array_as_npy(two_steps):
    value = numpy.arange(3000, dtype="float32").reshape(1000, 3)

    give, _take, received = passed(two_steps, value)

    assert give.output_path == f"runs/{give.run_id}/give.npy"
    assert received.dtype == numpy.float32 and numpy.array_equal(received, value)
    with artifacts.open_artifact(give.output_path) as stored:
        assert numpy.array_equal(numpy.load(stored, allow_pickle=False), value)  # a plain .npy file


def test_an_array_of_objects_stays_a_pickle(two_steps):
    value = numpy.array([{"a": i} for i in range(500)], dtype=object)

    give, _take, received = passed(two_steps, value)

    assert give.output_path.endswith("give.pkl") and list(received) == list(value)


@pytest.mark.parametrize("value", [pandas.DataFrame({"a": [1, 2, 3]}), numpy.arange(10)], ids=["frame", "array"])
def test_small_tables_and_arrays_stay_pickles_in_the_database(two_steps, value):
    give, _take, received = passed(two_steps, value)

    assert give.output_path == "" and give.output_inline is not None  # under STEP_OUTPUT_INLINE_BYTES
    assert type(pickle.loads(give.output_inline)) is type(value) and type(received) is type(value)


def test_a_dataframe_parquet_cannot_hold_is_pickled_and_the_log_says_why(two_steps):
    value = pandas.DataFrame({0: numpy.arange(300), "name": numpy.arange(300)})  # column names: int and str

    give, _take, received = passed(two_steps, value)

    assert give.output_path.endswith("give.pkl")
    pandas.testing.assert_frame_equal(received, value)
    assert "Parquet cannot hold (parquet keeps column names as strings, and its column names mix int, str)" in give.log


def test_anything_else_is_pickled_as_before(two_steps):
    value = {"numbers": list(range(2000))}

    give, _take, received = passed(two_steps, value)

    assert give.output_path == f"runs/{give.run_id}/give.pkl" and received == value


def test_an_output_saved_before_formats_still_loads(settings):
    name = "runs/999999/legacy"  # no suffix: a plain pickle, as outputs once were
    artifacts.write_atomically(name, lambda path: open(path, "wb").write(pickle.dumps({"old": True})))
    try:
        assert artifacts.load_output(name) == {"old": True}
    finally:
        artifacts.delete_tree("runs/999999")


# --- declared formats ------------------------------------------------------------------------


@pytest.mark.parametrize("format, value, suffix", [
    ("parquet", pandas.DataFrame({"a": [1, 2]}), ".parquet"),  # small, but declared: a file all the same
    ("npy", numpy.arange(4), ".npy"),
    ("pickle", pandas.DataFrame({"a": numpy.arange(1000)}), ".pkl"),
])
def test_a_declared_format_is_used_whatever_the_size(two_steps, format, value, suffix):
    give, _take, received = passed(two_steps, value, format=format)

    assert give.output_path.endswith("give" + suffix) and give.output_inline is None
    if isinstance(value, numpy.ndarray):
        assert numpy.array_equal(received, value)
    else:
        pandas.testing.assert_frame_equal(received, value)


@pytest.mark.parametrize("format, value, message", [
    ("parquet", [1, 2, 3],
     "step 'give' declares format='parquet', but returned a list; parquet takes a pandas DataFrame or a pyarrow Table"),
    ("npy", {"a": 1},
     "step 'give' declares format='npy', but returned a dict; npy takes a numpy array (numpy.ndarray) whose dtype "
     "is not object"),
    ("npy", numpy.array([object()]),
     "step 'give' declares format='npy', but returned a numpy.ndarray; npy takes a numpy array (numpy.ndarray) "
     "whose dtype is not object, and this one's dtype is object (its items are Python objects)"),
])
def test_a_value_its_declared_format_cannot_take_fails_the_step_saying_why(two_steps, format, value, message):
    two_steps(format)
    RETURNED["give"] = value

    finished = run("t_pass")

    give = steps_of(finished)["give"]
    assert (finished.status, give.status) == (Status.FAILED, Status.FAILED)
    assert give.error == f"OutputError: {message}"
    assert list(artifacts.walk(f"runs/{finished.pk}")) == []


def test_a_declared_parquet_without_pyarrow_says_to_install_it(two_steps, monkeypatch):
    monkeypatch.setattr(formats, "has_pyarrow", lambda: False)
    two_steps("parquet")
    RETURNED["give"] = frame(10)

    give = steps_of(run("t_pass"))["give"]

    assert give.status == Status.FAILED
    assert "declares format='parquet'" in give.error and "pip install pyarrow" in give.error


def test_without_pyarrow_a_dataframe_is_pickled(two_steps, monkeypatch):
    monkeypatch.setattr(formats, "has_pyarrow", lambda: False)

    give, _take, received = passed(two_steps, frame())

    assert give.output_path.endswith("give.pkl") and received.equals(frame())
    assert "Parquet" not in give.log


def test_the_formats_the_registry_accepts_are_the_stores():
    assert registry_module.OUTPUT_FORMATS == tuple(formats.FORMATS)


def test_an_unknown_format_is_a_definition_problem():
    pipe = Pipeline(name="p")

    @pipe.step(format="csv")
    def load(ctx):
        return 1

    assert pipe.validate() == ["step 'load': format must be one of pickle, parquet, npy, not 'csv'"]


# --- named outputs --------------------------------------------------------------------------


@pytest.fixture
def splitting(define, settings):
    """`t_named`: `split` returns RETURNED["split"] as four named outputs (X_* as .npy);
    `fit` takes two of them by name, `report` takes the step (all four)."""
    settings.STEP_OUTPUT_INLINE_BYTES = 0  # every part a file, so a missing one would show
    pipe = define("t_named")

    @pipe.step(outputs={"X_train": "npy", "X_test": "npy", "y_train": None, "y_test": None})
    def split(ctx):
        return RETURNED["split"]

    @pipe.step()
    def fit(ctx, X_train, y_train):
        RECEIVED["fit"] = (X_train, y_train)
        return float(X_train.sum()) + sum(y_train)

    @pipe.step()
    def report(ctx, split):
        RECEIVED["report"] = split
        return sorted(split)

    RETURNED["split"] = {
        "X_train": numpy.ones((8, 2)), "X_test": numpy.zeros((2, 2)), "y_train": [1] * 8, "y_test": [0, 0],
    }
    yield pipe
    RETURNED.clear()
    RECEIVED.clear()


def test_each_named_output_is_saved_on_its_own_and_a_step_gets_the_ones_it_names(splitting):
    finished = run("t_named")

    steps = steps_of(finished)
    assert finished.status == Status.SUCCEEDED
    split = steps["split"]
    assert split.output_path == f"runs/{finished.pk}/split.outputs"
    assert [(name, path, fmt) for name, path, _inline, fmt in artifacts.manifest(split.output_path)] == [
        ("X_train", f"runs/{finished.pk}/split.X_train.npy", "npy"),
        ("X_test", f"runs/{finished.pk}/split.X_test.npy", "npy"),
        ("y_train", f"runs/{finished.pk}/split.y_train.pkl", "pickle"),
        ("y_test", f"runs/{finished.pk}/split.y_test.pkl", "pickle"),
    ]
    X_train, y_train = RECEIVED["fit"]
    assert numpy.array_equal(X_train, numpy.ones((8, 2))) and y_train == [1] * 8
    assert list(RECEIVED["report"]) == ["X_train", "X_test", "y_train", "y_test"]  # the declared order
    assert numpy.array_equal(RECEIVED["report"]["X_test"], numpy.zeros((2, 2)))
    assert artifacts.load_output(split.output_path, part="y_test") == [0, 0]


def test_a_step_naming_one_output_does_not_read_the_others(splitting):
    new_run, ready = engine.start_run("t_named")
    [split_id] = ready
    after_split = engine.execute_step(split_id)
    split = StepRun.objects.get(pk=split_id)
    for name, path, _inline, _fmt in artifacts.manifest(split.output_path):
        if name in ("X_test", "y_test"):  # what fit does not take
            artifacts.delete(path)

    fit_id = StepRun.objects.get(run=new_run, step_name="fit").pk
    assert fit_id in after_split
    engine.execute_step(fit_id)

    fit = StepRun.objects.get(pk=fit_id)
    assert fit.status == Status.SUCCEEDED, fit.error
    assert artifacts.load_output(fit.output_path, fit.output_inline) == 16.0 + 8
    report = StepRun.objects.get(run=new_run, step_name="report")
    engine.execute_step(report.pk)  # it takes them all: one is gone, and it says which
    report.refresh_from_db()
    assert report.status == Status.FAILED
    assert f"the saved output 'runs/{new_run.pk}/split.X_test.npy' is missing from the artifact store" in report.error


def test_named_outputs_may_be_returned_as_a_tuple(splitting):
    RETURNED["split"] = (numpy.ones((8, 2)), numpy.zeros((2, 2)), [1] * 8, [0, 0])

    finished = run("t_named")

    assert finished.status == Status.SUCCEEDED
    assert RECEIVED["fit"][1] == [1] * 8


def test_small_named_outputs_and_their_manifest_are_kept_in_the_database(splitting, settings):
    settings.STEP_OUTPUT_INLINE_BYTES = 1024
    RETURNED["split"] = {"X_train": numpy.ones((8, 2)), "X_test": numpy.zeros((2, 2)), "y_train": [1], "y_test": [0]}

    finished = run("t_named")

    split = steps_of(finished)["split"]
    assert split.output_path == f"runs/{finished.pk}/split.outputs" and split.output_inline is not None
    assert sorted(name for name, _size in artifacts.walk(f"runs/{finished.pk}")) == [
        f"runs/{finished.pk}/split.X_test.npy", f"runs/{finished.pk}/split.X_train.npy",  # declared npy: files
    ]
    assert RECEIVED["fit"][1] == [1]


@pytest.mark.parametrize("value, message", [
    ({"X_train": 1, "X_test": 2, "y_train": 3},
     "step 'split' declares the outputs X_train, X_test, y_train, y_test, but returned a dict with the keys "
     "'X_train', 'X_test', 'y_train' (missing: y_test)"),
    ({"X_train": 1, "X_test": 2, "y_train": 3, "y_test": 4, "extra": 5},
     "step 'split' declares the outputs X_train, X_test, y_train, y_test, but returned a dict with the keys "
     "'X_train', 'X_test', 'y_train', 'y_test', 'extra' (not declared: 'extra')"),
    ((1, 2, 3),
     "step 'split' declares 4 outputs (X_train, X_test, y_train, y_test), but returned a tuple of 3"),
    ([1, 2, 3, 4],
     "step 'split' declares the outputs X_train, X_test, y_train, y_test, but returned a builtins.list: return a "
     "dict with those keys, or a tuple of 4 values in that order"),
])
def test_a_return_value_that_is_not_the_declared_outputs_fails_the_step(splitting, value, message):
    RETURNED["split"] = value

    finished = run("t_named")

    split = steps_of(finished)["split"]
    assert split.status == Status.FAILED and split.error == f"OutputError: {message}"


def test_a_part_that_fails_leaves_no_files_behind(splitting):
    RETURNED["split"] = {"X_train": numpy.ones(3), "X_test": [1], "y_train": [1], "y_test": [0]}  # X_test: not npy

    finished = run("t_named")

    split = steps_of(finished)["split"]
    assert split.error.startswith("OutputError: step 'split', output 'X_test' declares format='npy', but returned a list")
    assert list(artifacts.walk(f"runs/{finished.pk}")) == []  # X_train's file, written first, is removed


def test_named_outputs_enter_the_snapshot_only_where_used():
    pipe = Pipeline(name="p")

    @pipe.step()
    def load(ctx):
        return 1

    plain = pipe.snapshot()["steps"][0]
    pipe = Pipeline(name="p")

    @pipe.step(outputs=["a", "b"], format="npy")
    def split(ctx):
        return 1, 2

    @pipe.step()
    def use(ctx, b):
        return b

    steps = {s["name"]: s for s in pipe.snapshot()["steps"]}
    assert "outputs" not in plain and "format" not in plain
    assert (steps["split"]["outputs"], steps["split"]["format"]) == (["a", "b"], "npy")
    assert steps["use"]["after"] == ["split"] and steps["use"]["inputs"] == ["b"]  # the edge is inferred
    assert pipe.steps["split"].outputs == {"a": "npy", "b": "npy"}


def test_bad_output_names_are_definition_problems_naming_the_step_and_output():
    pipe = Pipeline(name="p")

    @pipe.step(group="models")
    def load(ctx):
        return 1

    @pipe.step(outputs=["load", "models", "x", "x", "not valid", "y"])
    def split(ctx, load):
        return {}

    @pipe.step(outputs={"y": None, "z": "csv"})
    def other(ctx):
        return {}

    @pipe.step(outputs=[])
    def empty(ctx):
        return {}

    assert pipe.validate() == [
        "step 'split': output 'x' is named twice",
        "step 'split': output 'not valid' must be a Python identifier",
        "step 'other': output 'z' has format 'csv'; formats are pickle, parquet, npy",
        "step 'empty': outputs must name at least one output",
        "step 'split': output 'load' has the name of a step: a parameter 'load' could mean either",
        "step 'split': output 'models' has the name of a group: a parameter 'models' could mean either",
        "step 'other': output 'y' is an output of step 'split' too: output names must be unique in the pipeline",
    ]


def test_a_step_cannot_take_its_own_output():
    pipe = Pipeline(name="p")

    @pipe.step(outputs=["a"])
    def split(ctx, a):
        return {"a": 1}

    assert pipe.validate() == ["step 'split' takes its own output 'a'"]


def test_a_parameter_naming_nothing_lists_the_outputs_too():
    pipe = Pipeline(name="p")

    @pipe.step(outputs=["a"])
    def split(ctx):
        return {"a": 1}

    @pipe.step()
    def use(ctx, b):
        return b

    [problem] = pipe.validate()
    assert "parameter 'b' names no step, group or output of 'p' (steps: split, use; outputs: a)" in problem


def test_retention_deletes_every_part_of_named_and_parquet_outputs(splitting, two_steps, settings):
    named = run("t_named")
    RETURNED["give"] = frame()
    two_steps()
    tabled = run("t_pass")
    assert len(list(artifacts.walk(f"runs/{named.pk}"))) == 7  # 4 parts and a manifest, fit's, report's
    assert any(name.endswith(".parquet") for name, _size in artifacts.walk(f"runs/{tabled.pk}"))

    retention.prune(older_than=datetime.timedelta(0), keep_last=0)

    assert not Run.objects.filter(pk__in=[named.pk, tabled.pk]).exists()
    assert list(artifacts.walk(f"runs/{named.pk}")) == list(artifacts.walk(f"runs/{tabled.pk}")) == []


# --- the page, the download, the API ---------------------------------------------------------


def test_the_step_page_shows_each_named_output_and_the_times(splitting, operator_client):
    finished = run("t_named")
    split = steps_of(finished)["split"]

    page = operator_client.get(reverse("run_step", args=[finished.pk, "split"])).content.decode()

    assert '<h3 id="output-X_train"><code>X_train</code></h3>' in page
    assert f"<code>runs/{finished.pk}/split.X_train.npy</code> in the artifact store" in page and " as .npy, " in page
    assert "?output=y_test" in page and "<code>numpy.ndarray</code>" in page
    assert (f"(loading inputs {split.load_seconds:.2f} s · saving output {split.save_seconds:.2f} s)") in page


def test_the_pipeline_page_of_a_step_lists_its_named_outputs(splitting, operator_client):
    page = operator_client.get(reverse("pipeline_step", args=["t_named", "split"])).content.decode()

    assert "<dt>Named outputs</dt><dd><code>X_train</code> <code>X_test</code> <code>y_train</code> <code>y_test</code>" in page


def test_a_named_output_downloads_as_its_file(splitting, operator_client):
    finished = run("t_named")

    response = operator_client.get(reverse("step_output", args=[finished.pk, "split"]), {"output": "X_train"})
    whole = operator_client.get(reverse("step_output", args=[finished.pk, "split"]))

    assert response.status_code == 200
    assert response["Content-Disposition"] == f'attachment; filename="run-{finished.pk}-split.X_train.npy"'
    with artifacts.open_artifact(f"runs/{finished.pk}/split.X_train.npy") as stored:
        assert b"".join(response.streaming_content) == stored.read()
    assert whole.status_code == 404 and "has named outputs: download one of them" in whole.content.decode()


def test_the_page_says_how_a_parquet_output_is_saved(two_steps, operator_client):
    give, _take, _received = passed(two_steps, frame())

    page = operator_client.get(reverse("run_step", args=[give.run_id, "give"])).content.decode()

    assert " as Parquet, <code>" in page and "<dt>Shape</dt><dd>500 rows × 5 columns</dd>" in page
    assert "pandas.read_parquet" in page


def test_a_success_records_the_time_spent_loading_and_saving(two_steps, operator, client):
    give, take, _received = passed(two_steps, frame(20_000))

    assert all(isinstance(sr.load_seconds, float) and sr.load_seconds >= 0 for sr in (give, take))
    assert all(isinstance(sr.save_seconds, float) and sr.save_seconds > 0 for sr in (give, take))
    secret = tokens.create(operator, "tests", scopes=["runs:read"])[1]
    answer = client.get(f"/api/runs/{give.run_id}", HTTP_AUTHORIZATION=f"Bearer {secret}").json()
    by_name = {step["name"]: step for step in answer["steps"]}
    assert by_name["take"]["load_seconds"] == pytest.approx(take.load_seconds)
    assert by_name["give"]["save_seconds"] == pytest.approx(give.save_seconds)


# --- a real worker, a bucket -----------------------------------------------------------------


@pytest.fixture
def output_pipelines():
    registry.discover(OUTPUTS)
    try:
        yield
    finally:
        registry.discover(settings.PIPELINES_PACKAGE)


def finished_run(pk):
    found = Run.objects.get(pk=pk)
    return found if found.is_finished else None


def check_split_run(finished):
    steps = steps_of(finished)
    assert finished.status == Status.SUCCEEDED, {name: sr.error for name, sr in steps.items()}
    assert artifacts.load_output(steps["fit"].output_path, steps["fit"].output_inline) == {
        "shape": [15, 2], "mean": 14.5, "frame": "DataFrame", "index": "row_id", "kinds": "category", "rows": 200,
    }
    assert artifacts.load_output(steps["everything"].output_path, steps["everything"].output_inline) == [
        "X_train", "X_test", "frame", "report",
    ]
    assert all(sr.load_seconds is not None and sr.save_seconds is not None for sr in steps.values())
    return steps


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_a_worker_saves_and_loads_named_outputs_in_child_processes(output_pipelines, start_worker):
    worker = start_worker(PIPELINES_PACKAGE=OUTPUTS)

    started = tasks.trigger("t_split", source="cli")

    finished = wait_for(lambda: finished_run(started.pk), timeout=90, message="the run to finish")
    steps = check_split_run(finished)
    assert all(sr.worker.split(":")[1] == str(worker.pid) for sr in steps.values())  # its threads, …
    assert registry.get("t_split").steps["make"].isolation == "process"  # … each attempt in a child process
    assert {name for name, _size in artifacts.walk(f"runs/{finished.pk}")} >= {
        f"runs/{finished.pk}/make.X_train.npy", f"runs/{finished.pk}/make.frame.parquet",
    }


def test_every_format_works_with_the_store_in_a_bucket(bucket, output_pipelines, settings):  # noqa: F811
    settings.STEP_OUTPUT_INLINE_BYTES = 0

    finished = run("t_split")

    check_split_run(finished)
    assert set(bucket.keys(f"runs/{finished.pk}/")) == {
        f"runs/{finished.pk}/{name}" for name in (
            "make.X_train.npy", "make.X_test.npy", "make.frame.parquet", "make.report.pkl", "make.outputs",
            "fit.pkl", "everything.pkl",
        )
    }
    frame_back = artifacts.load_output(f"runs/{finished.pk}/make.outputs", part="frame")
    assert frame_back.index.name == "row_id" and len(frame_back) == 200
