"""System checks: broken pipeline definitions are warnings naming the module or pipeline.

Warnings, not errors: one broken module must not stop `migrate`, the worker, the web or the
CLI, which all run the checks. That pipeline alone is unavailable (the registry leaves it
out, and a run of it is refused with the reason); the pipelines page and Home say so.
"""

from django.core import checks

from app.pipelines.registry import registry


@checks.register()
def pipeline_definitions(app_configs, **kwargs):
    warnings = []
    for module, problem in registry.import_errors.items():
        warnings.append(
            checks.Warning(
                f"pipeline module {module!r} failed to import ({problem.where}): {problem.error}",
                hint="Its pipelines are not available until it is fixed; the others are not affected.",
                obj=module,
                id="app.W001",
            )
        )
    for name, problems in registry.problems().items():
        for problem in problems:
            warnings.append(
                checks.Warning(
                    f"pipeline {name!r}: {problem}",
                    hint="This pipeline is not available until this is fixed; the others are not affected.",
                    obj=name,
                    id="app.W002",
                )
            )
    return warnings
