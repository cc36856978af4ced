from django.contrib import admin
from django.urls import path

from app.views import actions, audit, dashboard, home, paramsets, pipelines, results, runs

urlpatterns = [
    path("", home.home, name="home"),
    path("login/", home.login, name="login"),
    path("dashboard/", dashboard.dashboard, name="dashboard"),
    path("results/", results.results, name="results"),
    path("results/<str:name>/", results.pipeline_results, name="results_pipeline"),
    path("logout/", home.logout, name="logout"),
    path("pipelines/", pipelines.pipeline_list, name="pipeline_list"),
    path("pipelines/<str:name>/", pipelines.pipeline_detail, name="pipeline_detail"),
    path("pipelines/<str:name>/run/", runs.trigger, name="trigger"),
    path("pipelines/<str:name>/steps/<str:step>/", pipelines.pipeline_step, name="pipeline_step"),
    path("pipelines/<str:name>/parameter-sets/", paramsets.set_list, name="paramset_list"),
    path("pipelines/<str:name>/parameter-sets/new/", paramsets.set_create, name="paramset_create"),
    path("parameter-sets/<int:set_id>/", paramsets.set_detail, name="paramset_detail"),
    path("parameter-sets/<int:set_id>/edit/", paramsets.set_edit, name="paramset_edit"),
    path("parameter-sets/<int:set_id>/copy/", paramsets.set_copy, name="paramset_copy"),
    path("parameter-sets/<int:set_id>/archive/", paramsets.set_archive, name="paramset_archive"),
    path("parameter-sets/<int:set_id>/restore/", paramsets.set_restore, name="paramset_restore"),
    path("parameter-sets/<int:set_id>/default/", paramsets.set_make_default, name="paramset_default"),
    path("parameter-sets/<int:set_id>/run/", paramsets.set_run, name="paramset_run"),
    path("runs/", runs.run_list, name="run_list"),
    path("runs/<int:run_id>/", runs.run_detail, name="run_detail"),
    path("runs/<int:run_id>/steps/<str:step>/", runs.run_step, name="run_step"),
    path("runs/<int:run_id>/cancel/", actions.cancel, name="run_cancel"),
    path("runs/<int:run_id>/retry/", actions.retry_preview, name="run_retry_preview"),
    path("runs/<int:run_id>/retry/start/", actions.retry, name="run_retry"),
    path("runs/<int:run_id>/rerun/", actions.rerun, name="run_rerun"),
    path("audit/", audit.audit_list, name="audit_list"),
    path("admin/", admin.site.urls),
]
