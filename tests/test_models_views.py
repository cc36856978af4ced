"""The models pages: list, versions table, version page with lineage and results, deploy
confirmation, rollback, redeploy, retrain-and-deploy; and the run page's part of it."""

import pytest

from app.mlmodels import deployments
from app.models import Deployment, ModelVersion, Promotion, RegisteredModel, ResultTable, Run
from app.runs import engine, paramsets
from app.web import tables
from tests.conftest import train_version

pytestmark = pytest.mark.django_db


@pytest.fixture
def three(model_demo, operator):
    """demo v1 (accuracy 0.7), v2 (0.9, live, deployed after v1), v3 (0.8)."""
    versions = [train_version(accuracy=a) for a in (0.7, 0.9, 0.8)]
    deployments.deploy(versions[0], operator, "first release")
    deployments.deploy(versions[1], operator, "better <b>accuracy</b>")
    return versions


def text(response):
    return response.content.decode()


def test_the_list_shows_each_model_with_its_live_version_and_headline(operator_client, three):
    page = text(operator_client.get("/models/"))
    assert "demo" in page and "v2" in page and "accuracy <strong>0.9000</strong>" in page


def test_the_list_says_when_nothing_is_deployed(operator_client, model_demo):
    train_version()
    assert "nothing deployed" in text(operator_client.get("/models/"))


def test_the_model_page_has_versions_history_and_actions(operator_client, three):
    response = operator_client.get("/models/demo/")
    page = text(response)
    rows = [r["version"].version for r in response.context["rows"]]
    assert rows == [3, 2, 1]
    assert response.context["names"] == ["accuracy", "loss"]
    assert "v2 live" in page and "↶ Roll back to v1" in page and "⟳ Redeploy v2" in page
    # History, newest first, reasons escaped.
    history = list(response.context["history"])
    assert [(d.version.version, d.retired_at is None) for d in history] == [(2, True), (1, False)]
    assert "better &lt;b&gt;accuracy&lt;/b&gt;" in page and "<b>accuracy</b>" not in page


@pytest.mark.parametrize("query, order", [
    ("?sort=accuracy&order=desc", [2, 3, 1]), ("?sort=accuracy&order=asc", [1, 3, 2]),
    ("?sort=loss&order=asc", [2, 3, 1]), ("?sort=version&order=asc", [1, 2, 3]), ("?sort=nonsense", [3, 2, 1]),
])
def test_the_versions_table_sorts_by_any_metric(operator_client, three, query, order):
    response = operator_client.get("/models/demo/" + query)
    assert [r["version"].version for r in response.context["rows"]] == order


def test_the_version_page_shows_lineage_metrics_and_the_confusion_matrix(operator_client, three):
    version = three[2]
    page = text(operator_client.get("/models/demo/versions/3/"))
    assert f'href="/runs/{version.run_id}/"' in page
    assert f'href="/runs/{version.run_id}/steps/train/"' in page
    assert "0.8000" in page and "Deploy v3…" in page
    assert '<th scope="row">yes</th>' in page and "Confusion matrix" in page


def test_every_cell_of_a_confusion_matrix_reads_at_4_5_to_1():
    """White text on the darker shades, black on the others (site.css): WCAG AA on each."""
    def contrast(a, b):
        lighter, darker = sorted((tables.relative_luminance(a), tables.relative_luminance(b)), reverse=True)
        return (lighter + 0.05) / (darker + 0.05)

    for count in range(101):
        heat = tables.heatmap({"labels": ["a", "b"], "matrix": [[count, 100 - count], [0, 1]]})
        cell = heat["rows"][0]["cells"][0]
        alpha = float(cell["alpha"])
        shade = [255 + (channel - 255) * alpha for channel in tables.HEAT_RGB]
        text_colour = (255, 255, 255) if cell["dark"] else (0, 0, 0)
        assert contrast(shade, text_colour) >= 4.5, (count, cell)
    assert tables.heatmap({"labels": ["a"], "matrix": [[5]]})["rows"][0]["cells"][0]["dark"]  # the darkest: white


def test_the_versions_table_puts_aria_sort_on_the_sorted_header(operator_client, three):
    page = text(operator_client.get("/models/demo/?sort=accuracy&order=asc"))
    assert '<th class="num" aria-sort="ascending"><a href="?sort=accuracy&order=desc">accuracy ▲</a></th>' in page
    assert page.count("aria-sort") == 1


def test_an_unknown_model_or_version_is_a_404(operator_client, three):
    assert operator_client.get("/models/nope/").status_code == 404
    assert operator_client.get("/models/demo/versions/9/").status_code == 404
    assert operator_client.get("/models/demo/versions/9/deploy/").status_code == 404


def test_the_deploy_confirmation_shows_the_change_against_the_live_version(operator_client, three):
    response = operator_client.get("/models/demo/versions/3/deploy/")
    page = text(response)
    assert "replaces <strong>v2</strong>" in page
    rows = {row["name"]: row for row in response.context["comparison"]}
    assert rows["accuracy"]["old"] == 0.9 and rows["accuracy"]["new"] == 0.8
    assert "▼ -0.1000" in page and "▲ +0.1000" in page  # accuracy down, loss up


def test_deploying_needs_a_reason_and_changes_nothing_without_one(operator_client, three):
    response = operator_client.post("/models/demo/versions/3/deploy/", {"reason": " "})
    assert response.status_code == 422 and "Give a short reason" in text(response)
    assert RegisteredModel.objects.get(name="demo").live.version.version == 2


def test_deploying_switches_the_live_version(operator_client, three):
    response = operator_client.post("/models/demo/versions/3/deploy/", {"reason": "try v3"}, follow=True)
    assert "demo v3 is live" in text(response)
    live = RegisteredModel.objects.get(name="demo").live
    assert live.version.version == 3 and live.reason == "try v3" and live.deployed_by_name == "olivia"


def test_deploying_the_live_version_again_is_refused(operator_client, three):
    response = operator_client.post("/models/demo/versions/2/deploy/", {"reason": "again"})
    assert response.status_code == 422 and "already live" in text(response)
    assert Deployment.objects.count() == 2


def test_rollback_and_redeploy_from_the_model_page(operator_client, three):
    page = text(operator_client.post("/models/demo/rollback/", {"reason": "v2 is off"}, follow=True))
    assert "v1 of demo is live again" in page
    page = text(operator_client.post("/models/demo/redeploy/", {"reason": "reload"}, follow=True))
    assert "v1 of demo redeployed" in page
    kinds = list(Deployment.objects.order_by("id").values_list("version__version", "kind"))
    assert kinds == [(1, "deploy"), (2, "deploy"), (1, "rollback"), (1, "redeploy")]


def test_rollback_without_a_reason_is_refused_with_a_message(operator_client, three):
    page = text(operator_client.post("/models/demo/rollback/", {"reason": ""}, follow=True))
    assert "Give a short reason" in page
    assert Deployment.objects.count() == 2


def test_retrain_starts_a_run_under_the_rule(operator_client, three, operator):
    pset = paramsets.create("t_model_demo", "better", {"accuracy": 0.95}, operator)
    response = operator_client.post(
        "/models/demo/retrain/", {"parameter_set": pset.pk, "rule": "at_least", "metric": "accuracy"}
    )
    run = Run.objects.order_by("-id").first()
    assert response.status_code == 302 and response["Location"] == f"/runs/{run.pk}/"
    assert run.params["accuracy"] == 0.95 and run.parameter_revision == pset.latest
    promotion = Promotion.objects.get(run=run)
    assert (promotion.rule, promotion.metric, promotion.verdict) == ("at_least", "accuracy", "pending")


@pytest.mark.parametrize("data, message", [
    ({"rule": "at_least", "metric": ""}, "Pick the metric the rule compares."),
    ({"rule": "sometimes", "metric": "accuracy"}, "Select a valid choice. sometimes is not one of the available choices."),
    ({"rule": "at_least", "metric": "recall"}, "Select a valid choice. recall is not one of the available choices."),
    ({"rule": "never", "parameter_set": "999"}, "Pick one of the pipeline&#x27;s parameter sets."),
])
def test_a_bad_retrain_form_is_a_422_and_starts_nothing(operator_client, three, operator, data, message):
    pset = paramsets.create("t_model_demo", "base", {}, operator)
    runs = Run.objects.count()
    response = operator_client.post("/models/demo/retrain/", {"parameter_set": pset.pk, **data})
    assert response.status_code == 422 and message in text(response)
    assert Run.objects.count() == runs and not Promotion.objects.exists()


def test_a_parameter_set_of_another_pipeline_cannot_retrain(operator_client, three, operator):
    other = paramsets.create("fanout_demo", "other", {}, operator)
    response = operator_client.post("/models/demo/retrain/", {"parameter_set": other.pk, "rule": "never"})
    assert response.status_code == 422 and not Promotion.objects.exists()


def test_the_run_page_shows_the_verdict_the_version_and_the_results(operator_client, three, operator):
    run, ready = engine.start_run("t_model_demo", {"accuracy": 0.99}, user=operator)
    Promotion.objects.create(run=run, model=three[0].model, rule="at_least", metric="accuracy", requested_by=operator)
    engine.run_inline(run, ready)
    page = text(operator_client.get(f"/runs/{run.pk}/"))
    assert "deployed v4: accuracy 0.99 ≥ v2&#x27;s 0.9" in page
    assert "demo v4" in page and "Confusion matrix" in page
    model_page = text(operator_client.get("/models/demo/"))
    assert "deployed v4" in model_page and "v4 live" in model_page


def test_result_tables_are_rendered_escaped(operator_client, define):
    pipe = define("t_tables")

    @pipe.step()
    def report(ctx):
        ctx.log_table("Scores <i>", [{"name": "<script>alert(1)</script>", "score": 0.5, "note": None}])

    run = engine.run_inline(*engine.start_run("t_tables", {}))
    assert ResultTable.objects.get(run=run).data == {
        "columns": ["name", "score", "note"], "rows": [["<script>alert(1)</script>", 0.5, None]]
    }
    page = text(operator_client.get(f"/runs/{run.pk}/"))
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page and "<script>alert(1)" not in page
    assert "Scores &lt;i&gt;" in page


@pytest.mark.parametrize("call, message", [
    ("ctx.log_table('t', [[1, 2]])", "give `columns`, or rows as dicts"),
    ("ctx.log_table('t', [[1, 2]], columns=['a'])", "row 0 has 2 values for 1 columns"),
    ("ctx.log_table('t', [{'a': 1}] * 501)", "at most 500 rows"),
    ("ctx.log_table('', [{'a': 1}])", "table name '' must be"),
    ("ctx.log_confusion_matrix([1, 2], [1])", "y_true has 2 values but y_pred has 1"),
    ("ctx.log_confusion_matrix([1], [1], display_labels=['a', 'b'])", "2 display labels for 1 classes"),
])
def test_bad_result_tables_fail_the_step_with_a_clear_message(define, call, message):
    pipe = define("t_bad_tables")

    @pipe.step()
    def report(ctx):
        eval(call)

    run = engine.run_inline(*engine.start_run("t_bad_tables", {}))
    assert run.status == "failed" and message in run.step_runs.get().error
    assert not ResultTable.objects.exists()


# --- what stakeholders see -----------------------------------------------------------------


def test_stakeholders_see_models_in_production_with_metrics_and_since_when(stakeholder_client, three):
    page = text(stakeholder_client.get("/results/"))
    assert "Models in production" in page
    assert 'href="/results/models/demo/"' in page and "v2" in page and "accuracy <strong>0.900</strong>" in page


def test_the_deployed_model_page_has_metrics_and_results_but_no_lineage(stakeholder_client, three, operator):
    ModelVersion.objects.filter(pk=three[1].pk).update(params={"secret_param": "TOPSECRET-42"})
    page = text(stakeholder_client.get("/results/models/demo/")).split('<main id="content">')[1]
    assert "demo <small>v2</small>" in page and "0.9000" in page and "Confusion matrix" in page
    for absent in ("TOPSECRET-42", "/runs/", "first release", "better", "Deploy", "<button", "olivia", "Lineage"):
        assert absent not in page, absent


def test_a_model_with_nothing_deployed_has_no_results_page(stakeholder_client, model_demo):
    train_version()
    assert stakeholder_client.get("/results/models/demo/").status_code == 404
    assert "No model is in production yet" in text(stakeholder_client.get("/results/"))


def test_stakeholders_cannot_open_the_models_pages(stakeholder_client, three):
    for url in ("/models/", "/models/demo/", "/models/demo/versions/1/", "/models/demo/versions/1/deploy/"):
        assert stakeholder_client.get(url).status_code == 403, url


def test_a_retry_of_a_retrain_run_keeps_its_rule(operator_client, three, operator):
    run, ready = engine.start_run("t_model_demo", {"accuracy": 0.99, "fail_after_register": True}, user=operator)
    Promotion.objects.create(run=run, model=three[0].model, rule="at_least", metric="accuracy", requested_by=operator)
    engine.run_inline(run, ready)
    assert Promotion.objects.get(run=run).message == "not deployed: the run failed"
    response = operator_client.post(f"/runs/{run.pk}/rerun/")
    new = Run.objects.order_by("-id").first()
    assert response["Location"] == f"/runs/{new.pk}/"
    carried = Promotion.objects.get(run=new)
    assert (carried.rule, carried.metric, carried.verdict, carried.requested_by) == ("at_least", "accuracy", "pending", operator)


def test_the_confirmation_says_up_front_when_a_version_cannot_go_live(operator_client, three, operator):
    page = text(operator_client.get("/models/demo/versions/2/deploy/"))
    assert "demo v2 is already live" in page and 'name="reason"' not in page
    run = engine.run_inline(*engine.start_run("t_model_demo", {"fail_after_register": True}))
    number = ModelVersion.objects.get(run=run).version
    page = text(operator_client.get(f"/models/demo/versions/{number}/deploy/"))
    assert "did not succeed" in page and 'name="reason"' not in page
    response = operator_client.post(f"/models/demo/versions/{number}/deploy/", {"reason": "anyway"})
    assert response.status_code == 422 and "did not succeed" in text(response)
    assert RegisteredModel.objects.get(name="demo").live.version.version == 2
