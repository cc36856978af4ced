"""The JSON API: predictions from the deployed version of a model.

Bodies are parsed with limits checked before Python's own would fail: nesting depth (json
recurses, so 100,000 brackets raise RecursionError), and the digits of a number (int() refuses
over 4,300 digits, and a long integer overflows float). Each limit is a 400 naming it."""

import json
import re

from django.core.exceptions import RequestDataTooBig
from django.http import JsonResponse

from app.mlmodels import serving
from app.web.access import token_required

MAX_DEPTH = 20
MAX_DIGITS = 40
STRING = re.compile(rb'"(?:\\.|[^"\\])*"')
BRACKET = re.compile(rb"[\[\]{}]")


class BodyRefused(ValueError):
    """The body breaks one of the limits; the message names it."""


def error(message, status):
    return JsonResponse({"error": message}, status=status)


def parse_body(raw: bytes):
    """The JSON value of a request body, or BodyRefused / ValueError saying what is wrong."""
    depth = deepest = 0
    for bracket in BRACKET.finditer(STRING.sub(b'""', raw)):
        depth += 1 if bracket[0] in b"[{" else -1
        deepest = max(deepest, depth)
        if deepest > MAX_DEPTH:
            raise BodyRefused(f"the body nests lists and objects more than {MAX_DEPTH} deep")
    return json.loads(raw, parse_int=_number(int), parse_float=_number(float))


def _number(convert):
    def parse(text):
        if len(text) > MAX_DIGITS:
            raise BodyRefused(f"a number in the body has more than {MAX_DIGITS} characters: {text[:20]}…")
        return convert(text)

    return parse


@token_required
def predict(request, name):
    """POST {"instances": [[…], …]} → {"model", "version", "predictions"}."""
    if request.method != "POST":
        response = error("use POST with a JSON body", 405)
        response["Allow"] = "POST"
        return response
    try:
        payload = parse_body(request.body)
    except RequestDataTooBig:
        return error("the request body is too large; send fewer instances per request", 413)
    except BodyRefused as exc:
        return error(str(exc), 400)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        return error(f"the body is not valid JSON: {exc}", 400)
    try:
        return JsonResponse(serving.predict(name, payload))
    except serving.ServingError as exc:
        return error(str(exc), exc.status)
