"""System checks: a broken pipeline definition fails `manage.py check` with its name."""

from django.core import checks

from app.pipelines.registry import registry


@checks.register()
def pipeline_definitions(app_configs, **kwargs):
    errors = []
    for module, trace in registry.import_errors.items():
        last_line = trace.strip().splitlines()[-1] if trace.strip() else "unknown error"
        errors.append(
            checks.Error(
                f"pipeline module {module!r} failed to import: {last_line}",
                hint="Fix the module; its traceback is shown on the pipelines page.",
                obj=module,
                id="app.E001",
            )
        )
    for name, problems in registry.problems().items():
        for problem in problems:
            errors.append(
                checks.Error(
                    f"pipeline {name!r}: {problem}",
                    hint="The pipeline is not available until this is fixed.",
                    obj=name,
                    id="app.E002",
                )
            )
    return errors
