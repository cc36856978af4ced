"""System checks (app/pipelines/checks.py): broken pipeline definitions are warnings, by name."""

from io import StringIO
from pathlib import Path

import pytest
from django.conf import settings
from django.core import checks
from django.core.management import call_command

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


def test_it_warns_naming_the_module_its_file_and_line_and_still_passes(broken_pipelines):
    out, err = StringIO(), StringIO()

    call_command("check", stdout=out, stderr=err)  # warnings: the command does not fail

    text = out.getvalue() + err.getvalue()
    assert (
        f"{BROKEN}.bad_import: (app.W001) pipeline module '{BROKEN}.bad_import' failed to import "
        "(tests/fixtures/broken_pipelines/bad_import.py:3): ModuleNotFoundError: "
        "No module named 'a_library_that_is_not_installed'"
    ) in text
    assert "System check identified 2 issues" in text


def test_it_warns_naming_the_pipeline_and_the_steps_of_a_cycle(broken_pipelines):
    out = StringIO()

    call_command("check", stdout=out, stderr=out)

    assert "t_cyclic: (app.W002) pipeline 't_cyclic': its steps form a cycle: extract → check → extract" in out.getvalue()


def test_it_reports_one_warning_per_problem_with_stable_ids(broken_pipelines):
    found = pipeline_errors()

    assert sorted((e.id, e.obj) for e in found) == [("app.W001", f"{BROKEN}.bad_import"), ("app.W002", "t_cyclic")]
    assert all(e.level == checks.WARNING for e in found)


def test_it_keeps_the_valid_pipeline_next_to_broken_ones(broken_pipelines):
    assert list(broken_pipelines.pipelines()) == ["t_usable"]
    assert set(broken_pipelines.import_errors) == {f"{BROKEN}.bad_import"}


def test_it_reports_a_package_that_cannot_be_imported():
    try:
        registry.discover("tests.fixtures.no_such_package")
        errors = pipeline_errors()
    finally:
        registry.discover(settings.PIPELINES_PACKAGE)

    assert [(e.id, e.obj) for e in errors] == [("app.W001", "tests.fixtures.no_such_package")]
    assert "No module named 'tests.fixtures.no_such_package'" in errors[0].msg


def test_it_finds_the_examples_again_after_a_second_discovery(broken_pipelines):
    broken_pipelines.discover(settings.PIPELINES_PACKAGE)

    assert list(registry.pipelines()) == ["fanout_demo", "flaky_demo", "segment_report", "train_classifier"]
    assert registry.import_errors == {}


def test_it_reports_bounds_on_a_text_parameter_instead_of_crashing():
    out = StringIO()
    try:
        registry.discover("tests.fixtures.text_bounds_pipelines")
        call_command("check", stdout=out, stderr=out)
    finally:
        registry.discover(settings.PIPELINES_PACKAGE)

    assert "(app.W002) pipeline 't_text_bounds': parameter 'label': bounds (ge/le) only apply" in out.getvalue()


def test_a_users_own_module_in_pipelines_does_not_change_what_the_suite_runs(tmp_path):
    """A user adds (even a broken) module to pipelines/: the suite's registry stays the same."""
    added = Path(settings.BASE_DIR) / "pipelines" / f"zz_users_module_{tmp_path.name}.py"
    added.write_text("import a_library_the_user_forgot_to_install  # noqa\n")
    try:
        registry.discover(settings.PIPELINES_PACKAGE)
        assert list(registry.pipelines()) == ["fanout_demo", "flaky_demo", "segment_report", "train_classifier"]
        assert registry.import_errors == {} and pipeline_errors() == []
    finally:
        added.unlink()
        registry.discover(settings.PIPELINES_PACKAGE)
