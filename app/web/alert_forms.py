"""Forms of the alerts pages: channels, and rules with their condition, what they watch
(a pipeline or a model) and their numbers."""

import re

import apprise
from django import forms
from django.core.validators import validate_email

from app.models import AlertChannel, AlertRule, ChannelKind, Condition, RegisteredModel
from app.ops import model_alerts
from app.pipelines.registry import registry


class AlertChannelForm(forms.ModelForm):
    class Meta:
        model = AlertChannel
        fields = ["name", "kind", "target", "enabled"]
        labels = {"kind": "Kind", "target": "Where", "enabled": "On"}
        widgets = {"target": forms.TextInput(attrs={"placeholder": "ops@example.com, or slack://… / json://host/path", "spellcheck": "false"})}

    def clean_target(self):
        target = self.cleaned_data["target"].strip()
        if self.cleaned_data.get("kind") == ChannelKind.EMAIL:
            addresses = [a.strip() for a in target.split(",") if a.strip()]
            if not addresses:
                raise forms.ValidationError("Give at least one email address.")
            for address in addresses:
                try:
                    validate_email(address)
                except forms.ValidationError:
                    raise forms.ValidationError(f"“{address}” is not an email address.") from None
            return ", ".join(addresses)
        if not apprise.Apprise().add(target):
            raise forms.ValidationError(
                "Not a URL Apprise knows: e.g. slack://TokenA/TokenB/TokenC, msteams://…, discord://…, json://host/path."
            )
        return target


MODEL_CONDITIONS = model_alerts.MODEL_CONDITIONS
WINDOW_MAX_MINUTES = 1440  # errors and latency read the log row by row over the window
MINUTES_MAX = 525_600
DURATION_UNITS = {"": 1, "m": 1, "min": 1, "h": 60, "d": 1440}


class MinutesField(forms.IntegerField):
    """Minutes, typed as a number or with units (90, 6h, 1h30, 2 d), shown back in hours or
    days when they are whole, so "no traffic for 6 hours" is 6h, not 360."""

    widget = forms.TextInput(attrs={"inputmode": "text", "autocomplete": "off", "spellcheck": "false", "size": 10})
    PATTERN = re.compile(r"^(?:(\d+)\s*(d|h|min|m)\s*)?(?:(\d+)\s*(d|h|min|m)?)?$")

    def to_python(self, value):
        text = str(value).strip().lower() if value is not None else ""
        if text and not text.lstrip("-").isdigit():
            match = self.PATTERN.match(text)
            if not match or not any(match.groups()):
                raise forms.ValidationError(self.error_messages["invalid"], code="invalid")
            first, first_unit, second, second_unit = match.groups()
            if second is not None and second_unit is None:
                if first_unit != "h":  # 1h30 is 90 minutes; 2d30 says nothing clear
                    raise forms.ValidationError(self.error_messages["invalid"], code="invalid")
                second_unit = "min"
            total = (int(first) * DURATION_UNITS[first_unit] if first else 0) + (
                int(second) * DURATION_UNITS[second_unit or ""] if second else 0)
            text = str(total)
        return super().to_python(text)

    def prepare_value(self, value):
        if isinstance(value, int) and value >= 60 and value % 60 == 0:
            return f"{value // 1440}d" if value % 1440 == 0 else f"{value // 60}h"
        return value


class AlertRuleForm(forms.ModelForm):
    """A rule: a condition, what it watches (a pipeline, or a model) and its numbers. Which
    fields a condition takes is checked in `clean`, each refusal at the field it is about."""

    class Meta:
        model = AlertRule
        fields = ["name", "condition", "pipeline_name", "model_name", "threshold", "minutes", "remind_hours",
                  "channels", "enabled"]
        labels = {"condition": "When", "pipeline_name": "Pipeline", "model_name": "Model", "threshold": "Threshold",
                  "minutes": "For at least (minutes)", "remind_hours": "Remind every (hours)", "enabled": "On"}
        widgets = {"channels": forms.CheckboxSelectMultiple}

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        names = sorted(registry.pipelines())
        self.fields["pipeline_name"] = forms.ChoiceField(
            choices=[("", "every pipeline")] + [(n, n) for n in names], required=False, label="Pipeline",
            help_text="For failed runs, late schedules and queued steps",
        )
        models = list(RegisteredModel.objects.order_by("name").values_list("name", flat=True))
        if self.instance.model_name and self.instance.model_name not in models:
            models.append(self.instance.model_name)  # a rule keeps its model's name if the model went
        self.fields["model_name"] = forms.ChoiceField(
            choices=[("", "every live model")] + [(n, n) for n in models], required=False, label="Model",
            help_text="For the model conditions",
            error_messages={"invalid_choice": "There is no registered model named “%(value)s”."},
        )
        # Grouped, so each label can be short (an option in a group is indented, and a long
        # one would widen the form past a phone's screen).
        self.fields["condition"].choices = [
            ("Pipelines and workers", [
                (Condition.RUN_FAILED, "a pipeline's latest run failed"),
                (Condition.SCHEDULE_LATE, "a scheduled run did not succeed in time"),
                (Condition.NO_WORKER, "no live worker"),
                (Condition.QUEUED_LONG, "steps waiting in the queue too long"),
            ]),
            ("Live models", [
                (Condition.MODEL_ERRORS, "error rate above a threshold (%)"),
                (Condition.MODEL_LATENCY, "p95 latency above a threshold (ms)"),
                (Condition.MODEL_DRIFT, "input drift (PSI) above a threshold"),
                (Condition.MODEL_SILENT, "no traffic"),
            ]),
        ]
        self.fields["condition"].initial = Condition.RUN_FAILED
        self.fields["threshold"] = forms.FloatField(
            required=False, label="Above (threshold)",
            widget=forms.NumberInput(attrs={"step": "any", "min": "0", "placeholder": "e.g. 5", "size": 10}),
            help_text="Error rate in % · p95 latency in ms · drift: the worst feature's PSI (0.1 a moderate "
                      "shift, 0.25 a large one)",
            error_messages={"invalid": "The threshold is a number, e.g. 5 (%), 500 (ms) or 0.2 (PSI)."},
        )
        self.fields["minutes"] = MinutesField(
            min_value=0, max_value=MINUTES_MAX, initial=10, label="For at least (minutes)",
            help_text="90, 6h, 1h30 or 2d. Error rate, latency: the window judged (at least "
                      f"{model_alerts.MIN_REQUESTS} requests); no traffic, no worker, queued steps: how long; a late "
                      "scheduled run: the grace after its slot",
            error_messages={"invalid": "Give minutes as a number (90) or with a unit (6h, 1h30, 2d).",
                            "max_value": f"At most {MINUTES_MAX} minutes (a year)."},
        )
        if self.instance.threshold is not None and not self.is_bound:
            self.initial["threshold"] = str(self.instance.threshold).removesuffix(".0")  # 5, not 5.0
        self.fields["channels"].queryset = AlertChannel.objects.all()
        self.fields["channels"].error_messages["required"] = "Pick at least one channel to tell (add one first)."
        self.fields["remind_hours"].help_text = "While the incident is open and nobody acknowledged it; 0: never"
        self.fields["enabled"].help_text = "Off: nothing is watched, and its open incidents are closed (no recovery message)"

    def clean(self):
        data = super().clean()
        condition = data.get("condition")
        if condition in MODEL_CONDITIONS:
            self._clean_model_rule(data, condition)
        elif condition:
            if data.get("model_name"):
                self.add_error("model_name", "This condition watches pipelines or workers, not models: leave Model "
                                             "on “every live model”, or pick a condition under Live models.")
            if data.get("threshold") is not None:
                self.add_error("threshold", "Only the model conditions take a threshold: leave it empty.")
        return data

    def _clean_model_rule(self, data, condition):
        if data.get("pipeline_name"):
            self.add_error("pipeline_name", "A model condition watches models, not pipelines: leave Pipeline on "
                                            "“every pipeline” and pick the model.")
        threshold, minutes = data.get("threshold"), data.get("minutes")
        if condition == Condition.MODEL_SILENT:
            if threshold is not None:
                self.add_error("threshold", "No traffic takes no threshold: it holds after the minutes below "
                                            "without a request. Leave it empty.")
        elif threshold is None and "threshold" not in self.errors:
            self.add_error("threshold", {
                Condition.MODEL_ERRORS: "Give the error rate above which it alerts, in % (e.g. 5).",
                Condition.MODEL_LATENCY: "Give the p95 latency above which it alerts, in ms (e.g. 500).",
                Condition.MODEL_DRIFT: "Give the PSI above which it alerts (e.g. 0.2; 0.25 is a large shift).",
            }[condition])
        elif threshold is not None and condition == Condition.MODEL_ERRORS and not 0 <= threshold < 100:
            self.add_error("threshold", f"An error rate is a share from 0 to 100 % (it alerts above it), "
                                        f"not {threshold:g}.")
        elif threshold is not None and condition in (Condition.MODEL_LATENCY, Condition.MODEL_DRIFT) and threshold <= 0:
            what = "A p95 latency threshold is a number of ms above 0" if condition == Condition.MODEL_LATENCY \
                else "A PSI threshold is above 0 (e.g. 0.2)"
            self.add_error("threshold", f"{what}, not {threshold:g}.")
        if minutes is not None and condition != Condition.MODEL_DRIFT:
            if minutes < 1:
                self.add_error("minutes", "Give at least 1 minute: the window the model is judged over.")
            elif condition != Condition.MODEL_SILENT and minutes > WINDOW_MAX_MINUTES:
                self.add_error("minutes", f"At most {WINDOW_MAX_MINUTES} minutes (a day) for the error rate and "
                                          "latency: the window is read from the prediction log at every check.")
