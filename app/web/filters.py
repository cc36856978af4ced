"""The run list's filters, search and sorting (django-filter): every field optional; a bad
value in one is reported above the table and ignored while the others still apply.

Tags are matched through a subquery on the tag table (its name index), not a join: a run
with several tags would otherwise be listed once per tag when the search's OR joins them."""

import re

import django_filters
from django import forms
from django.contrib.auth import get_user_model
from django.db.models import F, Q

from app.models import RUN_STATUSES, ParameterSet, PipelineSnapshot, Run, RunTag
from app.pipelines.registry import registry
from app.runs import tags as run_tags
from app.web.forms import TagsField

DATE = forms.DateInput(attrs={"type": "date"})
RUN_ID = re.compile(r"^#?(\d{1,12})$")


def _pipeline_choices():
    # Pipelines that ran once stay filterable after their code is removed or broken.
    names = set(registry.pipelines()) | set(PipelineSnapshot.objects.values_list("pipeline_name", flat=True).distinct())
    return [(name, name) for name in sorted(names)]


def _user_choices():
    users = get_user_model().objects.filter(pk__in=Run.objects.filter(triggered_by__isnull=False)
                                            .values("triggered_by").distinct())
    return [(user.get_username(), user.get_username()) for user in users.order_by("username")]


class Ordering(django_filters.OrderingFilter):
    """A chosen column, runs without a value (no duration yet, nobody started it) last either
    way on both databases, then newest first: pages stay stable among equal values."""

    def filter(self, qs, value):
        if not value:
            return qs
        fields = [self.get_ordering_value(param) for param in value]
        return qs.order_by(*[F(f[1:]).desc(nulls_last=True) if f.startswith("-") else F(f).asc(nulls_last=True)
                             for f in fields], "-id")


SORTABLE = {"id": "Run", "pipeline": "Pipeline", "status": "Status", "user": "Started by", "duration": "Duration"}


class TagFilter(django_filters.CharFilter):
    """Tags as the start form takes them (checked by app.runs.tags); runs with every one."""

    field_class = TagsField


def tagged(name: str):
    """The runs with tag `name`, as a subquery."""
    return RunTag.objects.filter(name=name).values("run_id")


class RunFilter(django_filters.FilterSet):
    q = django_filters.CharFilter(method="search", label="Search", widget=forms.TextInput(
        attrs={"type": "search", "placeholder": "run #, tag, note, value, user", "size": 24}))
    tag = TagFilter(method="with_tags", label="Tag", widget=forms.TextInput(
        attrs={"placeholder": "env=prod", "size": 9, "autocomplete": "off", "spellcheck": "false"}))
    pipeline = django_filters.ChoiceFilter(field_name="pipeline_name", choices=_pipeline_choices,
                                           empty_label="all pipelines")
    status = django_filters.ChoiceFilter(choices=[(s.value, s.label) for s in RUN_STATUSES], empty_label="any status")
    user = django_filters.ChoiceFilter(field_name="triggered_by__username", choices=_user_choices,
                                       empty_label="anyone", label="Started by")
    parameter_set = django_filters.ModelChoiceFilter(
        field_name="parameter_revision__parameter_set", label="Parameter set", empty_label="any set",
        queryset=ParameterSet.objects.order_by("pipeline_name", "name"),
    )
    since = django_filters.DateFilter(field_name="created_at", lookup_expr="date__gte", label="From", widget=DATE)
    until = django_filters.DateFilter(field_name="created_at", lookup_expr="date__lte", label="To", widget=DATE)
    o = Ordering(
        fields=(("id", "id"), ("pipeline_name", "pipeline"), ("status", "status"),
                ("triggered_by__username", "user"), ("took", "duration")),
        label="Sort",
    )

    class Meta:
        model = Run
        fields = []

    def search(self, queryset, name, value):
        """A run id (12 or #12), one of its tags (exactly), or text in its note, a parameter
        value or the starting user's name."""
        value = value.strip()
        if not value:
            return queryset
        found = Q(note__icontains=value) | Q(params__icontains=value) | Q(triggered_by__username__icontains=value)
        number = RUN_ID.match(value)
        if number:
            found |= Q(pk=int(number.group(1)))
        try:
            found |= Q(pk__in=tagged(run_tags.normalise(value)))
        except run_tags.TagError:
            pass  # not a tag's spelling (a phrase of a note): the other matches still apply
        return queryset.filter(found)

    def with_tags(self, queryset, name, value):
        """Runs with every tag given (checked and normalised by the field)."""
        for tag in value:
            queryset = queryset.filter(pk__in=tagged(tag))
        return queryset


def runs():
    """The runs the list pages through, with what sorting by duration needs."""
    return Run.objects.select_related("triggered_by").annotate(took=F("finished_at") - F("started_at"))
