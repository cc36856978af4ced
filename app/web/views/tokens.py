"""API tokens: each user creates and revokes their own (admins manage everyone's in the admin)."""

import secrets
from datetime import timedelta

from django import forms
from django.contrib import messages
from django.http import Http404
from django.shortcuts import redirect, render
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_http_methods, require_POST

from app.api import tokens
from app.models import ApiToken, RegisteredModel, TokenScope
from app.web.access import any_role

SENT_FORMS = "token_forms_sent"
EXPIRY_DAYS = [("30", "in 30 days"), ("90", "in 90 days"), ("365", "in a year"), ("never", "never")]


class TokenForm(forms.Form):
    name = forms.CharField(
        max_length=100, strip=True, label="Name",
        widget=forms.TextInput(attrs={"placeholder": "e.g. billing service", "size": 30}),
        error_messages={"required": "Give the token a name that says what it is for."},
    )
    scopes = forms.MultipleChoiceField(
        label="May", widget=forms.CheckboxSelectMultiple, initial=[TokenScope.PREDICT],
        error_messages={"required": "Choose at least one thing the token may do."},
    )
    expires = forms.ChoiceField(label="Expires", choices=EXPIRY_DAYS, initial="90")
    # One token per form shown: a reload of the page that showed a new token sends the same
    # form again, and must not create a second token (the first one's secret is gone).
    once = forms.CharField(widget=forms.HiddenInput, required=False)

    def __init__(self, user, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.user = user
        # Only an operator's token may read or change runs: it does what its user may do.
        allowed = tokens.allowed_scopes(user)
        self.fields["scopes"].choices = [(s.value, s.label) for s in TokenScope if s.value in allowed]
        self.fields["once"].initial = secrets.token_urlsafe(16)

    def expires_at(self):
        days = self.cleaned_data["expires"]
        return None if days == "never" else timezone.now() + timedelta(days=int(days))


@never_cache
@require_http_methods(["GET", "POST"])
@any_role
def token_list(request):
    form = TokenForm(request.user, request.POST or None)
    secret = None
    new_scopes = []
    status = 200
    if request.method == "POST":
        if form.is_valid() and _sent_before(request, form.cleaned_data["once"]):
            messages.warning(request, "That form was sent again (a reload?): no second token was made. The token it "
                                      "made is in the list below; its secret was shown once only. If you did not copy "
                                      "it, revoke it and create another.")
            form = TokenForm(request.user)
        elif form.is_valid():
            token, secret = tokens.create(
                request.user, form.cleaned_data["name"], scopes=form.cleaned_data["scopes"], expires_at=form.expires_at()
            )
            form = TokenForm(request.user)
            new_scopes = token.scope_list
        else:
            status = 422
    # The new token is shown in this response only (never stored, never in a redirect or cookie).
    return render(request, "tokens/list.html", {
        "form": form,
        "secret": secret,
        "example": example_call() if secret else None,
        "now": timezone.now(),
        "new_scopes": new_scopes,
        "tokens": ApiToken.objects.filter(user=request.user),
    }, status=status)


def _sent_before(request, once: str) -> bool:
    """Whether this form (its `once` value) already made a token in this session; records it."""
    if not once:
        return False
    sent = request.session.get(SENT_FORMS, [])
    if once in sent:
        return True
    request.session[SENT_FORMS] = (sent + [once])[-20:]
    return False


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
