"""Your settings: a time zone of your own, kept across sign-ins, over the browser's."""

import datetime
import re

import pytest
from django.test import Client

from app.models import Preferences
from app.runs import engine
from tests.conftest import PASSWORD

pytestmark = pytest.mark.django_db


def text(response):
    return response.content.decode()


def shown_created(page) -> str:
    return re.search(r"<dt>Created</dt><dd><time [^>]*>([^<]+)</time>", page)[1]


def test_a_chosen_zone_wins_over_the_browsers_and_outlives_the_session(operator_client, operator):
    run = engine.run_inline(*engine.start_run("fanout_demo", {"rows": "5"}))
    created = run.created_at.astimezone(datetime.UTC)
    operator_client.cookies["tz"] = "Asia/Tokyo"

    response = operator_client.post("/account/", {"time_zone": "America/New_York"}, follow=True)

    assert "Times are now shown in America/New_York." in text(response)
    page = text(operator_client.get(f"/runs/{run.pk}/"))
    new_york = created.astimezone(datetime.timezone(datetime.timedelta(hours=-5)))  # December: EST
    assert shown_created(page) == f"{new_york:%Y-%m-%d %H:%M:%S}"
    assert "Times are in America/New_York (your setting)" in page

    again = Client()  # another sign-in, another browser in Tokyo
    again.cookies["tz"] = "Asia/Tokyo"
    signed_in = again.post("/login/", {"username": operator.username, "password": PASSWORD})
    assert signed_in.status_code == 302
    assert shown_created(text(again.get(f"/runs/{run.pk}/"))) == f"{new_york:%Y-%m-%d %H:%M:%S}"


def test_choosing_the_browsers_zone_again_follows_the_browser(operator_client):
    run = engine.run_inline(*engine.start_run("fanout_demo", {"rows": "5"}))
    operator_client.cookies["tz"] = "Asia/Tokyo"
    operator_client.post("/account/", {"time_zone": "Europe/Paris"})

    operator_client.post("/account/", {"time_zone": ""})

    page = text(operator_client.get(f"/runs/{run.pk}/"))
    tokyo = run.created_at.astimezone(datetime.timezone(datetime.timedelta(hours=9)))
    assert shown_created(page) == f"{tokyo:%Y-%m-%d %H:%M:%S}"
    assert "Times are in Asia/Tokyo (your browser's time zone)" in page
    form = text(operator_client.get("/account/"))
    assert '<option value="" selected>the time zone of my browser (now Asia/Tokyo)</option>' in form


def test_an_unknown_zone_is_refused_and_changes_nothing(operator_client, operator):
    operator_client.post("/account/", {"time_zone": "Europe/Paris"})

    response = operator_client.post("/account/", {"time_zone": "Mars/<b>Olympus</b>"})

    assert response.status_code == 422
    assert "Mars/&lt;b&gt;Olympus&lt;/b&gt; is not a time zone this server knows" in text(response)
    assert Preferences.objects.get(user=operator).time_zone == "Europe/Paris"


def test_every_role_has_settings_and_nobody_signed_out_does(stakeholder_client):
    assert stakeholder_client.get("/account/").status_code == 200
    assert stakeholder_client.post("/account/", {"time_zone": "Asia/Kolkata"}).status_code == 302

    anonymous = Client().get("/account/")
    assert anonymous.status_code == 302 and "/login/" in anonymous["Location"]
