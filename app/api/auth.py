"""How the API knows who calls: an API token with the scope the endpoint needs (app.api.tokens)."""

from ninja.security import HttpBearer

from app.api import tokens


class ApiToken(HttpBearer):
    """`Authorization: Bearer <token>`; the token must hold `scope`. `request.auth` is then
    the tokens.Caller. The class name is the OpenAPI security scheme's name."""

    def __init__(self, scope: str):
        self.scope = scope
        super().__init__()

    def __call__(self, request):
        # Every refusal is tokens.Refused (401 or 403) with its reason; the API renders it.
        return tokens.check(request.headers.get("Authorization", ""), self.scope)

    def authenticate(self, request, token):  # pragma: no cover — __call__ does it all
        raise NotImplementedError


PREDICT = ApiToken("predict")
RUNS_READ = ApiToken("runs:read")
RUNS_WRITE = ApiToken("runs:write")
