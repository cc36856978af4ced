"""A step's output as a file: the bytes stored for it, as the artifact store holds them (a
pickle, a Parquet file, an .npy file); of a step with named outputs, one of them (?output=)."""

import io

from django.http import FileResponse, Http404
from django.views.decorators.http import require_GET

from app import artifacts
from app.models import Status
from app.web import previews
from app.web.access import operator_required
from app.web.views.runs import get_run_or_404, get_step_run_or_404


@require_GET
@operator_required
def step_output(request, run_id, step):
    """The stored file of a step's output (or of its named output `?output=`), as an
    attachment, streamed from the artifact store (or from the database, for a small output
    kept there)."""
    run = get_run_or_404(run_id)
    step_run = get_step_run_or_404(run, step)
    named = f"Step {step_run.step_name} of run #{run.pk}"
    output = request.GET.get("output", "")
    path, inline = step_run.output_path, step_run.output_inline
    if artifacts.is_manifest(path):
        try:
            found = previews.part(step_run, output) if output else None
        except artifacts.ArtifactError as exc:
            raise Http404(f"The outputs of step {step_run.step_name} of run #{run.pk} cannot be read: {exc}") from None
        if found is None:
            raise Http404(
                f"{named} has named outputs: download one of them (?output=name); {output!r} is none of them."
            )
        path, inline = found
    elif output:
        raise Http404(f"{named} has no named outputs: its output is one value.")
    if inline is not None:
        stored = io.BytesIO(bytes(inline))
    elif path:
        try:
            stored = artifacts.open_artifact(path)
        except artifacts.MissingArtifact:
            raise Http404(
                f"The output of step {step_run.step_name} of run #{run.pk} is missing from the artifact store "
                f"({path})."
            ) from None
    elif step_run.marked_at and step_run.status == Status.SUCCEEDED:
        raise Http404(f"{named} has no output: it was marked succeeded by hand and never produced one.")
    else:
        raise Http404(f"{named} has no output: it is {step_run.get_status_display()}, and only a step that "
                      "succeeded has one.")
    response = FileResponse(stored, as_attachment=True, filename=previews.download_name(step_run, path, output),
                            content_type="application/octet-stream")
    response["Cache-Control"] = "private, no-store"
    return response
