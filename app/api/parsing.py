"""Request bodies of the JSON API, parsed with limits checked before Python's own would fail:
nesting depth (json recurses, so 100,000 brackets raise RecursionError), and the digits of a
number (int() refuses over 4,300 digits, and a long integer overflows float). A body that
breaks a limit, or is not JSON, is a 400 naming what is wrong."""

import json
import re

from django.core.exceptions import RequestDataTooBig
from ninja.parser import Parser

MAX_DEPTH = 20
MAX_DIGITS = 40
STRING = re.compile(rb'"(?:\\.|[^"\\])*"')
BRACKET = re.compile(rb"[\[\]{}]")


class BadBody(ValueError):
    """The body cannot be read; `status` (400 or 413) and the message say why."""

    def __init__(self, message, status=400):
        self.status = status
        super().__init__(message)


def parse_body(raw: bytes):
    """The JSON value of a request body, or BadBody saying what is wrong."""
    depth = deepest = 0
    for bracket in BRACKET.finditer(STRING.sub(b'""', raw)):
        depth += 1 if bracket[0] in b"[{" else -1
        deepest = max(deepest, depth)
        if deepest > MAX_DEPTH:
            raise BadBody(f"the body nests lists and objects more than {MAX_DEPTH} deep")
    try:
        return json.loads(raw, parse_int=_number(int), parse_float=_number(float))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BadBody(f"the body is not valid JSON: {exc}") from None


def request_body(request):
    """The parsed body of `request` (BadBody for one over DATA_UPLOAD_MAX_MEMORY_SIZE: 413)."""
    try:
        raw = request.body
    except RequestDataTooBig:
        raise BadBody("the request body is too large; send less per request", 413) from None
    return parse_body(raw)


def _number(convert):
    def parse(text):
        if len(text) > MAX_DIGITS:
            raise BadBody(f"a number in the body has more than {MAX_DIGITS} characters: {text[:20]}…")
        return convert(text)

    return parse


class LimitedParser(Parser):
    """django-ninja's body parser, with the limits above."""

    def parse_body(self, request):
        body = request_body(request)
        if not isinstance(body, dict):
            raise BadBody(f"the body must be a JSON object, not {type(body).__name__}")
        return body
