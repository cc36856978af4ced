"""Your settings: what each person chooses for themselves (today: the time zone of times)."""

from django import forms
from django.contrib import messages
from django.shortcuts import redirect, render
from django.utils import timezone
from django.views.decorators.http import require_http_methods

from app.models import Preferences
from app.web import times
from app.web.access import any_role
from app.web.forms import time_zone_choices


class PreferencesForm(forms.ModelForm):
    class Meta:
        model = Preferences
        fields = ["time_zone"]
        labels = {"time_zone": "Show times in"}

    def __init__(self, *args, browser_zone: str = "", **kwargs):
        super().__init__(*args, **kwargs)
        detected = f" (now {browser_zone})" if browser_zone else ""
        self.fields["time_zone"] = forms.ChoiceField(
            label="Show times in", required=False,
            choices=[("", f"the time zone of my browser{detected}")] + time_zone_choices(),
            help_text="Every page shows times in this zone, with UTC when you point at one.",
            error_messages={"invalid_choice": "%(value)s is not a time zone this server knows (e.g. Europe/Paris)."},
        )


@require_http_methods(["GET", "POST"])
@any_role
def account(request):
    preferences = Preferences.objects.filter(user=request.user).first() or Preferences(user=request.user)
    browser_zone = times.zone_named(request.COOKIES.get(times.COOKIE, ""))
    form = PreferencesForm(request.POST or None, instance=preferences,
                           browser_zone=browser_zone.key if browser_zone else "")
    if request.method == "POST":
        if not form.is_valid():
            return render(request, "account.html", {"form": form}, status=422)
        form.save()
        times.remember(request.session, preferences.time_zone)
        shown = preferences.time_zone or "the time zone of your browser"
        messages.success(request, f"Times are now shown in {shown}.")
        return redirect("account")
    return render(request, "account.html", {"form": form, "now": timezone.now()})
