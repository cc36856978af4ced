"""System checks (app/checks.py): broken pipeline definitions fail `manage.py check` by name."""

from io import StringIO

import pytest
from django.conf import settings
from django.core import checks
from django.core.management import call_command
from django.core.management.base import SystemCheckError

from app.pipelines.registry import registry

BROKEN = "tests.fixtures.broken_pipelines"


@pytest.fixture
def broken_pipelines():
    """The global registry filled from tests/fixtures/broken_pipelines, then the examples again."""
    registry.discover(BROKEN)
    try:
        yield registry
    finally:
        registry.discover(settings.PIPELINES_PACKAGE)


def pipeline_errors():
    return [e for e in checks.run_checks() if e.id.startswith("app.")]


def test_it_passes_on_the_shipped_pipelines():
    out = StringIO()

    call_command("check", stdout=out)

    assert "System check identified no issues" in out.getvalue()
    assert pipeline_errors() == []


def test_it_fails_naming_the_module_that_failed_to_import(broken_pipelines):
    with pytest.raises(SystemCheckError) as caught:
        call_command("check")

    text = str(caught.value)
    assert f"{BROKEN}.bad_import: (app.E001) pipeline module '{BROKEN}.bad_import' failed to import" in text
    assert "No module named 'a_library_that_is_not_installed'" in text


def test_it_fails_naming_the_pipeline_and_the_steps_of_a_cycle(broken_pipelines):
    with pytest.raises(SystemCheckError) as caught:
        call_command("check")

    assert "t_cyclic: (app.E002) pipeline 't_cyclic': its steps form a cycle: extract → check → extract" in str(
        caught.value
    )


def test_it_reports_one_error_per_problem_with_stable_ids(broken_pipelines):
    errors = pipeline_errors()

    assert sorted((e.id, e.obj) for e in errors) == [("app.E001", f"{BROKEN}.bad_import"), ("app.E002", "t_cyclic")]
    assert all(e.level == checks.ERROR for e in errors)


def test_it_keeps_the_valid_pipeline_next_to_broken_ones(broken_pipelines):
    assert list(broken_pipelines.pipelines()) == ["t_usable"]
    assert set(broken_pipelines.import_errors) == {f"{BROKEN}.bad_import"}


def test_it_reports_a_package_that_cannot_be_imported():
    try:
        registry.discover("tests.fixtures.no_such_package")
        errors = pipeline_errors()
    finally:
        registry.discover(settings.PIPELINES_PACKAGE)

    assert [(e.id, e.obj) for e in errors] == [("app.E001", "tests.fixtures.no_such_package")]
    assert "No module named 'tests.fixtures.no_such_package'" in errors[0].msg


def test_it_finds_the_examples_again_after_a_second_discovery(broken_pipelines):
    broken_pipelines.discover(settings.PIPELINES_PACKAGE)

    assert list(registry.pipelines()) == ["fanout_demo", "flaky_demo", "train_classifier"]
    assert registry.import_errors == {}


def test_it_reports_bounds_on_a_text_parameter_instead_of_crashing():
    try:
        registry.discover("tests.fixtures.text_bounds_pipelines")
        with pytest.raises(SystemCheckError) as caught:
            call_command("check")
    finally:
        registry.discover(settings.PIPELINES_PACKAGE)

    assert "(app.E002) pipeline 't_text_bounds': parameter 'label': bounds (ge/le) only apply" in str(caught.value)
