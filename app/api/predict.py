"""Predictions from the deployed version of a model.

The body is read by hand (app.api.parsing) rather than through a schema, and the answer is
returned as it is: pydantic validation on both sides would add to every prediction's time
(bench/predict_latency.py), and serving checks the instances against the model anyway.
"""

from django.http import JsonResponse
from ninja import Router

from app.api import auth
from app.api.errors import error
from app.api.parsing import request_body
from app.api.schemas import Error, Instances, Prediction
from app.mlmodels import serving

router = Router()
ERRORS = {code: Error for code in (400, 401, 403, 404, 409, 413, 503)}
BODY = {"requestBody": {"required": True, "content": {"application/json": {"schema": Instances.model_json_schema()}}}}


@router.post("/{name}/predict", auth=auth.PREDICT, response={200: Prediction, **ERRORS}, openapi_extra=BODY,
             summary="Predict with the deployed version")
def predict(request, name: str):
    """`{"instances": [[…], …]}` → the live version's predictions, one per instance, the
    version that made them (a canary's share of requests: the candidate) and the request's
    `id`, which feedback names. 404: no such model; 409: nothing deployed; 503: the deployed
    file cannot be loaded. Scope: predict."""
    try:
        return JsonResponse(serving.predict(name, request_body(request), token_name=request.auth.name))
    except serving.ServingError as exc:
        return error(str(exc), exc.status)


# Clients rarely add a trailing slash; those that do are answered the same.
router.post("/{name}/predict/", auth=auth.PREDICT, response={200: Prediction, **ERRORS}, include_in_schema=False,
            url_name="predict_slash")(predict)
