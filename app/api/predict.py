"""Predictions from the deployed version of a model, and the true labels sent back for them.

The body is read by hand (app.api.parsing) rather than through a schema, and the answer is
returned as it is: pydantic validation on both sides would add to every prediction's time
(bench/predict_latency.py), and serving checks the instances against the model anyway. Feedback reads its body by
hand too, so every refusal names what is wrong in the same words (app.mlmodels.feedback).

Feedback needs the predict scope, not a scope of its own: the client that asks for
predictions is the one that later learns the truth, and one token for both is what it
wants. But it changes what operators see of a model (its live accuracy), so like the runs
scopes it is an operator's: a token of a stakeholder is refused (403).
"""

from django.http import JsonResponse
from ninja import Router

from app.api import auth, tokens
from app.api.errors import error
from app.api.parsing import request_body
from app.api.schemas import Error, FeedbackIn, FeedbackTaken, Instances, Prediction
from app.mlmodels import feedback, serving

router = Router()
ERRORS = {code: Error for code in (400, 401, 403, 404, 409, 413, 503)}
BODY = {"requestBody": {"required": True, "content": {"application/json": {"schema": Instances.model_json_schema()}}}}
FEEDBACK_BODY = {"requestBody": {"required": True,
                                 "content": {"application/json": {"schema": FeedbackIn.model_json_schema()}}}}


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


@router.post("/{name}/feedback", auth=auth.PREDICT, response={201: FeedbackTaken, **ERRORS},
             openapi_extra=FEEDBACK_BODY, summary="Send the true labels of a prediction")
def send_feedback(request, name: str):
    """`{"prediction_id": "<the answer's id>", "labels": [one true label per instance]}` (or
    `"label"` for a one-instance prediction) → how the answer compared: `correct` for classes,
    `mean_absolute_error` for numbers. Once per prediction (409 after that, naming when).
    404: no such model, or no such prediction — one made a second ago may not be logged yet:
    retry after the Retry-After seconds; 409: the prediction failed, or its answer was not kept
    (more instances than PREDICTION_SAMPLE_MAX_INSTANCES). Scope: predict, of an operator's token."""
    if not request.auth.user.has_perm(tokens.OPERATE):
        raise tokens.Refused(403, f"the API token “{request.auth.name}” belongs to a user who is not an operator; "
                                  "feedback changes a model's live accuracy, so it takes an operator's token")
    try:
        return JsonResponse(feedback.record(name, request_body(request)), status=201)
    except feedback.FeedbackRefused as exc:
        response = error(str(exc), exc.status)
        if exc.retry_after is not None:
            response["Retry-After"] = str(exc.retry_after)
        return response


router.post("/{name}/feedback/", auth=auth.PREDICT, response={201: FeedbackTaken, **ERRORS}, include_in_schema=False,
            url_name="feedback_slash")(send_feedback)
