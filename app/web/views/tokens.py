"""API tokens: each user creates and revokes their own (admins manage everyone's in the admin)."""

from django import forms
from django.contrib import messages
from django.http import Http404
from django.shortcuts import redirect, render
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_http_methods, require_POST

from app.models import ApiToken, RegisteredModel
from app.web import tokens
from app.web.access import any_role


class TokenForm(forms.Form):
    name = forms.CharField(
        max_length=100, strip=True, label="Name",
        widget=forms.TextInput(attrs={"placeholder": "e.g. billing service", "size": 30}),
        error_messages={"required": "Give the token a name that says what it is for."},
    )


@never_cache
@require_http_methods(["GET", "POST"])
@any_role
def token_list(request):
    form = TokenForm(request.POST or None)
    secret = None
    status = 200
    if request.method == "POST":
        if form.is_valid():
            _token, secret = tokens.create(request.user, form.cleaned_data["name"])
            form = TokenForm()
        else:
            status = 422
    # The new token is shown in this response only (never stored, never in a redirect or cookie).
    return render(request, "tokens/list.html", {
        "form": form,
        "secret": secret,
        "example": example_call() if secret else None,
        "tokens": ApiToken.objects.filter(user=request.user),
    }, status=status)


def example_call():
    """A deployed model and a body of the right width, for the curl example."""
    live = RegisteredModel.objects.filter(live__isnull=False).select_related("live__version").first()
    if live is None:
        return {"model": "<model>", "instances": "[[5.1, 3.5, 1.4, 0.2]]"}
    width = live.live.version.n_features or 1
    return {"model": live.name, "instances": "[[" + ", ".join(["0.0"] * width) + "]]"}


@require_POST
@any_role
def token_revoke(request, token_id):
    try:
        token = ApiToken.objects.get(pk=token_id, user=request.user)
    except ApiToken.DoesNotExist:
        raise Http404("You have no API token with that id.") from None
    if tokens.revoke(token, request.user):
        messages.success(request, f"Token “{token.name}” is revoked: requests using it now get 401.")
    else:
        messages.error(request, f"Token “{token.name}” was already revoked.")
    return redirect("token_list")
