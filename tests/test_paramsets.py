"""Parameter sets: revisions with diffs, copy, archive, default, validity against the code,
and starting runs from them (also from the run form)."""

import pytest
from django.urls import reverse
from hypothesis import HealthCheck, given, settings as hsettings, strategies as st

from app import engine, paramsets
from app.models import AuditEvent, ParameterSet, Run
from app.registry import Params, param

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

    before = define("t_ps", params=Before)
    before.step(name="only")(lambda ctx: None)
    pset = make_set(operator, "small", {"size": 3}, pipeline="t_ps")

    from app.registry import registry
    from typing import Literal

    class After(Params):
        size: Literal["s", "m"] = "s"
        extra: int = param(help="new and required")

    registry.defined.remove(before)
    after = define("t_ps", params=After)
    after.step(name="only")(lambda ctx: None)
    return pset


def test_it_flags_a_set_the_code_no_longer_accepts(operator_client, changed_code):
    html = page(operator_client.get(f"/parameter-sets/{changed_code.pk}/"))

    assert "This set no longer fits the pipeline" in html
    assert "3 is not one of &#x27;s&#x27;, &#x27;m&#x27;" in html and "<code>extra</code>: a value is required" in html
    assert "needs fixing" in page(operator_client.get("/pipelines/t_ps/parameter-sets/"))


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


def test_it_generates_the_right_input_for_each_parameter_type(operator_client, define):
    import datetime
    from typing import Literal, Optional

    class Every(Params):
        count: int = param(3, ge=1, le=9, help="How many")
        ratio: float = param(0.5, ge=0, le=1)
        flag: bool = True
        label: str = "x"
        kind: Literal["a", "b"] = "b"
        day: datetime.date = param(datetime.date(2026, 1, 2))
        maybe: Optional[int] = None
        needed: int = param(help="no default")

    pipe = define("t_every_type", params=Every)

    @pipe.step()
    def only(ctx):
        return None

    html = page(operator_client.get("/pipelines/t_every_type/"))

    assert '<input type="number" name="count" value="3" step="1" min="1" max="9"' in html and "How many" in html
    assert '<input type="number" name="ratio" value="0.5" step="any" min="0.0" max="1.0"' in html
    assert '<input type="radio" name="flag" value="true" id="id_flag_0" checked>' in html
    assert '<input type="text" name="label" value="x"' in html
    assert '<option value="b" selected>b</option>' in html
    assert '<input type="date" name="day" value="2026-01-02"' in html
    assert '<input type="number" name="maybe" step="1"' in html
    assert '<input type="number" name="needed" step="1" required' in html and 'needed <abbr title="required">*</abbr>' in html
