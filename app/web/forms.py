"""Forms. The parameter form is generated from a pipeline's typed parameter declaration."""

import datetime
import zoneinfo

from django import forms
from django.conf import settings
from django.utils import timezone

from app.models import AuditAction, AuditEvent, ParameterSet, Pool, PromotionRule, Run, Schedule
from app.ops import scheduler
from app.pipelines.registry import ParamError
from app.runs import actions, paramsets
from app.runs import tags as run_tags

BOOL_CHOICES = [("true", "true"), ("false", "false")]


def field_for(spec) -> forms.Field:
    """The form field for one declared parameter; the declaration stays the one judge of
    validity (see ParamsForm.clean), the field only picks the widget and the initial value."""
    initial = None if spec.required else spec.default
    common = {"required": False, "help_text": spec.help, "label": spec.name, "initial": initial}
    if spec.choices is not None:
        choices = [(str(c), str(c)) for c in spec.choices]
        if spec.optional:
            choices = [("", "—")] + choices
        return forms.CharField(widget=forms.Select(choices=choices), **common)
    if spec.type is bool:
        common["initial"] = "" if initial is None else ("true" if initial else "false")
        # An optional flag can be left unset again once chosen.
        choices = BOOL_CHOICES + [("", "not set")] if spec.optional else BOOL_CHOICES
        return forms.CharField(widget=forms.RadioSelect(choices=choices), **common)
    if spec.type is datetime.date:
        attrs = {"type": "date"}
        if spec.ge is not None:
            attrs["min"] = spec.ge.isoformat()
        if spec.le is not None:
            attrs["max"] = spec.le.isoformat()
        return forms.CharField(widget=forms.DateInput(attrs=attrs), **common)
    if spec.type in (int, float):
        attrs = {"step": "1" if spec.type is int else "any"}
        if spec.ge is not None:
            attrs["min"] = spec.ge
        if spec.le is not None:
            attrs["max"] = spec.le
        # A text input keeps what the user typed when it is invalid, so the error can name it.
        return forms.CharField(widget=forms.NumberInput(attrs=attrs), **common)
    # No maxlength attribute: the declaration's own message names the limit (ParamsForm.clean).
    return forms.CharField(strip=False, **common)


def field_with_marks(spec) -> forms.Field:
    field = field_for(spec)
    if spec.required:
        field.widget.attrs["required"] = True  # the browser asks before posting, too
    return field


class ParamsForm(forms.Form):
    """The run form of one pipeline: one field per declared parameter."""

    def __init__(self, pipe, *args, **kwargs):
        self.pipe = pipe
        super().__init__(*args, **kwargs)
        for spec in pipe.param_specs:
            self.fields[spec.name] = field_with_marks(spec)

    @staticmethod
    def initial_from(values: dict) -> dict:
        """Form initial data from stored parameter values (booleans as the radio's choices)."""
        return {k: ("true" if v else "false") if isinstance(v, bool) else v for k, v in values.items()}

    def clean(self):
        raw = {}
        for spec in self.pipe.param_specs:
            value = self.data.get(spec.name)
            if value is None:
                continue  # absent: the declared default applies
            raw[spec.name] = value
        try:
            self.cleaned_data["params"] = self.pipe.parse_params(raw)
        except ParamError as exc:
            self.add_param_errors(exc)
        return self.cleaned_data

    def add_param_errors(self, exc: ParamError):
        """Show each error of the declaration at its field (or above the form)."""
        for name, message in exc.errors.items():
            self.add_error(name if name in self.fields else None, message)


def sentence(exc: Exception) -> str:
    """A domain error's message ("tag 'x!' is not valid: …") as a form error reads."""
    text = str(exc)
    return text[:1].upper() + text[1:] + ("" if text.endswith(".") else ".")


class TagsField(forms.CharField):
    """Tags typed as text, separated by commas or spaces; cleans to the sorted list that
    app.runs.tags checked (its message names a bad tag). A stored list shows as text."""

    def __init__(self, **kwargs):
        kwargs.setdefault("required", False)
        kwargs.setdefault("widget", forms.TextInput(
            attrs={"placeholder": "env=prod, team:ml", "autocomplete": "off", "spellcheck": "false"}))
        super().__init__(**kwargs)

    def prepare_value(self, value):
        return run_tags.as_text(value) if isinstance(value, (list, tuple)) else value

    def clean(self, value):
        text = super().clean(value)
        try:
            return run_tags.parse(text)
        except run_tags.TagError as exc:
            raise forms.ValidationError(sentence(exc)) from None


class RunTagsForm(forms.Form):
    """The run form's options: tags, and whether cached steps run anyway. A form of its own,
    posted as `run-tags`, `run-ignore_cache`: a pipeline may declare a parameter named `tags`,
    which is a field of the parameter form."""

    prefix = "run"
    tags = TagsField(label="Tags", help_text="Optional, separated by commas: e.g. env=prod, team:ml")
    ignore_cache = forms.BooleanField(
        label="Ignore cache", required=False,
        help_text="Run cached steps even when an earlier run's output could be reused",
    )


NOTE_MAX = Run._meta.get_field("note").max_length


class RunNoteForm(forms.Form):
    """An operator's note on a run; empty clears it. The run page writes its field by hand
    (templates/runs/_note.html: the summary that shows it is rendered without a form)."""

    note = forms.CharField(required=False, label="Note")

    def clean_note(self):
        # Browsers count a line break as one character for maxlength and send it as two.
        note = self.cleaned_data["note"].replace("\r\n", "\n")
        if len(note) > NOTE_MAX:
            raise forms.ValidationError(f"A note is at most {NOTE_MAX} characters; this one has {len(note)}.")
        return note


class AuditFilterForm(forms.Form):
    """The audit page's filters. Each one is optional; a bad value in one is reported and
    ignored while the others still apply (see `filter`)."""

    user = forms.ChoiceField(required=False)
    action = forms.ChoiceField(required=False, choices=[("", "any action")] + list(AuditAction.choices))
    pipeline = forms.ChoiceField(required=False)
    since = forms.DateField(required=False, widget=forms.DateInput(attrs={"type": "date"}), label="From")
    until = forms.DateField(required=False, widget=forms.DateInput(attrs={"type": "date"}), label="To")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # Usernames rather than users: an event keeps its username after the user is deleted.
        users = AuditEvent.objects.exclude(username="").order_by("username").values_list("username", flat=True)
        pipelines = (
            AuditEvent.objects.exclude(pipeline_name="").order_by("pipeline_name").values_list("pipeline_name", flat=True)
        )
        self.fields["user"].choices = [("", "anyone")] + [(u, u) for u in users.distinct()]
        self.fields["pipeline"].choices = [("", "all pipelines")] + [(p, p) for p in pipelines.distinct()]

    # Far-off dates would overflow when turned into a time range; no event is that old or new.
    EARLIEST, LATEST = datetime.date(1970, 1, 1), datetime.date(9998, 12, 31)

    def clean(self):
        for name in ("since", "until"):
            day = self.cleaned_data.get(name)
            if day and not self.EARLIEST <= day <= self.LATEST:
                self.add_error(name, f"Enter a date between {self.EARLIEST} and {self.LATEST}.")
        since, until = self.cleaned_data.get("since"), self.cleaned_data.get("until")
        if since and until and since > until:
            self.add_error("until", "“To” is before “From”.")
        return self.cleaned_data

    def filter(self, events):
        """The events matching the valid filters (the caller shows errors of the others).
        Dates are whole days in the site's time zone, both ends included."""
        data = self.cleaned_data
        if data.get("user"):
            events = events.filter(username=data["user"])
        if data.get("action"):
            events = events.filter(action=data["action"])
        if data.get("pipeline"):
            events = events.filter(pipeline_name=data["pipeline"])
        if data.get("since"):
            events = events.filter(at__gte=start_of_day(data["since"]))
        if data.get("until"):
            events = events.filter(at__lt=start_of_day(data["until"] + datetime.timedelta(days=1)))
        return events


def start_of_day(day: datetime.date) -> datetime.datetime:
    """Midnight at the start of `day` in the current time zone (a range on `at`, not `at__date`,
    so the database compares plain timestamps)."""
    return timezone.make_aware(datetime.datetime.combine(day, datetime.time.min))


class ParameterSetForm(ParamsForm):
    """A parameter set's values (checked against the declaration), with a name when the set
    is new and a note for the revision."""

    def __init__(self, pipe, *args, with_name=False, **kwargs):
        super().__init__(pipe, *args, **kwargs)
        if with_name:
            self.fields["name"] = forms.CharField(max_length=100, help_text="Unique within this pipeline")
            self.order_fields(["name"])
        self.fields["note"] = forms.CharField(max_length=200, required=False, help_text="Why this change (optional)")

    def clean_name(self):
        name = self.cleaned_data["name"].strip()
        if not name:
            raise forms.ValidationError("A name is required.")
        if ParameterSet.objects.filter(pipeline_name=self.pipe.name, name=name).exists():
            raise forms.ValidationError(f"{self.pipe.name} already has a parameter set named “{name}”.")
        return name


class CopySetForm(forms.Form):
    name = forms.CharField(
        max_length=100, label="New name", widget=forms.TextInput(attrs={"placeholder": "name of the copy"})
    )


class ReasonForm(forms.Form):
    """Deploy, redeploy and rollback: the reason goes into the production history."""

    reason = forms.CharField(
        max_length=200, strip=True, label="Reason",
        widget=forms.TextInput(attrs={"placeholder": "why, in a few words", "size": 40}),
        error_messages={"required": "Give a short reason: it goes into the production history."},
    )


SHADOW_MINUTES_MAX = 10080


class RetrainForm(forms.Form):
    """Run a model's training pipeline with a parameter set under a promotion rule."""

    parameter_set = forms.ModelChoiceField(
        queryset=ParameterSet.objects.none(), empty_label=None, label="Parameter set",
        error_messages={"invalid_choice": "Pick one of the pipeline's parameter sets."},
    )
    rule = forms.ChoiceField(choices=PromotionRule.choices, label="Then", initial=PromotionRule.AT_LEAST)
    metric = forms.ChoiceField(choices=(), required=False, label="Metric")
    shadow_minutes = forms.IntegerField(
        label="Shadow period (minutes)", min_value=0, max_value=SHADOW_MINUTES_MAX, initial=0, required=False,
        help_text="0: the version goes live at once; else it first answers a copy of live traffic this long",
        error_messages={
            "invalid": "The shadow period is a whole number of minutes (0 to go live at once).",
            "min_value": "The shadow period cannot be negative; 0 goes live at once.",
            "max_value": f"The shadow period is at most {SHADOW_MINUTES_MAX} minutes (a week).",
        },
    )

    def __init__(self, model, metric_names, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.model = model
        self.fields["parameter_set"].queryset = ParameterSet.objects.filter(
            pipeline_name=model.pipeline_name, archived_at__isnull=True
        )
        self.fields["metric"].choices = [(name, name) for name in metric_names]
        self.fields["metric"].initial = model.headline_metric

    def clean_parameter_set(self):
        parameter_set = self.cleaned_data["parameter_set"]
        found = paramsets.problems(parameter_set)
        if found:
            raise forms.ValidationError(
                f"“{parameter_set.name}” does not fit the current code ({paramsets.describe(found)}); edit it first."
            )
        return parameter_set

    def clean(self):
        data = super().clean()
        if data.get("rule") in (PromotionRule.AT_LEAST, PromotionRule.AT_MOST) and not data.get("metric"):
            self.add_error("metric", "Pick the metric the rule compares.")
        return data


def time_zone_choices() -> list[tuple[str, str]]:
    zones = sorted(zoneinfo.available_timezones() - {"localtime", "Factory"})
    return [(zone, zone.replace("_", " ")) for zone in zones]


class ScheduleForm(forms.ModelForm):
    """A pipeline's schedule: the cron expression and time zone checked by the scheduler's
    own rules (app.ops.scheduler), the parameter set and slot parameter against the pipeline."""

    class Meta:
        model = Schedule
        fields = ["name", "cron", "timezone", "parameter_set", "slot_param", "overlap", "tags", "enabled"]
        labels = {
            "cron": "Cron expression", "timezone": "Time zone", "parameter_set": "Parameters",
            "slot_param": "Slot parameter", "overlap": "If the previous scheduled run is still going",
            "enabled": "On",
        }
        widgets = {"cron": forms.TextInput(attrs={"placeholder": "30 2 * * *", "autocomplete": "off", "spellcheck": "false"})}

    tags = TagsField(label="Tags", help_text="The runs it starts get these tags (optional, separated by commas)")

    def __init__(self, pipe, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.pipe = pipe
        self.fields["timezone"] = forms.ChoiceField(
            choices=time_zone_choices(), initial=settings.TIME_ZONE, label="Time zone",
            help_text="The cron expression's times are wall-clock times here; daylight-saving changes are handled",
        )
        sets = ParameterSet.objects.filter(pipeline_name=pipe.name, archived_at__isnull=True)
        self.fields["parameter_set"].queryset = sets
        self.fields["parameter_set"].empty_label = "the code's defaults"
        self.fields["parameter_set"].error_messages["invalid_choice"] = "Pick one of the pipeline's parameter sets."
        receivers = [spec for spec in pipe.param_specs if spec.choices is None and spec.type in (datetime.date, str)]
        self.fields["slot_param"] = forms.ChoiceField(
            choices=[("", "none")] + [(s.name, f"{s.name} ({s.type_name})") for s in receivers], required=False,
            label="Slot parameter",
            help_text="Receives the slot: a date parameter its date, a text parameter its time (ISO 8601)",
            error_messages={"invalid_choice": f"{pipe.name} has no date or text parameter named “%(value)s”."},
        )
        self.fields["cron"].help_text = "minute hour day-of-month month day-of-week, e.g. 30 2 * * 1-5; or @daily, @hourly …"

    def clean_name(self):
        name = self.cleaned_data["name"].strip()
        if not name:
            raise forms.ValidationError("A name is required.")
        taken = Schedule.objects.filter(pipeline_name=self.pipe.name, name=name).exclude(pk=self.instance.pk)
        if taken.exists():
            raise forms.ValidationError(f"{self.pipe.name} already has a schedule named “{name}”.")
        return name

    def clean_cron(self):
        try:
            return scheduler.check_cron(self.cleaned_data["cron"])
        except scheduler.CronError as exc:
            raise forms.ValidationError(sentence(exc)) from None

    def clean(self):
        data = super().clean()
        chosen = data.get("parameter_set")
        if chosen is not None:
            found = paramsets.problems(chosen)
            if found:
                self.add_error("parameter_set", f"“{chosen.name}” does not fit the current code ({paramsets.describe(found)}); edit it first.")
        return data


class BackfillForm(forms.Form):
    """The past days whose slots a backfill runs, in the schedule's time zone."""

    start = forms.DateField(label="From", widget=forms.DateInput(attrs={"type": "date"}),
                            error_messages={"invalid": "Enter the first day as YYYY-MM-DD."})
    end = forms.DateField(label="To", widget=forms.DateInput(attrs={"type": "date"}),
                          help_text="Both days included; today's slots up to now",
                          error_messages={"invalid": "Enter the last day as YYYY-MM-DD."})
    max_parallel = forms.IntegerField(label="At most this many at a time", min_value=1, max_value=20, initial=2)

    def __init__(self, schedule, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.schedule = schedule

    def clean(self):
        data = super().clean()
        if data.get("start") and data.get("end"):
            zone = zoneinfo.ZoneInfo(self.schedule.timezone)
            first = datetime.datetime.combine(data["start"], datetime.time.min, tzinfo=zone)
            last = datetime.datetime.combine(data["end"], datetime.time.max, tzinfo=zone)
            if first > timezone.now():
                raise forms.ValidationError("A backfill runs past slots: end the range before now (the schedule runs what comes next).")
            data["range"] = (first, min(last, timezone.now()))
        return data


class MarkStepForm(forms.Form):
    """Mark a step's outcome by hand: the outcome, the step's state as the page showed it (a
    step that changed since is refused) and the reason, kept in the audit trail."""

    outcome = forms.ChoiceField(choices=[(o.value, o.label) for o in actions.MARK_OUTCOMES], widget=forms.HiddenInput)
    status = forms.CharField(max_length=20, widget=forms.HiddenInput)
    attempt = forms.IntegerField(min_value=0, widget=forms.HiddenInput)
    reason = forms.CharField(
        max_length=500, strip=True, label="Reason",
        widget=forms.Textarea(attrs={"rows": 3, "placeholder": "why the outcome is set by hand, in a sentence"}),
        error_messages={"required": "Give a reason: it is kept in the audit trail, with your name."},
    )

    def clean(self):
        cleaned = super().clean()
        if any(name in self.errors for name in ("outcome", "status", "attempt")):
            self.add_error(None, "The form does not say which state of the step it was shown for: open the page again.")
        return cleaned


class PoolForm(forms.ModelForm):
    """A pool's size and description (the Pools page). The size's rule is the model's
    (Pool.clean), which the admin applies too."""

    # No min_value: the model's one message says the range, whatever is typed.
    size = forms.IntegerField(label="Slots", widget=forms.NumberInput(attrs={"min": Pool.SIZE_MIN, "max": Pool.SIZE_MAX}))

    class Meta:
        model = Pool
        fields = ["size", "description"]
        widgets = {"description": forms.TextInput(attrs={"placeholder": "what it stands for: two GPUs, a licence…"})}
