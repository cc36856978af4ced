"""The pipeline API (app/registry.py): definitions, validation, parameters and snapshots.

Pipelines here are built as plain `Pipeline` objects (or added to a fresh `Registry`), so the
global registry with the example pipelines is never touched.
"""

import datetime
import re
import textwrap
import typing

import pytest

from app.pipelines.registry import ParamError, Params, Pipeline, Registry, param


def pipeline_with(params_class):
    """A one-step pipeline around `params_class`, for parameter tests."""
    pipe = Pipeline(name="p", params_class=params_class)

    @pipe.step()
    def only(ctx):
        return None

    return pipe


class KitchenSink(Params):
    n: int = param(10, ge=1, le=100, help="How many")
    rate: float = param(0.5, ge=0.0, le=1.0)
    flag: bool = param(False)
    label: str = param("x")
    day: datetime.date = param(datetime.date(2024, 1, 31))
    mode: typing.Literal["fast", "slow"] = param("fast")
    limit: typing.Optional[int] = param(None, ge=0)
    size: int = param(ge=1)  # required


# --- steps and their dependencies ----------------------------------------------------------


def test_it_passes_upstream_outputs_to_a_step_by_parameter_name():
    pipe = Pipeline(name="p")

    @pipe.step()
    def load(ctx):
        return [1, 2]

    @pipe.step(after=[load])
    def total(ctx, load):
        return sum(load)

    assert pipe.validate() == []
    assert pipe.steps["total"].after == ["load"]
    assert pipe.steps["total"].inputs == ["load"]
    assert pipe.steps["load"].inputs == []


def test_it_accepts_dependencies_by_function_or_by_name():
    pipe = Pipeline(name="p")

    @pipe.step()
    def load(ctx):
        return 1

    @pipe.step(after=[load])
    def by_function(ctx):
        return 2

    @pipe.step(after=["load", "by_function"])
    def by_name(ctx):
        return 3

    assert pipe.validate() == []
    assert set(pipe.graph().edges) == {("load", "by_function"), ("load", "by_name"), ("by_function", "by_name")}


def test_it_names_a_step_by_its_name_argument():
    pipe = Pipeline(name="p")

    @pipe.step(name="renamed")
    def load(ctx):
        return 1

    assert list(pipe.steps) == ["renamed"]


def test_it_reports_a_cycle_naming_its_steps():
    pipe = Pipeline(name="p")

    @pipe.step(after=["b"])
    def a(ctx):
        return 1

    @pipe.step(after=[a])
    def b(ctx):
        return 2

    assert pipe.validate() == ["its steps form a cycle: a → b → a"]


def test_it_reports_a_step_that_waits_for_itself():
    pipe = Pipeline(name="p")

    @pipe.step(after=["a"])
    def a(ctx):
        return 1

    assert pipe.validate() == ["its steps form a cycle: a → a"]


def test_it_reports_an_unknown_dependency():
    pipe = Pipeline(name="p")

    @pipe.step(after=["lod"])
    def total(ctx):
        return 1

    assert pipe.validate() == ["step 'total': depends on unknown step 'lod'"]


def test_it_reports_a_step_defined_twice():
    pipe = Pipeline(name="p")

    @pipe.step()
    def load(ctx):
        return 1

    @pipe.step(name="load")
    def load_again(ctx):
        return 2

    assert pipe.validate() == ["step 'load' is defined twice"]
    assert pipe.steps["load"].func is load.func  # the first definition is kept


def test_a_parameter_naming_a_step_is_an_edge_without_after():
    pipe = Pipeline(name="p")

    @pipe.step()
    def load(ctx):
        return 1

    @pipe.step()
    def left(ctx, load):
        return 2

    @pipe.step(after=[load])  # order only, and given twice: one edge
    def right(ctx, left, load):
        return 3

    assert pipe.validate() == []
    assert set(pipe.graph().edges) == {("load", "left"), ("left", "right"), ("load", "right")}
    assert pipe.steps["right"].after == ["load"]  # what was written
    assert [s["after"] for s in pipe.snapshot()["steps"]] == [[], ["load"], ["load", "left"]]


def test_a_parameter_naming_nothing_is_reported_with_the_steps_and_groups_there_are():
    pipe = Pipeline(name="p")

    @pipe.step(group="sources")
    def load(ctx):
        return 1

    @pipe.step()
    def fit(ctx, lod):
        return 2

    [problem] = pipe.validate()
    assert re.fullmatch(
        r"step 'fit' \(tests/test_registry.py:\d+\): parameter 'lod' names no step or group of 'p' "
        r"\(steps: load, fit; groups: sources\); a step's parameters after ctx take upstream outputs, read settings "
        r"from ctx.params",
        problem,
    )


def test_a_cycle_made_by_parameters_is_reported():
    pipe = Pipeline(name="p")

    @pipe.step()
    def first(ctx, second):
        return 1

    @pipe.step()
    def second(ctx, first):
        return 2

    assert pipe.validate() == ["its steps form a cycle: first → second → first"]


def test_a_parameter_naming_a_group_takes_every_step_of_it():
    pipe = Pipeline(name="p")

    @pipe.step()
    def load(ctx):
        return 1

    for region in ("north", "south", "east"):
        @pipe.step(name=f"sales_{region}", group="regions")
        def sales(ctx, load):
            return load

    @pipe.step()
    def report(ctx, regions, load):
        return regions

    assert pipe.validate() == []
    assert pipe.groups() == {"regions": ["sales_north", "sales_south", "sales_east"]}
    assert pipe.upstream(pipe.steps["report"]) == ["sales_north", "sales_south", "sales_east", "load"]
    snapshot = pipe.snapshot()
    assert snapshot["groups"] == {"regions": ["sales_north", "sales_south", "sales_east"]}
    assert [s.get("group") for s in snapshot["steps"]] == [None, "regions", "regions", "regions", None]


@pytest.mark.parametrize("group, problem", [
    ("load", "group 'load' has the name of a step: a parameter 'load' could mean either"),
    ("two words", "step 'fit': group must be a Python identifier, not 'two words'"),
])
def test_a_bad_group_name_is_reported(group, problem):
    pipe = Pipeline(name="p")

    @pipe.step()
    def load(ctx):
        return 1

    @pipe.step(group=group)
    def fit(ctx, load):
        return 2

    assert pipe.validate() == [problem]


def test_a_step_cannot_take_its_own_group():
    pipe = Pipeline(name="p")

    @pipe.step(group="models")
    def forest(ctx):
        return 1

    @pipe.step(group="models")
    def boosted(ctx, models):
        return 2

    assert "step 'boosted' takes its own group 'models'" in pipe.validate()


def test_a_pipeline_without_groups_keeps_its_snapshot_hash():
    """Groups enter the snapshot only where used: runs started before they existed keep
    matching the code that is loaded."""
    pipe = Pipeline(name="p")

    @pipe.step()
    def load(ctx):
        return 1

    assert "groups" not in pipe.snapshot() and "group" not in pipe.snapshot()["steps"][0]


def test_it_accepts_an_input_from_further_upstream():
    pipe = Pipeline(name="p")

    @pipe.step()
    def load(ctx):
        return 1

    @pipe.step(after=[load])
    def middle(ctx):
        return 2

    @pipe.step(after=[middle])
    def last(ctx, load):
        return load

    assert pipe.validate() == []


def test_it_reports_a_step_without_a_context_argument():
    pipe = Pipeline(name="p")

    @pipe.step()
    def load():
        return 1

    assert pipe.validate() == ["step 'load': its function must take the run context as first argument"]


def test_it_reports_negative_retries():
    pipe = Pipeline(name="p")

    @pipe.step(retries=-1)
    def load(ctx):
        return 1

    assert pipe.validate() == ["step 'load': retries must be a whole number ≥ 0"]


def test_it_reports_a_dependency_on_a_step_of_another_pipeline():
    other = Pipeline(name="other")
    pipe = Pipeline(name="p")

    @other.step()
    def load(ctx):
        return 1

    @pipe.step(after=[load])
    def total(ctx):
        return 2

    assert "step 'total': depends on 'load' of another pipeline ('other')" in pipe.validate()


def test_it_reports_a_pipeline_without_steps():
    assert Pipeline(name="p").validate() == ["it has no steps"]


def test_it_reports_a_pipeline_name_with_a_slash():
    pipe = Pipeline(name="a/b")

    @pipe.step()
    def load(ctx):
        return 1

    assert pipe.validate() == ["its name may only use letters, digits, '_', '-' and '.'"]


# --- the registry -----------------------------------------------------------------------------


def one_step_pipeline(name, module):
    pipe = Pipeline(name=name, module=module)

    @pipe.step()
    def load(ctx):
        return 1

    return pipe


def test_it_reports_a_pipeline_name_defined_twice():
    registry = Registry()
    registry.add(one_step_pipeline("dup", "pipelines.first"))
    registry.add(one_step_pipeline("dup", "pipelines.second"))

    assert registry.problems() == {
        "dup": ["the name is defined twice (in pipelines.first and pipelines.second)"]
    }
    assert registry.pipelines() == {}


def test_it_leaves_a_pipeline_with_a_problem_out_whole():
    registry = Registry()
    good = one_step_pipeline("good", "pipelines.good")
    bad = Pipeline(name="bad", module="pipelines.bad")

    @bad.step()
    def fine(ctx):
        return 1

    @bad.step(after=["missing"])
    def broken(ctx):
        return 2

    registry.add(good)
    registry.add(bad)

    assert registry.pipelines() == {"good": good}
    assert registry.get("bad") is None
    assert registry.problems() == {"bad": ["step 'broken': depends on unknown step 'missing'"]}


def test_it_lists_usable_pipelines_by_name():
    registry = Registry()
    registry.add(one_step_pipeline("zeta", "m"))
    registry.add(one_step_pipeline("alpha", "m"))

    assert list(registry.pipelines()) == ["alpha", "zeta"]


def test_it_forgets_its_list_of_usable_pipelines_when_one_is_added():
    registry = Registry()
    registry.add(one_step_pipeline("first", "m"))
    assert list(registry.pipelines()) == ["first"]

    registry.add(one_step_pipeline("second", "m"))

    assert list(registry.pipelines()) == ["first", "second"]


# --- parameter declarations -------------------------------------------------------------------


def test_it_reads_every_supported_parameter_type():
    specs = {spec.name: spec for spec in pipeline_with(KitchenSink).param_specs}

    assert {name: spec.type_name for name, spec in specs.items()} == {
        "n": "int",
        "rate": "float",
        "flag": "bool",
        "label": "str",
        "day": "date",
        "mode": "choice",
        "limit": "int",
        "size": "int",
    }
    assert specs["mode"].choices == ("fast", "slow")
    assert specs["limit"].optional and not specs["limit"].required
    assert specs["size"].required and specs["size"].describe_default() == "(required)"


def test_it_reads_defaults_bounds_and_help():
    spec = next(s for s in pipeline_with(KitchenSink).param_specs if s.name == "n")

    assert spec.as_dict() == {
        "name": "n",
        "type": "int",
        "default": 10,
        "required": False,
        "optional": False,
        "ge": 1,
        "le": 100,
        "choices": None,
        "help": "How many",
        "max_length": None,
    }


def test_a_text_parameter_may_default_to_empty_and_a_required_one_refuses_blank():
    class P(Params):
        suffix: str = param("", help="empty unless given")
        label: str = param(help="required")

    pipe = pipeline_with(P)

    assert pipe.problems == [] and pipe.validate() == []
    assert pipe.parse_params({"label": "x"}) == {"suffix": "", "label": "x"}
    assert pipe.parse_params({"label": "x", "suffix": ""}) == {"suffix": "", "label": "x"}
    with pytest.raises(ParamError) as caught:
        pipe.parse_params({"label": "   "})
    assert caught.value.errors == {"label": "a value is required"}


def test_text_is_at_most_max_length_characters_1000_unless_declared():
    class P(Params):
        note: str = param("n")
        code: str = param("ab", max_length=3)

    pipe = pipeline_with(P)

    assert [s.max_length for s in pipe.param_specs] == [1000, 3]
    assert pipe.parse_params({"note": "x" * 1000})["note"] == "x" * 1000
    with pytest.raises(ParamError) as caught:
        pipe.parse_params({"note": "x" * 1001, "code": "abcd"})
    assert caught.value.errors == {
        "note": "the text is 1,001 characters long; the most is 1,000",
        "code": "the text is 4 characters long; the most is 3",
    }


@pytest.mark.parametrize("declaration, problem", [
    ("param(1, max_length=3)", "parameter 'p': max_length only applies to text (str)"),
])
def test_max_length_applies_to_text_only(declaration, problem):
    namespace = {"Params": Params, "param": param}
    exec(f"class P(Params):\n    p: int = {declaration}\n", namespace)

    assert pipeline_with(namespace["P"]).validate() == [problem]


def test_it_accepts_choices_given_by_argument():
    class P(Params):
        size: int = param(2, choices=[1, 2, 4])

    spec = pipeline_with(P).param_specs[0]

    assert (spec.type_name, spec.choices) == ("choice", (1, 2, 4))


def test_it_accepts_a_plain_default_without_param():
    class P(Params):
        n: int = 3

    pipe = pipeline_with(P)

    assert pipe.validate() == []
    assert pipe.parse_params({}) == {"n": 3}


def test_it_reports_a_default_outside_its_bounds():
    class P(Params):
        n: int = param(0, ge=1, le=10)

    assert pipeline_with(P).validate() == ["parameter 'n': its default is invalid: 0 is below the minimum 1"]


def test_it_reports_a_default_that_is_not_a_choice():
    class P(Params):
        mode: typing.Literal["fast", "slow"] = param("medium")

    assert pipeline_with(P).validate() == [
        "parameter 'mode': its default is invalid: 'medium' is not one of 'fast', 'slow'"
    ]


def test_it_reports_an_unsupported_type():
    class P(Params):
        names: list[str] = param([])

    (problem,) = pipeline_with(P).validate()

    assert problem.startswith("parameter 'names': type list[str] is not supported")


def test_it_reports_a_union_that_is_not_optional():
    class P(Params):
        n: int | str = param(1)

    assert pipeline_with(P).validate() == ["parameter 'n': only Optional[X] unions are supported"]


def test_it_reports_choices_of_mixed_types():
    class P(Params):
        mode: typing.Literal[1, "one"] = param(1)

    assert pipeline_with(P).validate() == ["parameter 'mode': Literal choices must all be of one simple type"]


def test_it_reports_choices_given_twice():
    class P(Params):
        mode: typing.Literal["a", "b"] = param("a", choices=["a", "b"])

    assert pipeline_with(P).validate() == [
        "parameter 'mode': give choices either by Literal or by choices=, not both"
    ]


def test_it_reports_bounds_on_a_boolean():
    class P(Params):
        flag: bool = param(True, ge=0)

    assert pipeline_with(P).validate() == ["parameter 'flag': bounds (ge/le) only apply to numbers and dates"]


def test_it_reports_bounds_on_text():
    class P(Params):
        label: str = param("x", ge=1)

    assert pipeline_with(P).validate() == ["parameter 'label': bounds (ge/le) only apply to numbers and dates"]


def test_it_reports_params_that_are_not_a_params_class():
    class NotParams:
        n: int = 1

    (problem,) = pipeline_with(NotParams).validate()

    assert "is not a subclass of app.pipelines.Params" in problem


def test_it_gives_a_default_written_as_text_its_declared_type():
    class P(Params):
        flag: bool = param("no")
        n: int = param("5")

    assert pipeline_with(P).parse_params({}) == {"flag": False, "n": 5}


# --- parsing parameter values --------------------------------------------------------------


def test_it_coerces_text_from_a_form_or_the_command_line():
    params = pipeline_with(KitchenSink).parse_params(
        {
            "n": " 42 ",
            "rate": "0.25",
            "flag": "yes",
            "label": "hello",
            "day": "2024-02-29",
            "mode": "slow",
            "limit": "7",
            "size": "3",
        }
    )

    assert params == {
        "n": 42,
        "rate": 0.25,
        "flag": True,
        "label": "hello",
        "day": "2024-02-29",
        "mode": "slow",
        "limit": 7,
        "size": 3,
    }


def test_it_accepts_python_values():
    params = pipeline_with(KitchenSink).parse_params(
        {"n": 5, "rate": 1, "flag": False, "day": datetime.date(2025, 1, 1), "size": 1}
    )

    assert (params["n"], params["rate"], params["flag"], params["day"]) == (5, 1.0, False, "2025-01-01")


def test_it_fills_in_defaults():
    params = pipeline_with(KitchenSink).parse_params({"size": "1"})

    assert params == {
        "n": 10,
        "rate": 0.5,
        "flag": False,
        "label": "x",
        "day": "2024-01-31",
        "mode": "fast",
        "limit": None,
        "size": 1,
    }


def test_it_takes_a_blank_optional_value_as_none():
    params = pipeline_with(KitchenSink).parse_params({"limit": "", "size": "1"})

    assert params["limit"] is None


@pytest.mark.parametrize(
    "name, value, message",
    [
        ("n", "abc", "'abc' is not a whole number"),
        ("n", "1.5", "'1.5' is not a whole number"),
        ("n", 2.5, "2.5 is not a whole number"),
        ("n", True, "True is not a whole number"),
        ("rate", "fast", "'fast' is not a number"),
        ("rate", "nan", "'nan' is not a finite number"),
        ("flag", "maybe", "'maybe' is not a boolean (use true or false)"),
        ("day", "2024-02-30", "'2024-02-30' is not a date (use YYYY-MM-DD)"),
        ("label", 5, "5 is not text"),
        ("n", "0", "0 is below the minimum 1"),
        ("n", "101", "101 is above the maximum 100"),
        ("rate", "1.5", "1.5 is above the maximum 1.0"),
        ("mode", "medium", "'medium' is not one of 'fast', 'slow'"),
        ("n", "", "a value is required"),
    ],
)
def test_it_rejects_a_bad_value_naming_the_parameter(name, value, message):
    pipe = pipeline_with(KitchenSink)

    with pytest.raises(ParamError) as caught:
        pipe.parse_params({name: value, "size": "1"})

    assert caught.value.errors == {name: message}
    assert str(caught.value) == f"{name}: {message}"


def test_it_rejects_a_missing_required_parameter():
    with pytest.raises(ParamError) as caught:
        pipeline_with(KitchenSink).parse_params({})

    assert caught.value.errors == {"size": "a value is required"}


def test_it_rejects_an_unknown_parameter_listing_the_known_ones():
    class P(Params):
        rows: int = param(1)
        seed: int = param(2)

    with pytest.raises(ParamError) as caught:
        pipeline_with(P).parse_params({"rowz": "3"})

    assert caught.value.errors == {"rowz": "unknown parameter (this pipeline takes: rows, seed)"}


def test_it_rejects_any_parameter_of_a_pipeline_without_parameters():
    with pytest.raises(ParamError) as caught:
        pipeline_with(None).parse_params({"rows": "3"})

    assert caught.value.errors == {"rows": "unknown parameter (this pipeline takes: none)"}


def test_it_reports_every_bad_parameter_at_once():
    with pytest.raises(ParamError) as caught:
        pipeline_with(KitchenSink).parse_params({"n": "x", "mode": "medium", "extra": "1"})

    assert set(caught.value.errors) == {"n", "mode", "extra", "size"}


def test_it_builds_the_params_object_a_step_sees():
    pipe = pipeline_with(KitchenSink)

    params = pipe.make_params(pipe.parse_params({"day": "2024-03-01", "size": "2"}))

    assert isinstance(params, KitchenSink)
    assert params.day == datetime.date(2024, 3, 1)
    assert (params.n, params.size, params.limit) == (10, 2, None)


# --- snapshots -------------------------------------------------------------------------------


def diamond():
    """A pipeline whose steps are defined out of topological order."""
    pipe = Pipeline(name="diamond", description="Two branches.", params_class=KitchenSink)

    @pipe.step(after=["left", "right"])
    def merge(ctx, left, right):
        """Merge both branches."""
        return left + right

    @pipe.step()
    def source(ctx):
        """Produce the input."""
        return 1

    @pipe.step(after=[source])
    def left(ctx, source):
        return source

    @pipe.step(after=[source], retries=2)
    def right(ctx, source):
        return source

    return pipe


def test_it_snapshots_steps_in_topological_order():
    snapshot = diamond().snapshot()

    assert [s["name"] for s in snapshot["steps"]] == ["source", "left", "right", "merge"]
    assert sorted(map(tuple, snapshot["edges"])) == [
        ("left", "merge"),
        ("right", "merge"),
        ("source", "left"),
        ("source", "right"),
    ]


def test_it_snapshots_docs_sources_and_dependencies():
    steps = {s["name"]: s for s in diamond().snapshot()["steps"]}

    assert steps["merge"]["doc"] == "Merge both branches."
    assert steps["left"]["doc"] == ""
    assert steps["merge"]["source"].startswith('@pipe.step(after=["left", "right"])\ndef merge(ctx, left, right):')
    assert steps["merge"]["after"] == ["left", "right"]
    assert steps["merge"]["inputs"] == ["left", "right"]
    assert steps["right"]["retries"] == 2


def test_it_snapshots_the_description_and_parameters():
    snapshot = diamond().snapshot()

    assert (snapshot["pipeline"], snapshot["description"]) == ("diamond", "Two branches.")
    assert [p["name"] for p in snapshot["params"]] == ["n", "rate", "flag", "label", "day", "mode", "limit", "size"]
    assert snapshot["params"][4]["default"] == "2024-01-31"


def test_it_gives_the_same_hash_to_the_same_code():
    assert diamond().snapshot()["source_hash"] == diamond().snapshot()["source_hash"]


def make_step_function():
    def load(ctx):
        return 1

    return load


def test_it_changes_the_hash_when_only_a_docstring_changes():
    documented = make_step_function()
    documented.__doc__ = "Load the rows."
    plain, changed = Pipeline(name="p"), Pipeline(name="p")
    plain.step()(make_step_function())
    changed.step()(documented)

    assert plain.snapshot()["steps"][0]["source"] == changed.snapshot()["steps"][0]["source"]
    assert plain.snapshot()["source_hash"] != changed.snapshot()["source_hash"]


def test_it_snapshots_a_date_parameter_with_date_bounds():
    class P(Params):
        day: datetime.date = param(datetime.date(2024, 6, 1), ge=datetime.date(2024, 1, 1))

    pipe = pipeline_with(P)
    assert pipe.validate() == []

    assert pipe.snapshot()["params"][0]["ge"] == "2024-01-01"


def test_it_rejects_a_step_name_that_is_not_an_identifier():
    pipe = Pipeline(name="t_lambda")
    pipe.step()(lambda ctx: None)

    assert pipe.validate() == ["step '<lambda>': its name must be a Python identifier (use a def, or pass name=)"]


# --- clear messages for steps that cannot work ---------------------------------------------


def test_a_bare_step_decorator_adds_the_step():
    pipe = Pipeline(name="p")

    @pipe.step
    def load(ctx):
        return 1

    @pipe.step(after=load)
    def use(ctx, load):
        return load

    assert pipe.validate() == [] and list(pipe.steps) == ["load", "use"]
    assert pipe.steps["use"].after == ["load"]


def definition_problems(source):
    """The problems of a pipeline whose steps are given as source code."""
    namespace = {"Pipeline": Pipeline, "__name__": "pipelines.bad"}
    exec(compile("pipe = Pipeline(name='p')\n" + textwrap.dedent(source), "pipelines/bad.py", "exec"), namespace)
    return namespace["pipe"].validate()


@pytest.mark.parametrize("source, problem", [
    (
        """
        @pipe.step()
        async def fetch(ctx):
            return 1
        """,
        "step 'fetch' (pipelines/bad.py:3): is an async function; a worker calls steps as plain functions, so use def",
    ),
    (
        """
        @pipe.step()
        def rows(ctx):
            yield 1
        """,
        "step 'rows' (pipelines/bad.py:3): is a generator (it has yield); a step returns its output, so return a list",
    ),
    (
        """
        @pipe.step()
        def fit(ctx, depth=3):
            return depth
        """,
        "step 'fit' (pipelines/bad.py:3): parameter 'depth' has a default, but a step's parameters after ctx name "
        "the upstream steps (or groups) whose outputs it receives; read settings from ctx.params instead",
    ),
    (
        """
        @pipe.step()
        def report(ctx, **outputs):
            return outputs
        """,
        "step 'report' (pipelines/bad.py:3): takes **outputs; name each upstream step whose output it needs as a "
        "parameter, or put them in a group (@<pipeline>.step(group=...)) and name the group",
    ),
    (
        """
        def helper(ctx):
            return 1

        @pipe.step(after=[helper])
        def use(ctx):
            return 2
        """,
        "step 'use' (pipelines/bad.py:6): after= holds the function pipelines.bad.helper, which is not a step of 'p': "
        "decorate it with @<pipeline>.step() first, or give the step's name",
    ),
])
def test_a_step_that_cannot_work_is_named_with_its_file_and_line(source, problem):
    assert definition_problems(source) == [problem]
