from django.apps import AppConfig
from django.conf import settings


class MlopsConfig(AppConfig):
    name = "app"
    verbose_name = "MLOps"

    def ready(self):
        # Registers the system checks and the Huey tasks.
        from app import checks, tasks  # noqa: F401
        from app.registry import registry

        registry.discover(settings.PIPELINES_PACKAGE)
