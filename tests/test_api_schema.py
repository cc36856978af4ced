"""The API against its own OpenAPI schema (schemathesis): for requests generated from the
schema, valid and not, sent to a real gunicorn, no answer is a 500, and every answer matches
what the schema says (status codes, content type, body), refusals included."""

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis import GenerationMode
from schemathesis.core.parameters import ParameterLocation

from app.api import tokens
from app.api.main import api
from app.mlmodels import deployments
from app.runs import engine
from tests.conftest import make_user, train_version

pytestmark = pytest.mark.worker  # a real web server

schema = schemathesis.openapi.from_dict(api.get_openapi_schema(path_prefix="/api/"))
# Every check but one: a body the schema allows can still be refused with a 422, since a
# run's parameters are checked against its pipeline's declaration (types, bounds, names),
# which one schema for every pipeline cannot spell out.
EXCLUDED = [schemathesis.checks.positive_data_acceptance]
GUNICORN_REQUEST_LINE = 4000
REQUEST_SECONDS = 120


@pytest.fixture
def site(web_server, model_demo):
    """A served site with a deployed model, a finished run and a token with every scope."""
    operator = make_user("fuzz", "operators")
    version = train_version(constant=2)
    deployments.deploy(version, operator, "for the fuzz")
    run = engine.run_inline(*engine.start_run("fanout_demo", {"rows": "5"}))
    secret = tokens.create(operator, "fuzz", scopes=tokens.SCOPES)[1]
    known = {"run_id": run.pk, "name": {"predictions": version.model.name}, "step": "load"}
    return web_server, {"Authorization": f"Bearer {secret}"}, known


def with_known_ids(case, known):
    """The same request on things that exist, so the fuzz reaches past the 404s."""
    tag = (case.operation.tags or [""])[0]
    for name in list(case.path_parameters or {}):
        value = known[name]
        case.path_parameters[name] = value.get(tag, "fanout_demo") if isinstance(value, dict) else value
    return case


def call_and_validate(case, base_url, auth):
    # A generous timeout: a gunicorn worker loads the app (Django, scikit-learn, the pipelines)
    # on its first request, which takes many seconds on a loaded machine.
    response = case.call(base_url=base_url, headers=auth, timeout=REQUEST_SECONDS)
    if response.status_code == 414:
        # gunicorn's own answer to a request line over its limit (4,094 bytes), before the app.
        assert len(response.request.url) > GUNICORN_REQUEST_LINE
        return
    excluded = EXCLUDED
    header = (case.meta.components or {}).get(ParameterLocation.HEADER) if case.meta else None
    if header is not None and header.mode == GenerationMode.NEGATIVE:
        # The negation was in the headers, and every request is sent with our own valid
        # Authorization header: the request the server got is not the negative one (a false
        # positive of schemathesis's negative_data_rejection otherwise; its PR #4762).
        excluded = [*EXCLUDED, schemathesis.checks.negative_data_rejection]
    case.validate_response(response, headers=auth, excluded_checks=excluded,
                           transport_kwargs={"base_url": base_url, "headers": auth, "timeout": REQUEST_SECONDS})


@schema.parametrize()
@settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck))
def test_no_request_the_schema_allows_or_not_gets_a_500_or_an_answer_off_the_schema(case, site):
    base_url, auth, known = site
    call_and_validate(case, base_url, auth)
    if case.path_parameters and case.meta.generation.mode == GenerationMode.POSITIVE:
        call_and_validate(with_known_ids(case, known), base_url, auth)
