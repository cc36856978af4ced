from django.apps import AppConfig
from django.conf import settings


class MlopsConfig(AppConfig):
    name = "app"
    verbose_name = "MLOps"

    def ready(self):
        # Imported for what they register: the system checks, the Huey tasks and the
        # receivers of the engine's signals (app.runs.signals).
        from app.mlmodels import retrain  # noqa: F401
        from app.pipelines import checks  # noqa: F401
        from app.pipelines.registry import registry
        from app.runs import tasks  # noqa: F401
        from app.web import security  # noqa: F401

        registry.discover(settings.PIPELINES_PACKAGE)
