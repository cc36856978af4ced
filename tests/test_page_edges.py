"""The edges a person trips on: a wrong address, an expired form, a reload of an action's
address, a reloaded token form; what the run pages say about a run that failed, is running,
or re-runs another; times in the viewer's zone; messages after an action done with htmx."""

import datetime
import re

import pytest
from django.test import Client
from django.utils import timezone

from app.models import ApiToken, Run, Status
from app.runs import actions, engine

pytestmark = pytest.mark.django_db


def text(response):
    return response.content.decode()


def finished_run(pipeline_name, **params):
    run, ready = engine.start_run(pipeline_name, params)
    return engine.run_inline(run, ready)


def failing_run(define):
    pipe = define("t_breaks")

    @pipe.step()
    def first(ctx):
        return 1

    @pipe.step(after=[first])
    def second(ctx, first):
        raise RuntimeError("second is broken")

    @pipe.step(after=[second])
    def third(ctx, second):
        return 3

    return finished_run("t_breaks")


# --- error pages ------------------------------------------------------------------------------

@pytest.mark.parametrize("path", ["/runs/abc/", "/no/such/page/", "/runs/12/steps/", "/pipelines/fanout_demo/x/y/z/"])
def test_an_unknown_address_names_itself_and_never_an_exception(operator_client, path):
    response = operator_client.get(path)

    assert response.status_code == 404
    page = text(response)
    assert f"There is nothing at {path}." in page and "Resolver404" not in page and "Http404" not in page
    assert 'class="topbar"' in page and "Go to the start page" in page.replace("go to", "Go to")


def test_a_missing_run_is_named(operator_client):
    response = operator_client.get("/runs/99999/")

    assert response.status_code == 404 and "There is no run #99999." in text(response)
    assert 'href="/runs/"' in text(response)  # a way up to the run list


def test_opening_the_address_a_form_posts_to_explains_itself_with_a_way_back(operator_client):
    response = operator_client.get("/pipelines/fanout_demo/run/")

    assert response.status_code == 405 and response["Allow"] == "POST"
    page = text(response)
    assert "This address is an action, not a page" in page and "Nothing was changed." in page
    assert '<a href="/pipelines/fanout_demo/">Go to /pipelines/fanout_demo/</a>' in page
    assert not Run.objects.exists()


def test_the_api_keeps_its_json_405(operator):
    response = Client().get("/api/runs/1/cancel")

    assert response.status_code == 405 and response.json()["error"].startswith("GET is not allowed here")


def test_an_expired_form_says_so_and_changes_nothing(operator):
    client = Client(enforce_csrf_checks=True)
    client.force_login(operator)

    response = client.post("/pipelines/fanout_demo/run/", {"rows": "10"}, HTTP_REFERER="http://testserver/pipelines/fanout_demo/")

    assert response.status_code == 403
    page = text(response)
    assert "This form has expired" in page and "Nothing was changed." in page and "CSRF verification failed" not in page
    assert '<a href="http://testserver/pipelines/fanout_demo/">Open the page again</a>' in page
    assert not Run.objects.exists()


def test_a_request_for_a_host_we_do_not_serve_gets_the_bad_request_page(operator_client):
    response = operator_client.get("/pipelines/", HTTP_HOST="evil.example")

    assert response.status_code == 400
    assert "The request could not be read" in text(response) and "DisallowedHost" not in text(response)


def test_a_stakeholder_on_an_operator_page_is_told_why(stakeholder_client):
    response = stakeholder_client.get("/runs/")

    assert response.status_code == 403 and "Only operators may open this page or do this." in text(response)


# --- run pages ------------------------------------------------------------------------------

def test_a_failed_run_does_not_claim_100_percent(operator_client, define):
    run = failing_run(define)

    for page in (text(operator_client.get(f"/runs/{run.pk}/")), text(operator_client.get("/runs/"))):
        assert "3/3 · failed" in page and "3/3 · 100%" not in page
    page = text(operator_client.get(f"/runs/{run.pk}/"))
    counts = re.search(r'<p class="step-counts[^>]*>(.*?)</p>', page, re.S).group(1)
    assert ">1 succeeded<" in counts and ">1 failed<" in counts and ">1 upstream failed<" in counts


def test_a_succeeded_run_shows_100_percent(operator_client):
    run = finished_run("fanout_demo", rows=5)

    assert "5/5 · 100%" in text(operator_client.get(f"/runs/{run.pk}/"))


def test_a_running_run_shows_how_long_it_has_been_running(operator_client):
    run, _ready = engine.start_run("fanout_demo", {})
    Run.objects.filter(pk=run.pk).update(status=Status.RUNNING, started_at=timezone.now() - datetime.timedelta(seconds=75))

    page = text(operator_client.get(f"/runs/{run.pk}/"))

    assert re.search(r'<span class="elapsed"[^>]*>1 min 1[5-9] s so far</span>', page)
    assert re.search(r"1 min 1[5-9] s so far", text(operator_client.get("/runs/")))


def test_a_rerun_links_to_its_source_and_back(operator_client, operator):
    source = finished_run("fanout_demo", rows=5)
    again, ready = actions.rerun(source, operator)

    page = text(operator_client.get(f"/runs/{again.pk}/"))
    assert f'A re-run of <a href="/runs/{source.pk}/">run #{source.pk}</a> with the same parameters' in page
    assert f'Re-run as <a href="/runs/{again.pk}/">#{again.pk}</a>' in text(operator_client.get(f"/runs/{source.pk}/"))
    assert f"▶ of #{source.pk}" in text(operator_client.get("/runs/"))


def test_a_rerun_with_edited_parameters_links_to_its_source(operator_client):
    source = finished_run("fanout_demo", rows=5)
    form = text(operator_client.get(f"/pipelines/fanout_demo/?from_run={source.pk}"))
    assert f'<input type="hidden" name="from_run" value="{source.pk}">' in form

    response = operator_client.post("/pipelines/fanout_demo/run/", {"rows": "7", "seed": "7", "pause": "0",
                                                                     "from_run": str(source.pk)})

    new = Run.objects.get(pk=int(response["Location"].strip("/").split("/")[-1]))
    assert (new.rerun_of, new.params["rows"]) == (source, 7)
    assert "with edited parameters" in text(operator_client.get(new.get_absolute_url()))


def test_the_status_filter_offers_only_what_a_run_can_be(operator_client):
    page = text(operator_client.get("/runs/"))
    select = re.search(r'<select name="status".*?</select>', page, re.S).group(0)

    assert re.findall(r'<option value="(\w*)"', select) == ["", "queued", "running", "succeeded", "failed", "cancelled"]


def test_home_says_nothing_is_running_when_runs_exist_but_none_runs(operator_client):
    finished_run("fanout_demo", rows=5)

    page = text(operator_client.get("/dashboard/"))

    assert "Nothing is running or queued now." in page and "No runs yet." not in page


def test_an_empty_filtered_run_list_says_the_filters_match_nothing(operator_client):
    finished_run("fanout_demo", rows=5)

    assert "No run matches these filters." in text(operator_client.get("/runs/?status=failed"))


# --- tokens --------------------------------------------------------------------------------

def test_sending_the_token_form_again_makes_no_second_token(operator_client):
    form = text(operator_client.get("/tokens/"))
    once = re.search(r'name="once" value="([^"]+)"', form).group(1)
    data = {"name": "billing", "scopes": ["predict"], "expires": "90", "once": once}

    first = operator_client.post("/tokens/", data)
    again = operator_client.post("/tokens/", data)  # the browser's reload of the page that showed the secret

    assert ApiToken.objects.count() == 1
    assert "token-secret" in text(first) and "token-secret" not in text(again)
    assert "no second token was made" in text(again)
    fresh = re.search(r'name="once" value="([^"]+)"', text(again)).group(1)
    operator_client.post("/tokens/", {**data, "once": fresh})
    assert ApiToken.objects.count() == 2  # a new form makes a new token


# --- times ---------------------------------------------------------------------------------

def test_times_are_in_the_viewers_zone_with_utc_on_hover(operator_client):
    run = finished_run("fanout_demo", rows=5)
    created = run.created_at.astimezone(datetime.UTC)
    operator_client.cookies["tz"] = "Asia/Tokyo"

    page = text(operator_client.get(f"/runs/{run.pk}/"))

    tokyo = created + datetime.timedelta(hours=9)
    assert f'title="{created:%Y-%m-%d %H:%M:%S} UTC · ' in page
    assert f">{tokyo:%Y-%m-%d %H:%M:%S}</time>" in page
    assert "Times are in Asia/Tokyo (your browser's time zone)" in page


def test_an_unknown_zone_is_ignored(operator_client):
    run = finished_run("fanout_demo", rows=5)
    operator_client.cookies["tz"] = "Mars/Olympus"

    page = text(operator_client.get(f"/runs/{run.pk}/"))

    assert f">{run.created_at.astimezone(datetime.UTC):%Y-%m-%d %H:%M:%S}</time>" in page
    assert "Times are in UTC · " in page


# --- messages after an htmx action -------------------------------------------------------------

def test_an_action_done_with_htmx_replaces_the_old_message(operator_client):
    response = operator_client.post("/pipelines/fanout_demo/run/", {"rows": "5", "seed": "7", "pause": "0"})
    run = Run.objects.get()
    assert "started" in text(operator_client.get(response["Location"]))  # the message, shown once

    htmx = {"HTTP_HX_REQUEST": "true", "HTTP_X_ACTION": "1", "HTTP_X_POLL": "0"}
    cancelled = operator_client.post(f"/runs/{run.pk}/cancel/", follow=True, **htmx)

    page = text(cancelled)
    oob = re.search(r'<ul class="messages" id="messages" role="status" hx-swap-oob="true">(.*?)</ul>', page, re.S)
    assert oob is not None and "started" not in oob.group(1)
    poll = text(operator_client.get(f"/runs/{run.pk}/", HTTP_HX_REQUEST="true", HTTP_X_POLL="1"))
    assert 'id="messages"' not in poll  # a poll leaves the messages alone
