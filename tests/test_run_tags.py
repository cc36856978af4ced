"""Run tags and notes: one rule for a tag wherever it comes from (the start form, the API, a
schedule, `ctx.tag()` in a step), kept by re-runs and retries; a note an operator edits on the
run page (audited, escaped, htmx or a plain post); the run list filters and searches by them."""

import datetime
import html
import json
import re

import pytest
import time_machine
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from app.api import tokens
from app.models import AuditAction, AuditEvent, Run, RunTag, Schedule, Status
from app.ops import scheduler
from app.runs import engine
from app.runs import tags as run_tags
from tests.conftest import make_user

pytestmark = pytest.mark.django_db

UTC = datetime.UTC
NOT_A_TAG = ("tag 'no good' is not valid: a tag is 1 to 50 lowercase letters, digits and - _ . : = "
             "(e.g. env=prod, team:ml)")


def tags_of(run) -> list[str]:
    return list(RunTag.objects.filter(run=run).order_by("name").values_list("name", flat=True))


def tagged_run(*tags, pipeline="fanout_demo", **fields):
    run, _ready = engine.start_run(pipeline, {}, tags=tags)
    if fields:
        Run.objects.filter(pk=run.pk).update(**fields)
    return run


def text(response) -> str:
    return response.content.decode()


# --- the rule ---------------------------------------------------------------------------------


def test_a_tag_is_stripped_lower_cased_and_read_from_text_separated_by_commas_or_spaces():
    assert run_tags.normalise("  Env=Prod ") == "env=prod"
    assert run_tags.parse("team:ml, Env=prod  v1.2,,env=prod\tnightly_run-2") == [
        "env=prod", "nightly_run-2", "team:ml", "v1.2",
    ]
    assert run_tags.parse("  ") == []


@pytest.mark.parametrize("tags, message", [
    (["no good"], NOT_A_TAG),
    (["ok", "x" * 51], f"tag '{'x' * 51}' is too long (51 characters)"),
    (["caf\u00e9"], "tag 'caf\u00e9' is not valid"),
    (["  "], "a tag cannot be empty"),
    ([f"t{i}" for i in range(21)], "a run has at most 20 tags; these are 21"),
])
def test_a_bad_tag_is_refused_naming_it(tags, message):
    with pytest.raises(ValueError) as refused:
        run_tags.check(tags)
    assert message in str(refused.value)


def test_the_engine_refuses_a_bad_tag_before_it_creates_anything():
    with pytest.raises(run_tags.TagError, match="tag 'no good' is not valid"):
        engine.start_run("fanout_demo", {}, tags=["fine", "no good"])
    assert not Run.objects.exists() and not RunTag.objects.exists()


def test_tagging_a_run_twice_is_harmless():
    run = tagged_run("a")
    assert run_tags.add(run.pk, ["B", "a"]) == ["a", "b"]
    assert run_tags.add(run.pk, ["b"]) == ["a", "b"]
    assert tags_of(run) == ["a", "b"]


# --- the start form ---------------------------------------------------------------------------


def test_the_run_form_starts_a_run_with_its_tags(operator_client):
    response = operator_client.post("/pipelines/fanout_demo/run/", {"rows": "20", "run-tags": "Env=prod, team:ml"})

    run = Run.objects.get()
    assert response.status_code == 302 and response["Location"] == f"/runs/{run.pk}/"
    assert tags_of(run) == ["env=prod", "team:ml"]
    assert AuditEvent.objects.get(action=AuditAction.TRIGGER).details["tags"] == ["env=prod", "team:ml"]


def test_a_bad_tag_in_the_run_form_shows_the_form_again_naming_it_and_starts_nothing(operator_client):
    response = operator_client.post("/pipelines/fanout_demo/run/", {"rows": "20", "run-tags": "fine, no good!"})

    assert response.status_code == 422
    error = re.search(r'id="id_run-tags_error"><small class="error">([^<]+)</small>', text(response))
    assert error is not None and html.unescape(error.group(1)).startswith("Tag 'good!' is not valid: a tag is 1 to 50")
    assert 'value="fine, no good!"' in text(response)  # what was typed stays in the field
    assert not Run.objects.exists() and not RunTag.objects.exists() and not AuditEvent.objects.exists()


def test_the_form_filled_from_an_earlier_run_has_its_tags(operator_client):
    earlier = tagged_run("team:ml", "env=prod")

    page = text(operator_client.get(f"/pipelines/fanout_demo/?from_run={earlier.pk}"))

    assert 'name="run-tags" value="env=prod, team:ml"' in page


def test_a_re_run_keeps_the_tags_of_the_run_it_re_runs(operator_client):
    earlier = engine.run_inline(*engine.start_run("flaky_demo", {}, tags=["env=prod", "team:ml"]))

    response = operator_client.post(f"/runs/{earlier.pk}/rerun/")

    again = Run.objects.get(rerun_of=earlier)
    assert response.status_code == 302 and tags_of(again) == ["env=prod", "team:ml"]


def test_a_retry_from_failure_keeps_the_tags_of_the_run_it_retries(operator_client):
    failed = engine.run_inline(*engine.start_run("flaky_demo", {}, tags=["env=prod"]))
    assert failed.status == Status.FAILED

    response = operator_client.post(f"/runs/{failed.pk}/retry/start/")

    retry = Run.objects.get(retry_of=failed)
    assert response.status_code == 302 and tags_of(retry) == ["env=prod"]


# --- the API ----------------------------------------------------------------------------------


@pytest.fixture
def api(operator):
    secret = tokens.create(operator, "ci job", scopes=["runs:read", "runs:write"])[1]

    def call(method, url, body=None, **extra):
        if body is not None:
            extra.update(data=json.dumps(body), content_type="application/json")
        return getattr(Client(), method)(url, HTTP_AUTHORIZATION=f"Bearer {secret}", **extra)

    return call


def test_the_api_starts_a_run_with_tags_and_shows_them_and_the_note(api):
    response = api("post", "/api/pipelines/fanout_demo/runs", {"tags": ["team:ml", " Env=Prod "]})

    assert response.status_code == 201, response.content
    started = response.json()["run"]
    assert started["tags"] == ["env=prod", "team:ml"] and started["note"] == ""
    run = Run.objects.get(pk=started["id"])
    assert tags_of(run) == ["env=prod", "team:ml"]
    Run.objects.filter(pk=run.pk).update(note="checked by hand")
    assert api("get", f"/api/runs/{run.pk}").json()["note"] == "checked by hand"


def test_a_bad_tag_in_the_api_is_a_422_naming_it_and_starts_nothing(api):
    response = api("post", "/api/pipelines/fanout_demo/runs", {"tags": ["fine", "no good"]})

    assert response.status_code == 422
    body = response.json()
    assert body["error"] == f"the tags are not valid: {NOT_A_TAG}" and body["errors"] == {"tags": NOT_A_TAG}
    assert not Run.objects.exists() and not AuditEvent.objects.filter(action=AuditAction.TRIGGER).exists()


def test_the_api_lists_runs_with_a_tag_or_with_every_one_of_several(api):
    both = tagged_run("env=prod", "team:ml")
    prod = tagged_run("env=prod")
    tagged_run("env=dev")

    def listed(query):
        response = api("get", f"/api/runs?{query}")
        assert response.status_code == 200, response.content
        return response.json()["results"]

    assert [r["id"] for r in listed("tag=ENV%3Dprod")] == [prod.pk, both.pk]
    every = listed("tag=env%3Dprod&tag=team%3Aml")
    assert [(r["id"], r["tags"]) for r in every] == [(both.pk, ["env=prod", "team:ml"])]
    assert listed("tag=nobody") == []


def test_a_bad_tag_filter_in_the_api_is_a_422_naming_it(api):
    response = api("get", "/api/runs?tag=no%20good")

    assert response.status_code == 422 and response.json()["error"] == f"the tag filter is not valid: {NOT_A_TAG}"


# --- schedules --------------------------------------------------------------------------------


SCHEDULE = {"name": "nightly", "cron": "30 2 * * *", "timezone": "UTC", "parameter_set": "", "slot_param": "",
            "overlap": "skip", "enabled": "on"}


def test_the_runs_a_schedule_starts_get_its_tags_and_nothing_else():
    Schedule.objects.create(pipeline_name="fanout_demo", name="nightly", cron="0 * * * *", tags=["env=prod", "nightly"])
    Schedule.objects.filter().update(created_at=datetime.datetime(2026, 12, 2, 0, 30, tzinfo=UTC))

    with time_machine.travel(datetime.datetime(2026, 12, 2, 1, 1, tzinfo=UTC), tick=False):
        (row,) = scheduler.tick()

    assert row.run is not None and tags_of(row.run) == ["env=prod", "nightly"]
    assert AuditEvent.objects.get(action=AuditAction.TRIGGER).details["tags"] == ["env=prod", "nightly"]


def test_a_schedule_whose_stored_tags_break_the_rule_says_so_on_its_slot():
    Schedule.objects.create(pipeline_name="fanout_demo", name="old", cron="0 * * * *", tags=["no good"])
    Schedule.objects.filter().update(created_at=datetime.datetime(2026, 12, 2, 0, 30, tzinfo=UTC))

    with time_machine.travel(datetime.datetime(2026, 12, 2, 1, 1, tzinfo=UTC), tick=False):
        (row,) = scheduler.tick()

    row.refresh_from_db()
    assert row.outcome == "failed" and row.message == f"could not start: {NOT_A_TAG}"[:300]
    assert not Run.objects.exists()


def test_the_schedule_form_takes_tags_and_the_schedules_list_shows_them(operator_client):
    response = operator_client.post("/pipelines/fanout_demo/schedules/new/", {**SCHEDULE, "tags": "nightly, Env=prod"})

    schedule = Schedule.objects.get()
    assert response.status_code == 302 and schedule.tags == ["env=prod", "nightly"]
    assert AuditEvent.objects.get(action=AuditAction.SCHEDULE_CREATE).details["tags"] == ["env=prod", "nightly"]
    listed = text(operator_client.get("/schedules/"))
    assert '<a class="tag" href="/runs/?tag=env%3Dprod" title="Runs tagged env=prod">env=prod</a>' in listed
    assert 'value="env=prod, nightly"' in text(operator_client.get(f"/schedules/{schedule.pk}/edit/"))


def test_a_bad_tag_in_the_schedule_form_is_refused_naming_it_and_nothing_is_saved(operator_client):
    response = operator_client.post("/pipelines/fanout_demo/schedules/new/", {**SCHEDULE, "tags": "no good!"})

    assert response.status_code == 422
    assert "Tag &#x27;good!&#x27; is not valid" in text(response)
    assert not Schedule.objects.exists() and not AuditEvent.objects.exists()


# --- ctx.tag() in a step ------------------------------------------------------------------------


def run_of(pipe, tags=()) -> Run:
    return engine.run_inline(*engine.start_run(pipe.name, {}, tags=tags))


def test_a_step_tags_its_run(define):
    pipe = define("t_tagging")

    @pipe.step()
    def train(ctx):
        ctx.tag("Model:RF", "gpu")
        return ctx.tag("gpu")  # twice is harmless

    run = run_of(pipe)

    assert run.status == Status.SUCCEEDED and tags_of(run) == ["gpu", "model:rf"]


def test_a_bad_tag_from_a_step_fails_the_step_naming_the_tag(define):
    pipe = define("t_bad_tagging")

    @pipe.step()
    def train(ctx):
        ctx.tag("no good")

    run = run_of(pipe)

    step = run.step_runs.get()
    assert run.status == Status.FAILED and step.status == Status.FAILED
    assert NOT_A_TAG in step.error and not RunTag.objects.exists()


def test_a_step_cannot_take_a_run_past_twenty_tags(define):
    pipe = define("t_many_tags")

    @pipe.step()
    def train(ctx):
        ctx.tag("t01")  # has it already: not counted again
        ctx.tag("new-1", "new-2")

    run = run_of(pipe, tags=[f"t{i:02}" for i in range(1, 20)])

    assert run.status == Status.FAILED
    assert "has 19 tags; adding new-1, new-2 would make 21, and a run has at most 20" in run.step_runs.get().error
    assert len(tags_of(run)) == 19


# --- the note ---------------------------------------------------------------------------------


@pytest.fixture
def finished(db):
    return engine.run_inline(*engine.start_run("fanout_demo", {"rows": "5"}, tags=["env=prod"]))


def test_an_operator_saves_a_note_and_it_is_audited(operator_client, operator, finished):
    response = operator_client.post(f"/runs/{finished.pk}/note/", {"note": "  the input was late\r\nrerun tomorrow "})

    assert response.status_code == 302 and response["Location"] == f"/runs/{finished.pk}/"
    finished.refresh_from_db()
    assert finished.note == "the input was late\nrerun tomorrow"
    event = AuditEvent.objects.get()
    assert (event.user, event.action, event.target_id) == (operator, AuditAction.ADMIN_CHANGE, str(finished.pk))
    assert event.details == {"field": "note", "diff": {"changed": {"note": ["", "the input was late\nrerun tomorrow"]}}}
    page = text(operator_client.get(response["Location"]))
    assert f"The note of run #{finished.pk} is saved." in page
    assert '<div class="run-note-text">the input was late<br>rerun tomorrow</div>' in page


def test_saving_the_same_note_again_changes_and_audits_nothing(operator_client, finished):
    Run.objects.filter(pk=finished.pk).update(note="same")

    response = operator_client.post(f"/runs/{finished.pk}/note/", {"note": "same"}, follow=True)

    assert f"The note of run #{finished.pk} is unchanged." in text(response)
    assert not AuditEvent.objects.exists()


def test_a_note_saved_with_htmx_answers_the_notes_part_with_the_message_out_of_band(operator_client, finished):
    response = operator_client.post(f"/runs/{finished.pk}/note/", {"note": "looks fine"},
                                    headers={"HX-Request": "true", "X-Action": "1"})

    assert response.status_code == 200 and "HX-Request" in response["Vary"]
    part = text(response)
    assert '<section id="run-note" class="run-note" aria-label="Note">' in part  # no hx-preserve: it replaces
    assert '<div class="run-note-text">looks fine</div>' in part
    assert 'hx-swap-oob="true"' in part and f"The note of run #{finished.pk} is saved." in part
    finished.refresh_from_db()
    assert finished.note == "looks fine"


def test_a_note_too_long_is_refused_keeping_what_was_typed(operator_client, finished):
    long = "x" * 2001

    response = operator_client.post(f"/runs/{finished.pk}/note/", {"note": long}, headers={"HX-Request": "true"})

    assert response.status_code == 200
    assert "A note is at most 2000 characters; this one has 2001." in text(response)
    assert f">{long}</textarea>" in text(response) and "<details open>" in text(response)
    finished.refresh_from_db()
    assert finished.note == "" and not AuditEvent.objects.exists()


def test_a_note_too_long_from_a_plain_form_goes_back_saying_why(operator_client, finished):
    response = operator_client.post(f"/runs/{finished.pk}/note/", {"note": "x" * 2001}, follow=True)

    assert response.redirect_chain == [(f"/runs/{finished.pk}/", 302)]
    assert "was not saved: A note is at most 2000 characters; this one has 2001." in text(response)
    finished.refresh_from_db()
    assert finished.note == ""


def test_a_line_break_counts_as_one_character_of_a_note(operator_client, finished):
    note = "abcd\r\n" * 400  # 2,000 characters as the browser counts them (maxlength), 2,400 as it sends them

    operator_client.post(f"/runs/{finished.pk}/note/", {"note": note})

    finished.refresh_from_db()
    assert finished.note == ("abcd\n" * 400).strip()


def test_a_note_is_shown_escaped(operator_client, finished):
    Run.objects.filter(pk=finished.pk).update(note='<script>alert("x")</script> & <b>bold</b>')

    page = text(operator_client.get(f"/runs/{finished.pk}/"))
    listed = text(operator_client.get("/runs/"))

    assert "<script>alert" not in page and "<b>bold" not in page
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; &lt;b&gt;bold&lt;/b&gt;" in page
    assert "<script>alert" not in listed and 'title="&lt;script&gt;alert(&quot;x&quot;)' in listed


def test_a_stakeholder_cannot_write_a_note(stakeholder_client, finished):
    response = stakeholder_client.post(f"/runs/{finished.pk}/note/", {"note": "mine"})

    assert response.status_code == 403
    finished.refresh_from_db()
    assert finished.note == "" and not AuditEvent.objects.exists()


def test_an_anonymous_note_goes_to_the_login_page(client, finished):
    response = client.post(f"/runs/{finished.pk}/note/", {"note": "mine"})

    assert response.status_code == 302 and response["Location"] == f"/login/?next=/runs/{finished.pk}/note/"
    finished.refresh_from_db()
    assert finished.note == ""


def test_a_note_is_only_posted(operator_client, finished):
    assert operator_client.get(f"/runs/{finished.pk}/note/").status_code == 405


def test_a_note_without_a_csrf_token_is_refused(operator, finished):
    client = Client(enforce_csrf_checks=True)
    client.force_login(operator)

    response = client.post(f"/runs/{finished.pk}/note/", {"note": "mine"})

    assert response.status_code == 403
    finished.refresh_from_db()
    assert finished.note == "" and not AuditEvent.objects.exists()


def test_the_note_of_a_missing_run_is_a_404(operator_client):
    assert operator_client.post("/runs/999/note/", {"note": "x"}).status_code == 404


def test_the_run_page_shows_tags_as_links_to_the_list_and_keeps_the_note_across_polls(operator_client, finished):
    page = text(operator_client.get(f"/runs/{finished.pk}/"))

    assert '<a class="tag" href="/runs/?tag=env%3Dprod" title="Runs tagged env=prod">env=prod</a>' in page
    assert '<section id="run-note" class="run-note" hx-preserve="true" aria-label="Note">' in page
    assert 'hx-post="/runs/%d/note/"' % finished.pk in page and "✎ Add a note" in page


# --- the run list -----------------------------------------------------------------------------


def listed(client, query=""):
    page = text(client.get(f"/runs/{query}"))
    return [int(pk) for pk in re.findall(r'<td><a href="/runs/(\d+)/">#\1</a>', page)], page


@pytest.fixture
def runs(db):
    return {
        "prod": tagged_run("env=prod", "team:ml", status=Status.SUCCEEDED),
        "dev": tagged_run("env=dev", note="flaky input; Prod data was late", status=Status.FAILED),
        "plain": tagged_run(status=Status.SUCCEEDED),
    }


def test_the_list_filters_by_a_tag_or_by_every_one_of_several(operator_client, runs):
    assert listed(operator_client, "?tag=env%3Dprod")[0] == [runs["prod"].pk]
    assert listed(operator_client, "?tag=ENV%3DPROD")[0] == [runs["prod"].pk]
    assert listed(operator_client, "?tag=env%3Dprod%2C+team%3Aml")[0] == [runs["prod"].pk]
    assert listed(operator_client, "?tag=env%3Dprod+env%3Ddev")[0] == []
    ids, page = listed(operator_client, "?tag=nobody")
    assert ids == [] and "No run matches these filters." in page


def test_the_search_finds_a_tag_exactly_the_text_of_a_note_or_a_run_id(operator_client, runs):
    assert listed(operator_client, "?q=team%3Aml")[0] == [runs["prod"].pk]
    assert listed(operator_client, "?q=TEAM%3AML")[0] == [runs["prod"].pk]
    assert listed(operator_client, "?q=team")[0] == []  # part of a tag is not the tag
    assert listed(operator_client, "?q=data+was+LATE")[0] == [runs["dev"].pk]
    assert listed(operator_client, "?q=prod")[0] == [runs["dev"].pk]  # in its note; no run has the tag "prod"
    assert listed(operator_client, f"?q=%23{runs['plain'].pk}")[0] == [runs["plain"].pk]


def test_a_bad_tag_filter_is_reported_and_the_other_filters_still_apply(operator_client, runs):
    response = operator_client.get("/runs/?tag=no+good%21&status=failed")

    assert response.status_code == 200
    page = text(response)
    assert "These filters were ignored" in page
    assert "<li id=\"id_tag_error\">Tag: Tag &#x27;good!&#x27; is not valid" in page
    assert listed(operator_client, "?tag=no+good%21&status=failed")[0] == [runs["dev"].pk]


def test_the_rows_show_tags_whose_links_filter_by_them_keeping_the_other_filters(operator_client, runs):
    _ids, page = listed(operator_client, "?status=succeeded&page=1")

    link = '<a class="tag" href="/runs/?status=succeeded&amp;tag=team%3Aml" title="Runs tagged team:ml">team:ml</a>'
    assert link in page
    assert 'class="note-mark"' not in page  # the runs shown have no note
    assert 'class="note-mark" title="flaky input; Prod data was late"' in listed(operator_client, "?status=failed")[1]


def test_the_list_reads_every_rows_tags_in_one_query(operator_client, django_assert_max_num_queries):
    for i in range(3):
        tagged_run(f"batch-{i}", "env=prod")
    operator_client.get("/runs/")  # the session, the pipeline registry's snapshots
    with CaptureQueriesContext(connection) as three:
        operator_client.get("/runs/")
    for i in range(22):
        tagged_run(f"more-{i}", "env=prod", "team:ml")

    with django_assert_max_num_queries(len(three)):
        _ids, page = listed(operator_client)

    assert page.count('class="tag"') == 3 * 2 + 22 * 3  # 25 runs, one page


def test_a_poll_of_the_list_that_changed_nothing_reads_no_tags(operator_client, runs):
    first = operator_client.get("/runs/", headers={"HX-Request": "true"})
    version = re.search(r'data-version="([^"]+)"', text(first)).group(1)

    with CaptureQueriesContext(connection) as queries:
        again = operator_client.get("/runs/", headers={"HX-Request": "true", "X-Version": version})

    assert again.status_code == 204
    assert not [q for q in queries if "app_runtag" in q["sql"]]


def test_a_stakeholder_sees_no_runs_so_no_tags_or_notes(stakeholder_client, runs):
    assert stakeholder_client.get("/runs/?tag=env%3Dprod").status_code == 403
    assert stakeholder_client.get(f"/runs/{runs['dev'].pk}/").status_code == 403


def test_the_admin_shows_a_runs_tags(client, runs):
    client.force_login(make_user("root", superuser=True))

    changelist = text(client.get("/admin/app/run/"))
    change = text(client.get(f"/admin/app/run/{runs['prod'].pk}/change/"))

    assert "env=prod, team:ml" in changelist
    assert "team:ml" in change and client.get("/admin/app/runtag/").status_code == 200
