"""The JSON API: predictions from the deployed version of a model."""

import json

from django.core.exceptions import RequestDataTooBig
from django.http import JsonResponse

from app.mlmodels import serving
from app.web.access import token_required


def error(message, status):
    return JsonResponse({"error": message}, status=status)


@token_required
def predict(request, name):
    """POST {"instances": [[…], …]} → {"model", "version", "predictions"}."""
    if request.method != "POST":
        response = error("use POST with a JSON body", 405)
        response["Allow"] = "POST"
        return response
    try:
        payload = json.loads(request.body)
    except RequestDataTooBig:
        return error("the request body is too large; send fewer instances per request", 413)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        return error(f"the body is not valid JSON: {exc}", 400)
    try:
        return JsonResponse(serving.predict(name, payload))
    except serving.ServingError as exc:
        return error(str(exc), exc.status)
