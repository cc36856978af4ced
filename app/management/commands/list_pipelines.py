from django.core.management.base import BaseCommand

from app.pipelines.registry import registry


class Command(BaseCommand):
    help = "List the pipelines found in pipelines/, with their steps and parameters."

    def handle(self, **options):
        for pipe in registry.pipelines().values():
            self.stdout.write(self.style.SUCCESS(pipe.name) + f"  ({len(pipe.steps)} steps) {pipe.description}")
            for spec in pipe.param_specs:
                self.stdout.write(f"    --param {spec.name}=…  {spec.describe()}")
        for name, problems in registry.problems().items():
            for problem in problems:
                self.stderr.write(self.style.ERROR(f"{name}: {problem}"))
        for module, problem in registry.import_errors.items():
            self.stderr.write(self.style.ERROR(f"{module} failed to import ({problem.where}): {problem.error}"))
