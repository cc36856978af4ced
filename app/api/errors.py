"""The one shape of every refusal the API answers: `{"error": "<one sentence>", "errors":
{field: why}}` (the second only when fields are to blame)."""

from django.http import JsonResponse


def error(message: str, status: int, errors: dict | None = None) -> JsonResponse:
    body = {"error": message}
    if errors:
        body["errors"] = errors
    return JsonResponse(body, status=status)
