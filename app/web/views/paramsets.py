"""Parameter sets: list, page, create, edit (a new revision), copy, archive, default, run."""

from django.contrib import messages
from django.http import Http404
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from app.models import ParameterSet, Run
from app.pipelines.registry import ParamError
from app.runs import paramsets
from app.web.access import operator_required
from app.web.forms import CopySetForm, ParameterSetForm, ParamsForm
from app.web.views.pipelines import get_pipeline_or_404
from app.web.views.runs import warn_if_paused


def get_set_or_404(set_id):
    try:
        return ParameterSet.objects.get(pk=set_id)
    except ParameterSet.DoesNotExist:
        raise Http404(f"There is no parameter set #{set_id}.") from None


@require_GET
@operator_required
def set_list(request, name):
    pipe = get_pipeline_or_404(name)
    sets = ParameterSet.objects.filter(pipeline_name=pipe.name)
    rows = [{"set": s, "latest": s.latest, "problems": paramsets.problems(s)} for s in sets]
    return render(request, "paramsets/list.html", {"pipe": pipe, "rows": rows})


@require_http_methods(["GET", "POST"])
@operator_required
def set_create(request, name):
    pipe = get_pipeline_or_404(name)
    form = ParameterSetForm(pipe, request.POST or None, with_name=True)
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        try:
            new = paramsets.create(pipe.name, data["name"], data["params"], request.user, data["note"])
        except ParamError as exc:
            form.add_param_errors(exc)
        except paramsets.SetRefused as exc:
            form.add_error("name", str(exc))
        else:
            messages.success(request, f"Parameter set “{new.name}” created.")
            return redirect(new)
    status = 422 if request.method == "POST" else 200
    return render(request, "paramsets/form.html", {"pipe": pipe, "form": form, "creating": True}, status=status)


@require_GET
@operator_required
def set_detail(request, set_id):
    parameter_set = get_set_or_404(set_id)
    context = {
        "set": parameter_set,
        "latest": parameter_set.latest,
        "problems": paramsets.problems(parameter_set),
        "history": paramsets.history(parameter_set),
        "copy_form": CopySetForm(),
        "runs": Run.objects.filter(parameter_revision__parameter_set=parameter_set).select_related("parameter_revision")[:10],
    }
    return render(request, "paramsets/detail.html", context)


@require_http_methods(["GET", "POST"])
@operator_required
def set_edit(request, set_id):
    parameter_set = get_set_or_404(set_id)
    pipe = get_pipeline_or_404(parameter_set.pipeline_name)
    initial = ParamsForm.initial_from(parameter_set.latest.values)
    form = ParameterSetForm(pipe, request.POST or None, initial=initial)
    if request.method == "POST" and form.is_valid():
        try:
            revision = paramsets.save_revision(parameter_set, form.cleaned_data["params"], request.user, form.cleaned_data["note"])
        except ParamError as exc:
            form.add_param_errors(exc)
        except paramsets.SetRefused as exc:
            form.add_error(None, str(exc))
        else:
            messages.success(request, f"Saved revision {revision.number} of “{parameter_set.name}”.")
            return redirect(parameter_set)
    status = 422 if request.method == "POST" else 200
    context = {"pipe": pipe, "form": form, "set": parameter_set, "problems": paramsets.problems(parameter_set)}
    return render(request, "paramsets/form.html", context, status=status)


def _refusable(action):
    """Run a paramsets action; a refusal becomes an error message instead of a change."""

    def view(request, set_id):
        parameter_set = get_set_or_404(set_id)
        try:
            message, target = action(request, parameter_set)
        except paramsets.SetRefused as exc:
            messages.error(request, str(exc))
            return redirect(parameter_set)
        messages.success(request, message)
        return redirect(target)

    view.__name__ = action.__name__
    view.__doc__ = action.__doc__
    return require_POST(operator_required(view))


@_refusable
def set_copy(request, parameter_set):
    form = CopySetForm(request.POST)
    if not form.is_valid():
        raise paramsets.SetRefused("Give the copy a name (at most 100 characters).")
    new = paramsets.copy(parameter_set, form.cleaned_data["name"].strip(), request.user)
    return f"Copied “{parameter_set.name}” to “{new.name}”.", new


@_refusable
def set_archive(request, parameter_set):
    paramsets.archive(parameter_set, request.user)
    return f"Archived “{parameter_set.name}”.", parameter_set


@_refusable
def set_restore(request, parameter_set):
    paramsets.archive(parameter_set, request.user, archived=False)
    return f"Restored “{parameter_set.name}”.", parameter_set


@_refusable
def set_make_default(request, parameter_set):
    paramsets.make_default(parameter_set, request.user)
    return f"“{parameter_set.name}” is now the default set of {parameter_set.pipeline_name}.", parameter_set


@_refusable
def set_run(request, parameter_set):
    """Start a run with the set's latest revision, unless it no longer fits the code."""
    run = paramsets.run(parameter_set, request.user)
    revision = run.parameter_revision
    warn_if_paused(request, run.pipeline_name)
    return f"Run #{run.pk} of {run.pipeline_name} started with “{parameter_set.name}” r{revision.number}.", run
