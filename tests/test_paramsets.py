"""Parameter sets: revisions with diffs, copy, archive, default, validity against the code,
and starting runs from them (also from the run form)."""

import datetime
from typing import Literal, Optional

import pytest
from django.urls import reverse
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from app.models import AuditEvent, ParameterSet, Run
from app.pipelines.registry import ParamError, Params, param, registry
from app.runs import engine, paramsets

pytestmark = pytest.mark.django_db


def make_set(user, name="nightly", values=None, pipeline="fanout_demo"):
    values = values or {"rows": 100, "seed": 7, "pause": 0.0}
    return paramsets.create(pipeline, name, values, user)


def page(response):
    return response.content.decode()


# --- creating and editing --------------------------------------------------------------------


def test_it_creates_a_set_from_the_form(operator_client, operator):
    response = operator_client.post("/pipelines/fanout_demo/parameter-sets/new/", {"name": "big", "rows": "5000"})

    new = ParameterSet.objects.get()
    assert response.status_code == 302 and response["Location"] == f"/parameter-sets/{new.pk}/"
    assert (new.name, new.latest.number, new.latest.values) == ("big", 1, {"rows": 5000, "seed": 7, "pause": 0.0})
    assert AuditEvent.objects.get().action == "paramset_create"


@pytest.mark.parametrize("data,field,message", [
    ({"name": "x", "rows": "lots"}, "rows", "&#x27;lots&#x27; is not a whole number"),
    ({"name": "x", "rows": "0"}, "rows", "0 is below the minimum 1"),
    ({"name": "", "rows": "5"}, "name", "This field is required."),
])
def test_it_shows_every_error_and_saves_nothing(operator_client, data, field, message):
    response = operator_client.post("/pipelines/fanout_demo/parameter-sets/new/", data)

    assert response.status_code == 422 and message in page(response)
    assert not ParameterSet.objects.exists() and not AuditEvent.objects.exists()


def test_it_refuses_a_second_set_of_the_same_name(operator_client, operator):
    make_set(operator, "nightly")

    response = operator_client.post("/pipelines/fanout_demo/parameter-sets/new/", {"name": "nightly"})

    assert response.status_code == 422 and "already has a parameter set named “nightly”" in page(response)
    assert ParameterSet.objects.count() == 1


def test_it_saves_an_edit_as_a_new_revision_with_its_diff(operator_client, operator):
    pset = make_set(operator)

    operator_client.post(f"/parameter-sets/{pset.pk}/edit/", {"rows": "250", "seed": "7", "pause": "0", "note": "more rows"})

    assert [(r.number, r.values["rows"]) for r in pset.revisions.all()] == [(2, 250), (1, 100)]
    detail = page(operator_client.get(f"/parameter-sets/{pset.pk}/"))
    assert "<code>rows</code>: <del>100</del> → <ins>250</ins>" in detail and "more rows" in detail
    event = AuditEvent.objects.filter(action="paramset_edit").get()
    assert event.details == {"revision": 2, "diff": {"added": {}, "removed": {}, "changed": {"rows": [100, 250]}}}


def test_it_refuses_an_edit_that_changes_nothing(operator_client, operator):
    pset = make_set(operator)

    response = operator_client.post(f"/parameter-sets/{pset.pk}/edit/", {"rows": "100", "seed": "7", "pause": "0"})

    assert response.status_code == 422 and "Nothing changed" in page(response)
    assert pset.revisions.count() == 1


def test_it_prefills_the_edit_form_from_the_latest_revision(operator_client, operator):
    pset = make_set(operator, values={"rows": 321, "seed": 7, "pause": 0.0})

    assert 'value="321"' in page(operator_client.get(f"/parameter-sets/{pset.pk}/edit/"))


def test_it_copies_a_set(operator_client, operator):
    pset = make_set(operator)

    response = operator_client.post(f"/parameter-sets/{pset.pk}/copy/", {"name": "nightly-2"})

    copy = ParameterSet.objects.get(name="nightly-2")
    assert response["Location"] == f"/parameter-sets/{copy.pk}/"
    assert copy.latest.values == pset.latest.values and "copied from" in copy.latest.note


def test_it_switches_the_default_set(operator_client, operator):
    first, second = make_set(operator, "a"), make_set(operator, "b")
    operator_client.post(f"/parameter-sets/{first.pk}/default/")

    operator_client.post(f"/parameter-sets/{second.pk}/default/")

    assert list(ParameterSet.objects.filter(is_default=True).values_list("name", flat=True)) == ["b"]


def test_it_archives_and_restores_but_never_the_default(operator_client, operator):
    pset = make_set(operator)
    operator_client.post(f"/parameter-sets/{pset.pk}/archive/")
    pset.refresh_from_db()
    assert pset.archived_at is not None
    operator_client.post(f"/parameter-sets/{pset.pk}/restore/")
    operator_client.post(f"/parameter-sets/{pset.pk}/default/")

    response = operator_client.post(f"/parameter-sets/{pset.pk}/archive/", follow=True)

    pset.refresh_from_db()
    assert pset.archived_at is None and "The default set cannot be archived" in page(response)


# --- runs from sets --------------------------------------------------------------------------


def test_it_runs_with_a_set_and_records_the_revision(operator_client, operator):
    pset = make_set(operator)

    response = operator_client.post(f"/parameter-sets/{pset.pk}/run/")

    run = Run.objects.get()
    assert response["Location"] == f"/runs/{run.pk}/"
    assert (run.params, run.parameter_revision) == (pset.latest.values, pset.latest)
    assert AuditEvent.objects.filter(action="trigger").get().details["parameter_set"] == "nightly"
    assert f'From set <a href="/parameter-sets/{pset.pk}/">“nightly”</a> r1' in page(operator_client.get(f"/runs/{run.pk}/"))


def test_it_offers_the_default_set_on_the_pipeline_page(operator_client, operator):
    pset = make_set(operator)
    paramsets.make_default(pset, operator)

    assert f'action="/parameter-sets/{pset.pk}/run/"' in page(operator_client.get("/pipelines/fanout_demo/"))


def test_it_prefills_the_run_form_from_a_set(operator_client, operator):
    pset = make_set(operator, values={"rows": 4242, "seed": 7, "pause": 0.0})

    html = page(operator_client.get(f"/pipelines/fanout_demo/?set={pset.pk}"))

    assert 'value="4242"' in html and f'name="from_set" value="{pset.pk}"' in html


def test_it_prefills_the_run_form_from_an_earlier_run(operator_client):
    run, _ready = engine.start_run("fanout_demo", {"rows": "777"})

    assert 'value="777"' in page(operator_client.get(f"/pipelines/fanout_demo/?from_run={run.pk}"))


def test_it_says_when_the_set_to_prefill_from_does_not_exist(operator_client):
    assert "fanout_demo has no active parameter set #99" in page(operator_client.get("/pipelines/fanout_demo/?set=99"))


def test_it_links_an_unchanged_run_to_the_set_revision(operator_client, operator):
    pset = make_set(operator)

    operator_client.post("/pipelines/fanout_demo/run/", {"from_set": pset.pk, "rows": "100", "seed": "7", "pause": "0"})

    assert Run.objects.get().parameter_revision == pset.latest


def test_it_saves_edited_values_back_to_the_set_when_asked(operator_client, operator):
    pset = make_set(operator)

    operator_client.post(
        "/pipelines/fanout_demo/run/", {"from_set": pset.pk, "rows": "9", "seed": "7", "pause": "0", "save_to_set": "1"}
    )

    assert (pset.latest.number, pset.latest.values["rows"]) == (2, 9)
    assert Run.objects.get().parameter_revision == pset.latest


def test_it_runs_edited_values_without_touching_the_set(operator_client, operator):
    pset = make_set(operator)

    operator_client.post("/pipelines/fanout_demo/run/", {"from_set": pset.pk, "rows": "9", "seed": "7", "pause": "0"})

    assert pset.revisions.count() == 1 and Run.objects.get().parameter_revision is None


# --- sets that no longer fit the code --------------------------------------------------------


@pytest.fixture
def changed_code(define, operator):
    """A set saved for `t_ps` while `size` was an int, then the code makes `size` a choice."""

    class Before(Params):
        size: int = param(3, ge=1)
        gone: int = 1

    before = define("t_ps_changed", params=Before)
    before.step(name="only")(lambda ctx: None)
    pset = make_set(operator, "small", {"size": 3, "gone": 1}, pipeline="t_ps_changed")

    class After(Params):
        size: Literal["s", "m"] = "s"
        extra: int = param(help="new and required")

    registry.defined.remove(before)
    after = define("t_ps_changed", params=After)
    after.step(name="only")(lambda ctx: None)
    return pset


def test_it_flags_a_set_the_code_no_longer_accepts(operator_client, changed_code):
    html = page(operator_client.get(f"/parameter-sets/{changed_code.pk}/"))

    assert "This set no longer fits the pipeline" in html
    assert "3 is not one of &#x27;s&#x27;, &#x27;m&#x27;" in html and "<code>extra</code>: a value is required" in html
    assert "needs fixing" in page(operator_client.get("/pipelines/t_ps_changed/parameter-sets/"))


def test_it_refuses_to_run_a_set_that_does_not_fit(operator_client, changed_code):
    response = operator_client.post(f"/parameter-sets/{changed_code.pk}/run/", follow=True)

    assert "does not fit the current code" in page(response) and not Run.objects.exists()


# --- bad input never breaks anything ---------------------------------------------------------

FIELDS = st.sampled_from(["rows", "seed", "pause", "name", "from_set", "save_to_set", "bogus"])
VALUES = st.one_of(st.text(max_size=30), st.integers(min_value=-10**30, max_value=10**30).map(str),
                   st.floats(allow_nan=True, allow_infinity=True).map(str))


@hsettings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.dictionaries(FIELDS, VALUES, max_size=6))
def test_it_never_fails_on_random_form_data(operator_client, data):
    runs, sets = Run.objects.count(), ParameterSet.objects.count()

    trigger = operator_client.post("/pipelines/fanout_demo/run/", data)
    create = operator_client.post("/pipelines/fanout_demo/parameter-sets/new/", data)

    assert trigger.status_code in (302, 422) and create.status_code in (302, 422)
    assert Run.objects.count() == runs + (trigger.status_code == 302)
    assert ParameterSet.objects.count() == sets + (create.status_code == 302)


# --- who may do what -------------------------------------------------------------------------

ENDPOINTS = [
    ("get", "paramset_list", "name"), ("get", "paramset_create", "name"), ("post", "paramset_create", "name"),
    ("get", "paramset_detail", "set"), ("get", "paramset_edit", "set"), ("post", "paramset_edit", "set"),
    ("post", "paramset_copy", "set"), ("post", "paramset_archive", "set"), ("post", "paramset_restore", "set"),
    ("post", "paramset_default", "set"), ("post", "paramset_run", "set"),
]


def url_for(name, kind, pset):
    return reverse(name, args=["fanout_demo" if kind == "name" else pset.pk])


@pytest.mark.parametrize("method,name,kind", ENDPOINTS)
def test_it_sends_anonymous_users_to_log_in(client, operator, method, name, kind):
    response = getattr(client, method)(url_for(name, kind, make_set(operator)))

    assert response.status_code == 302 and response["Location"].startswith("/login/")


@pytest.mark.parametrize("method,name,kind", ENDPOINTS)
def test_it_forbids_stakeholders_and_changes_nothing(stakeholder_client, operator, method, name, kind):
    pset = make_set(operator)
    events = AuditEvent.objects.count()

    response = getattr(stakeholder_client, method)(url_for(name, kind, pset), {"name": "x", "rows": "5"})

    assert response.status_code == 403
    assert (ParameterSet.objects.count(), pset.revisions.count(), Run.objects.count()) == (1, 1, 0)
    assert AuditEvent.objects.count() == events


@pytest.mark.parametrize("name", ["paramset_copy", "paramset_archive", "paramset_restore", "paramset_default", "paramset_run"])
def test_it_refuses_get_on_actions(operator_client, operator, name):
    assert operator_client.get(reverse(name, args=[make_set(operator).pk])).status_code == 405


def test_it_records_archive_default_and_copy_in_the_audit_trail(operator_client, operator):
    pset = make_set(operator)

    operator_client.post(f"/parameter-sets/{pset.pk}/copy/", {"name": "other"})
    operator_client.post(f"/parameter-sets/{pset.pk}/archive/")
    operator_client.post(f"/parameter-sets/{pset.pk}/restore/")
    operator_client.post(f"/parameter-sets/{pset.pk}/default/")

    actions = list(AuditEvent.objects.order_by("id").values_list("action", "target_label"))
    assert actions == [
        ("paramset_create", "fanout_demo / nightly"),
        ("paramset_create", "fanout_demo / other"),
        ("paramset_archive", "fanout_demo / nightly"),
        ("paramset_archive", "fanout_demo / nightly"),
        ("paramset_default", "fanout_demo / nightly"),
    ]
    assert [e.details for e in AuditEvent.objects.filter(action="paramset_archive").order_by("id")] == [
        {"archived": True}, {"archived": False}
    ]


def test_it_generates_the_right_input_for_each_parameter_type(operator_client, every_type):
    html = page(operator_client.get("/pipelines/t_ps_every/"))

    assert '<input type="number" name="count" value="3" step="1" min="1" max="9"' in html and "How many" in html
    assert '<input type="number" name="ratio" value="0.5" step="any" min="0.0" max="1.0"' in html
    assert '<input type="radio" name="flag" value="true" id="id_flag_0" checked>' in html
    assert '<input type="text" name="label" value="x"' in html
    assert '<option value="b" selected>b</option>' in html
    assert '<input type="date" name="day" value="2026-01-02" min="2026-01-01" max="2026-12-31"' in html
    assert '<input type="radio" name="unsure" value="" id="id_unsure_2" checked>' in html
    assert '<input type="number" name="maybe" step="1"' in html
    assert '<input type="number" name="needed" step="1" required' in html and 'needed <abbr title="required">*</abbr>' in html


# --- every parameter type on the run form and the set forms ----------------------------------


class Every(Params):
    count: int = param(3, ge=1, le=9, help="How many")
    ratio: float = param(0.5, ge=0, le=1)
    flag: bool = True
    label: str = "x"
    kind: Literal["a", "b"] = "b"
    day: datetime.date = param(datetime.date(2026, 1, 2), ge="2026-01-01", le="2026-12-31")
    maybe: Optional[int] = None
    unsure: Optional[bool] = None
    needed: int = param(help="no default")


GOOD = {"count": "4", "ratio": "0.25", "flag": "false", "label": "y", "kind": "a", "day": "2026-03-04", "needed": "1"}


@pytest.fixture
def every_type(define):
    """`t_ps_every`: one parameter of each type, one of them required."""
    pipe = define("t_ps_every", params=Every)
    pipe.step(name="only")(lambda ctx: None)
    return pipe


BAD_VALUES = [
    ("count", "three", "&#x27;three&#x27; is not a whole number"),
    ("ratio", "half", "&#x27;half&#x27; is not a number"),
    ("day", "tomorrow", "&#x27;tomorrow&#x27; is not a date (use YYYY-MM-DD)"),
    ("flag", "maybe", "&#x27;maybe&#x27; is not a boolean (use true or false)"),
    ("count", "10", "10 is above the maximum 9"),
    ("ratio", "-0.5", "-0.5 is below the minimum 0.0"),
    ("day", "2027-01-01", "2027-01-01 is above the maximum 2026-12-31"),
    ("kind", "c", "&#x27;c&#x27; is not one of &#x27;a&#x27;, &#x27;b&#x27;"),
    ("needed", "", "a value is required"),
]


@pytest.mark.parametrize("field,value,message", BAD_VALUES)
def test_it_names_a_bad_value_on_the_run_form_and_starts_nothing(operator_client, every_type, field, value, message):
    response = operator_client.post("/pipelines/t_ps_every/run/", {**GOOD, field: value})

    assert response.status_code == 422
    assert f'<small class="error">{message}</small>' in page(response)
    assert not Run.objects.exists() and not AuditEvent.objects.exists()


@pytest.mark.parametrize("field,value,message", BAD_VALUES)
def test_it_names_a_bad_value_on_the_new_set_form_and_saves_nothing(operator_client, every_type, field, value, message):
    response = operator_client.post("/pipelines/t_ps_every/parameter-sets/new/", {**GOOD, "name": "s", field: value})

    assert response.status_code == 422 and f'<small class="error">{message}</small>' in page(response)
    assert not ParameterSet.objects.exists() and not AuditEvent.objects.exists()


@pytest.mark.parametrize("field,value,message", BAD_VALUES)
def test_it_names_a_bad_value_on_the_edit_form_and_saves_nothing(operator_client, operator, every_type, field, value, message):
    pset = make_set(operator, values={"needed": 1}, pipeline="t_ps_every")

    response = operator_client.post(f"/parameter-sets/{pset.pk}/edit/", {**GOOD, field: value})

    assert response.status_code == 422 and f'<small class="error">{message}</small>' in page(response)
    assert pset.revisions.count() == 1 and AuditEvent.objects.count() == 1


def test_it_shows_every_error_at_once(operator_client, every_type):
    response = operator_client.post("/pipelines/t_ps_every/run/", {**GOOD, "count": "0", "kind": "z", "needed": ""})

    assert page(response).count('<small class="error">') == 3


def test_it_stores_typed_values_from_the_form(operator_client, every_type):
    operator_client.post("/pipelines/t_ps_every/parameter-sets/new/", {**GOOD, "name": "typed", "unsure": "true"})

    assert ParameterSet.objects.get().latest.values == {
        "count": 4, "ratio": 0.25, "flag": False, "label": "y", "kind": "a", "day": "2026-03-04",
        "maybe": None, "unsure": True, "needed": 1,
    }


FORM_FIELDS = st.sampled_from(list(GOOD) + ["maybe", "unsure", "name", "note", "from_set", "save_to_set", "bogus"])
FORM_VALUES = st.one_of(
    VALUES, st.sampled_from(["true", "false", "a", "b", "2026-06-30", "²", "1", "1e3", " 4 ", "nan", "\x00"]),
    st.dates().map(str),
)


@hsettings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.dictionaries(FORM_FIELDS, FORM_VALUES, max_size=8), base=st.sampled_from([{}, GOOD]))
def test_it_never_fails_on_random_data_for_any_parameter_type(operator_client, every_type, data, base):
    runs, sets = Run.objects.count(), ParameterSet.objects.count()
    posted = {**base, **data}

    trigger = operator_client.post("/pipelines/t_ps_every/run/", posted)
    create = operator_client.post("/pipelines/t_ps_every/parameter-sets/new/", posted)

    assert trigger.status_code in (302, 422) and create.status_code in (302, 422)
    assert Run.objects.count() == runs + (trigger.status_code == 302)
    assert ParameterSet.objects.count() == sets + (create.status_code == 302)


# --- the domain rules, without the views -----------------------------------------------------


def test_it_diffs_added_removed_and_changed_values():
    changes = paramsets.diff({"a": 1, "b": 2, "c": 3}, {"a": 1, "b": 5, "d": 4})

    assert changes == {"added": {"d": 4}, "removed": {"c": 3}, "changed": {"b": [2, 5]}}


def test_it_refuses_values_the_declaration_rejects(operator):
    with pytest.raises(ParamError) as caught:
        paramsets.create("fanout_demo", "bad", {"rows": 0, "nope": 1}, operator)

    assert set(caught.value.errors) == {"rows", "nope"} and not ParameterSet.objects.exists()


def test_it_stores_the_full_values_with_defaults_filled_in(operator):
    assert make_set(operator, values={"rows": "12"}).latest.values == {"rows": 12, "seed": 7, "pause": 0.0}


def test_it_keeps_every_revision_with_who_and_a_note(operator, admin):
    pset = make_set(operator)
    paramsets.save_revision(pset, {"rows": 200}, admin, note="double")
    paramsets.save_revision(pset, {"rows": 200, "seed": 8}, operator)

    rows = [(r.number, r.created_by.username, r.note, d["changed"]) for r, d in paramsets.history(pset)]

    assert rows == [
        (3, "olivia", "", {"seed": [7, 8]}),
        (2, "ada", "double", {"rows": [100, 200]}),
        (1, "olivia", "", {}),
    ]


@pytest.mark.parametrize("action,message", [
    (lambda s, u: paramsets.archive(s, u, archived=False), "is not archived"),
    (lambda s, u: (paramsets.make_default(s, u), paramsets.make_default(s, u)), "is already the default set"),
    (lambda s, u: (paramsets.archive(s, u), paramsets.archive(s, u)), "is already archived"),
    (lambda s, u: (paramsets.archive(s, u), paramsets.make_default(s, u)), "An archived set cannot be the default"),
    (lambda s, u: (paramsets.archive(s, u), paramsets.run(s, u)), "is archived; restore it first"),
    (lambda s, u: paramsets.copy(s, " ", u), "needs a name"),
])
def test_it_refuses_a_change_that_does_not_apply(operator, action, message):
    pset = make_set(operator)
    events = AuditEvent.objects.count()

    with pytest.raises(paramsets.SetRefused, match=message):
        action(pset, operator)

    assert AuditEvent.objects.count() <= events + 1  # only the first, valid half of a pair


def test_it_names_the_previous_default_when_switching(operator_client, operator):
    first, second = make_set(operator, "a"), make_set(operator, "b")
    paramsets.make_default(first, operator)

    operator_client.post(f"/parameter-sets/{second.pk}/default/")

    event = AuditEvent.objects.filter(action="paramset_default").latest("id")
    assert (event.target_label, event.details) == ("fanout_demo / b", {"previous": "a"})


def test_it_records_where_a_copy_came_from(operator_client, operator):
    pset = make_set(operator)

    operator_client.post(f"/parameter-sets/{pset.pk}/copy/", {"name": "twin"})

    event = AuditEvent.objects.filter(action="paramset_create").latest("id")
    assert event.details["copied_from"] == "nightly" and event.details["revision"] == 1


# --- the pipeline page's run card -------------------------------------------------------------


def test_it_starts_the_default_set_with_one_click(operator_client, operator):
    pset = make_set(operator)
    paramsets.make_default(pset, operator)

    response = operator_client.post(f"/parameter-sets/{pset.pk}/run/")

    run = Run.objects.get()
    assert response.status_code == 302 and run.parameter_revision == pset.latest and run.triggered_by == operator


def test_it_records_the_set_of_a_run_from_the_form_in_the_audit_trail(operator_client, operator):
    pset = make_set(operator)

    operator_client.post("/pipelines/fanout_demo/run/", {"from_set": pset.pk, "rows": "100", "seed": "7", "pause": "0"})

    event = AuditEvent.objects.get(action="trigger")
    assert event.details == {"params": pset.latest.values, "parameter_set": "nightly", "revision": 1}


def test_it_records_a_run_with_edited_values_without_a_set(operator_client, operator):
    pset = make_set(operator)

    operator_client.post("/pipelines/fanout_demo/run/", {"from_set": pset.pk, "rows": "5", "seed": "7", "pause": "0"})

    assert AuditEvent.objects.get(action="trigger").details == {"params": {"rows": 5, "seed": 7, "pause": 0.0}}


def test_it_records_the_new_revision_when_values_are_saved_back(operator_client, operator):
    pset = make_set(operator)

    operator_client.post(
        "/pipelines/fanout_demo/run/", {"from_set": pset.pk, "rows": "5", "seed": "7", "pause": "0", "save_to_set": "1"}
    )

    assert list(AuditEvent.objects.order_by("id").values_list("action", flat=True)) == [
        "paramset_create", "paramset_edit", "trigger"
    ]
    assert AuditEvent.objects.get(action="trigger").details["revision"] == 2


def test_it_offers_the_code_defaults_and_every_active_set(operator_client, operator):
    make_set(operator, "kept")
    paramsets.archive(make_set(operator, "old"), operator)

    html = page(operator_client.get("/pipelines/fanout_demo/"))

    assert "<option value=\"\">the code's defaults</option>" in html.replace("&#x27;", "'")
    assert ">kept</option>" in html and ">old</option>" not in html


def test_it_ignores_a_set_id_that_is_not_a_number(operator_client):
    response = operator_client.post("/pipelines/fanout_demo/run/", {"from_set": "²"})

    assert response.status_code == 302 and Run.objects.get().parameter_revision is None


def test_it_ignores_an_archived_set_on_the_run_form(operator_client, operator):
    pset = make_set(operator)
    paramsets.archive(pset, operator)

    operator_client.post("/pipelines/fanout_demo/run/", {"from_set": pset.pk, "rows": "100", "seed": "7", "pause": "0"})

    assert Run.objects.get().parameter_revision is None


def test_it_links_a_set_to_which_the_code_added_a_parameter_with_a_default(operator_client, operator, define):
    class Before(Params):
        size: int = 3

    before = define("t_ps_grown", params=Before)
    before.step(name="only")(lambda ctx: None)
    pset = make_set(operator, "s", {"size": 4}, pipeline="t_ps_grown")

    class After(Params):
        size: int = 3
        extra: bool = False

    registry.defined.remove(before)
    define("t_ps_grown", params=After).step(name="only")(lambda ctx: None)

    operator_client.post("/pipelines/t_ps_grown/run/", {"from_set": pset.pk, "size": "4", "extra": "false"})

    assert Run.objects.get().parameter_revision == pset.latest


# --- a set the code no longer accepts, continued ---------------------------------------------


def test_it_lists_each_reason_a_set_no_longer_fits(changed_code):
    assert paramsets.problems(changed_code) == {
        "gone": "unknown parameter (this pipeline takes: extra, size)",
        "extra": "a value is required",
        "size": "3 is not one of 's', 'm'",
    }


def test_it_does_not_offer_a_default_set_that_no_longer_fits(operator_client, operator, changed_code):
    paramsets.make_default(changed_code, operator)

    html = page(operator_client.get("/pipelines/t_ps_changed/"))

    assert f'action="/parameter-sets/{changed_code.pk}/run/"' not in html
    assert "no longer fits the code" in html and "<code>extra</code>: a value is required" in html


def test_it_shows_why_a_set_loaded_into_the_run_form_no_longer_fits(operator_client, changed_code):
    html = page(operator_client.get(f"/pipelines/t_ps_changed/?set={changed_code.pk}"))

    assert "“small” no longer fits the code" in html and "<code>gone</code>: unknown parameter" in html


def test_it_does_not_copy_a_set_that_no_longer_fits(operator_client, changed_code):
    response = operator_client.post(f"/parameter-sets/{changed_code.pk}/copy/", {"name": "twin"}, follow=True)

    assert "does not fit the current code" in page(response) and ParameterSet.objects.count() == 1


def test_it_shows_the_reasons_on_the_edit_form(operator_client, changed_code):
    html = page(operator_client.get(f"/parameter-sets/{changed_code.pk}/edit/"))

    assert "Revision 1 no longer fits the pipeline" in html and "<code>extra</code>: a value is required" in html


def test_it_fixes_a_set_with_a_new_revision_that_fits(operator_client, changed_code):
    operator_client.post(f"/parameter-sets/{changed_code.pk}/edit/", {"size": "m", "extra": "2"})

    assert paramsets.problems(changed_code) == {}
    assert changed_code.latest.values == {"size": "m", "extra": 2}
    diff = AuditEvent.objects.get(action="paramset_edit").details["diff"]
    assert diff == {"added": {"extra": 2}, "removed": {"gone": 1}, "changed": {"size": [3, "m"]}}


def test_it_starts_a_run_from_a_fixed_set(operator_client, operator, changed_code):
    paramsets.save_revision(changed_code, {"size": "m", "extra": 2}, operator)

    operator_client.post(f"/parameter-sets/{changed_code.pk}/run/")

    assert Run.objects.get().parameter_revision.number == 2


def test_it_refuses_a_wrong_method_on_the_forms(operator_client, operator):
    pset = make_set(operator)

    assert operator_client.put(f"/parameter-sets/{pset.pk}/edit/").status_code == 405
    assert operator_client.delete("/pipelines/fanout_demo/parameter-sets/new/").status_code == 405
    assert operator_client.post("/pipelines/fanout_demo/parameter-sets/").status_code == 405
    assert operator_client.post(f"/parameter-sets/{pset.pk}/").status_code == 405


def test_it_fixes_a_set_from_the_run_form_when_asked(operator_client, changed_code):
    operator_client.post(
        "/pipelines/t_ps_changed/run/", {"from_set": changed_code.pk, "size": "s", "extra": "1", "save_to_set": "1"}
    )

    assert paramsets.problems(changed_code) == {} and Run.objects.get().parameter_revision.number == 2
