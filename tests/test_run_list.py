"""The run list: search by run id, parameter value or user; filters by pipeline, status, user,
parameter set and date; sortable columns that keep the filters; a bad value reported and
ignored while the others apply."""

import datetime
import html
import re

import pytest
from django.utils import timezone

from app.models import Run, Status
from app.runs import engine, paramsets
from tests.conftest import make_user

pytestmark = pytest.mark.django_db


def listed(client, query=""):
    page = client.get(f"/runs/{query}").content.decode()
    return [int(pk) for pk in re.findall(r'<td><a href="/runs/(\d+)/">#\1</a>', page)], page


def seeded(user, **fields):
    run, _ready = engine.start_run("fanout_demo", {"rows": fields.pop("rows", 1000)}, user=user,
                                   parameter_revision=fields.pop("parameter_revision", None))
    Run.objects.filter(pk=run.pk).update(**fields)
    return run


@pytest.fixture
def runs(operator):
    other = make_user("priya", "operators")
    now = timezone.now()
    chosen = paramsets.create("fanout_demo", "big", {"rows": 4242}, operator)
    return {
        "quick": seeded(operator, status=Status.SUCCEEDED, started_at=now, finished_at=now + datetime.timedelta(seconds=2)),
        "slow": seeded(other, status=Status.FAILED, started_at=now, finished_at=now + datetime.timedelta(seconds=90),
                       rows=777),
        "set": seeded(operator, status=Status.SUCCEEDED, rows=4242, parameter_revision=chosen.latest,
                      started_at=now, finished_at=now + datetime.timedelta(seconds=30)),
        "old": seeded(other, status=Status.SUCCEEDED, created_at=now - datetime.timedelta(days=10)),
        "chosen": chosen,
    }


def test_search_finds_a_run_by_id_parameter_value_or_user(operator_client, runs):
    assert listed(operator_client, f"?q=%23{runs['slow'].pk}")[0] == [runs["slow"].pk]
    assert runs["slow"].pk in listed(operator_client, f"?q={runs['slow'].pk}")[0]  # also runs with that number in a value
    assert listed(operator_client, "?q=4242")[0] == [runs["set"].pk]
    assert listed(operator_client, "?q=priy")[0] == [runs["old"].pk, runs["slow"].pk]
    ids, page = listed(operator_client, "?q=nothing-like-this")
    assert ids == [] and "No run matches these filters." in page


def test_filters_by_user_parameter_set_and_dates(operator_client, runs):
    assert listed(operator_client, "?user=priya")[0] == [runs["old"].pk, runs["slow"].pk]
    assert listed(operator_client, f"?parameter_set={runs['chosen'].pk}")[0] == [runs["set"].pk]
    today = timezone.localdate()
    recent = listed(operator_client, f"?since={today - datetime.timedelta(days=1)}")[0]
    assert runs["old"].pk not in recent and len(recent) == 3
    assert listed(operator_client, f"?until={today - datetime.timedelta(days=5)}")[0] == [runs["old"].pk]
    assert listed(operator_client, "?status=failed&user=priya")[0] == [runs["slow"].pk]


def test_sorting_by_a_column_keeps_the_filters_and_flips_on_a_second_click(operator_client, runs):
    ids, page = listed(operator_client, "?status=succeeded&o=duration")
    assert ids == [runs["quick"].pk, runs["set"].pk, runs["old"].pk]  # 2 s, 30 s, then the one that never ran
    header = re.search(r'<th class="num" aria-sort="ascending"><a href="([^"]+)"', page)
    assert header is not None
    flipped = html.unescape(header.group(1))
    assert "status=succeeded" in flipped and "o=-duration" in flipped
    ids, page = listed(operator_client, flipped)
    assert ids == [runs["set"].pk, runs["quick"].pk, runs["old"].pk]
    assert 'aria-sort="descending"' in page and "Duration ▼" in page

    assert listed(operator_client, "?o=user")[0][-2:] == [runs["old"].pk, runs["slow"].pk]  # priya after olivia


def test_a_bad_value_is_reported_and_the_other_filters_still_apply(operator_client, runs):
    ids, page = listed(operator_client, "?since=last-tuesday&user=priya&o=sideways")

    assert ids == [runs["old"].pk, runs["slow"].pk]
    assert "These filters were ignored" in page and '<li id="id_since_error">From: Enter a valid date.</li>' in page
    assert "Select a valid choice. sideways is not one of the available choices." in page


def test_a_stakeholder_cannot_list_runs(stakeholder_client, runs):
    assert stakeholder_client.get("/runs/?q=1").status_code == 403
