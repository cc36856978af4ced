"""An operator in a real browser deploys a model version through the confirmation, rolls
back, and creates an API token that then works against the endpoint."""

import json

import pytest

from app.api import tokens
from app.mlmodels import deployments
from app.models import ModelVersion, RegisteredModel
from tests.conftest import served, train_version
from tests.test_browser import SCREENSHOTS, log_in

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_an_operator_deploys_through_the_confirmation_and_rolls_back(live_server, operator, model_demo, page):
    first, second = train_version(accuracy=0.9), train_version(accuracy=0.8)
    deployments.deploy(first, operator, "baseline")
    page.goto(f"{live_server.url}/login/")
    log_in(page, operator)
    page.goto(f"{live_server.url}/models/demo/")
    page.locator("#versions tr", has_text="v2").locator("text=Deploy…").click()
    page.wait_for_url(f"{live_server.url}/models/demo/versions/2/deploy/")
    comparison = page.inner_text("#comparison")
    assert "0.9000" in comparison and "0.8000" in comparison and "▼ -0.1000" in comparison
    # No reason: the browser's own check and ours both stop it; nothing changes.
    page.click("text=Deploy v2")
    assert page.url.endswith("/deploy/")
    page.fill("#id_reason", "canary for the new features")
    SCREENSHOTS.mkdir(exist_ok=True)
    page.screenshot(path=SCREENSHOTS / "model-deploy-confirm.png", full_page=True)
    page.click("text=Deploy v2")
    page.wait_for_url(f"{live_server.url}/models/demo/")
    assert "demo v2 is live" in page.inner_text(".messages")
    assert "v2 live" in page.inner_text("h1 + .badge, .run-head")
    history = page.inner_text("#history")
    assert "canary for the new features" in history and "baseline" in history
    assert RegisteredModel.objects.get(name="demo").live.version == second

    page.fill("[aria-label='Reason for the rollback']", "canary errors")
    page.click("text=Roll back to v1")
    page.wait_for_url(f"{live_server.url}/models/demo/")
    assert "v1 of demo is live again" in page.inner_text(".messages")
    assert RegisteredModel.objects.get(name="demo").live.version == first
    page.screenshot(path=SCREENSHOTS / "model-page.png", full_page=True)


def test_a_token_created_in_the_browser_calls_the_api(live_server, operator, model_demo, page):
    deployments.deploy(train_version(constant=4), operator, "baseline")
    page.goto(f"{live_server.url}/login/")
    log_in(page, operator)
    page.goto(f"{live_server.url}/tokens/")
    page.fill("#id_name", "notebook")
    page.check("text=runs:read")
    page.select_option("#id_expires", "30")
    page.click("text=Create token")
    secret = page.inner_text(".token-secret").strip()
    example = page.inner_text("#new-token")
    assert "/api/models/demo/predict" in example and '{"instances": [[0.0, 0.0]]}' in example
    assert "/api/runs" in example
    assert tokens.check(f"Bearer {secret}", "runs:read").user == operator
    runs = page.request.get(f"{live_server.url}/api/runs", headers={"Authorization": f"Bearer {secret}"})
    trained = ModelVersion.objects.get().run  # the run that trained the deployed version
    assert runs.status == 200 and runs.json()["results"][0]["pipeline"] == trained.pipeline_name
    assert runs.json()["results"][0]["id"] == trained.pk
    answer = page.request.post(
        f"{live_server.url}/api/models/demo/predict",
        data=json.dumps({"instances": [[1, 2]]}),
        headers={"Authorization": f"Bearer {secret}", "Content-Type": "application/json"},
    )
    assert answer.status == 200 and served(answer.json()) == {"model": "demo", "version": 1, "predictions": [4]}
    page.goto(f"{live_server.url}/tokens/")
    assert secret not in page.content() and "notebook" in page.inner_text("#tokens")
    assert "runs:read" in page.inner_text("#tokens")


def test_an_operator_tries_a_canary_and_promotes_it(live_server, operator, model_demo, page):
    deployments.deploy(train_version(constant=3), operator, "baseline")
    train_version(constant=8)
    secret = tokens.create(operator, "shop")[1]
    page.goto(f"{live_server.url}/login/")
    log_in(page, operator)
    page.goto(f"{live_server.url}/models/demo/")
    trial = page.locator("#trial-start")
    trial.locator("select[name=version]").select_option("2")
    trial.locator("select[name=mode]").select_option("canary")
    trial.locator("input[name=percent]").fill("150")
    trial.locator("input[name=reason]").fill("a fifth of traffic")
    trial.locator("text=Start trial").click()
    # The browser's own check stops it (our server's message is tested in test_trials); nothing started.
    assert trial.locator("input[name=percent]").evaluate("e => e.validity.rangeOverflow")
    assert RegisteredModel.objects.get(name="demo").trial_id is None

    page.locator("#trial-start input[name=percent]").fill("20")
    page.locator("#trial-start").locator("text=Start trial").click()
    page.wait_for_url(f"{live_server.url}/models/demo/")
    assert "answers 20 % of demo's requests" in page.inner_text(".messages")
    assert "canary 20 %" in page.inner_text("#trial")
    versions = set()
    for _ in range(60):
        answer = page.request.post(f"{live_server.url}/api/models/demo/predict", data=json.dumps({"instances": [[1, 2]]}),
                                   headers={"Authorization": f"Bearer {secret}", "Content-Type": "application/json"})
        versions.add(answer.json()["version"])
    assert versions == {1, 2}  # 60 requests at 20 %: both answer (a miss has odds of 1 in 650,000)

    page.fill("[aria-label='Reason for promoting v2']", "the canary looks fine")
    page.click("text=Promote v2")
    page.wait_for_url(f"{live_server.url}/models/demo/")
    assert "v2 of demo is live" in page.inner_text(".messages")
    assert RegisteredModel.objects.get(name="demo").live.version.version == 2
    history = page.inner_text("#trial-history")
    assert "canary 20 %" in history and "promoted" in history and "the canary looks fine" in history
