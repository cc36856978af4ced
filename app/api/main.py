"""The JSON API (django-ninja): pipelines, runs and predictions for other systems, with its
OpenAPI schema at /api/openapi.json and its docs at /api/docs.

Every answer is JSON, refusals included: `{"error": "<one sentence>", "errors": {field: why}}`
with the status that says what kind of refusal it is (400 unreadable body, 401 no valid
token, 403 scope or role missing, 404 no such thing, 405 wrong method, 409 not in a state for
that, 413 body too large, 422 invalid values, 503 the database, disk or queue refused).
"""

import logging

from django.db import DatabaseError
from django.http import Http404
from ninja import NinjaAPI
from ninja.errors import HttpError, ValidationError
from ninja.openapi.docs import Swagger

from app.api import predict, runs, tokens
from app.api.errors import error
from app.api.parsing import BadBody, LimitedParser
from app.ops import operate
from app.runs.paramsets import SetRefused

log = logging.getLogger(__name__)

DESCRIPTION = """
Start and watch runs, list pipelines, and ask deployed models for predictions.

Authenticate with an API token (create one on the **API tokens** page of the dashboard) in the
header `Authorization: Bearer <token>`. A token has scopes, chosen when it is created:
`predict`, `runs:read` and `runs:write`; the runs scopes are for operators' tokens only.
Every change made through the API is in the audit trail with the token's name.

Errors are JSON: `{"error": "what is wrong", "errors": {"field": "what is wrong with it"}}`.
"""

api = NinjaAPI(
    title="django-mlops API",
    version="1",
    description=DESCRIPTION,
    urls_namespace="api",
    parser=LimitedParser(),
    docs=Swagger(settings={"persistAuthorization": False, "tryItOutEnabled": False}),
    docs_url="/docs",
    openapi_url="/openapi.json",
)
api.add_router("/pipelines", runs.pipelines, tags=["pipelines"])
api.add_router("/runs", runs.router, tags=["runs"])
api.add_router("/models", predict.router, tags=["predictions"])


@api.exception_handler(tokens.Refused)
def refused(request, exc):
    response = error(str(exc), exc.status)
    if exc.status == 401:
        response["WWW-Authenticate"] = 'Bearer realm="django-mlops"'
    return response


@api.exception_handler(BadBody)
def bad_body(request, exc):
    return error(str(exc), exc.status)


@api.exception_handler(ValidationError)
def invalid(request, exc):
    """pydantic's errors, by field: `params: Input should be a valid dictionary`."""
    errors = {}
    for item in exc.errors:
        if "loc" not in item:  # ninja's own, e.g. {"cursor": "Invalid Cursor"}
            errors.update({str(k): str(v) for k, v in item.items()})
            continue
        source, *parts = [str(p) for p in item["loc"]]
        if source == "body" and len(parts) > 1:
            parts = parts[1:]  # the view's argument name
        errors[".".join(parts) or source] = item.get("msg", "is invalid")
    summary = "; ".join(f"{field}: {message}" for field, message in errors.items())
    return error(f"the request is not valid: {summary}", 422, errors)


@api.exception_handler(Http404)
def not_found(request, exc):
    return error(str(exc) or "not found", 404)


@api.exception_handler(HttpError)
def http_error(request, exc):
    if isinstance(exc.__cause__, BadBody):  # ninja's "Cannot parse request body" hides why
        return bad_body(request, exc.__cause__)
    return error(exc.message, exc.status_code)


@api.exception_handler(operate.ActionRefused)
@api.exception_handler(SetRefused)
def action_refused(request, exc):
    return error(str(exc), 409)


@api.exception_handler(DatabaseError)
@api.exception_handler(OSError)
def not_saved(request, exc):
    """The database or the disk refused (gone, full): nothing was changed, try again later."""
    refused_by = "the database" if isinstance(exc, DatabaseError) else "the disk"
    why = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    log.error("%s: %s refused the request (%s)", request.path, refused_by, why)
    return error(f"{refused_by} refused the request ({why}); nothing was changed, try again later", 503)


@api.exception_handler(Exception)
def server_error(request, exc):
    log.exception("%s: the API failed", request.path)
    return error("the server failed to answer; the error is in its log", 500)
