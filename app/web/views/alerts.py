"""Alerts: channels (with a test message), rules, incidents (with acknowledgement)."""

from django.contrib import messages
from django.core.paginator import Paginator
from django.http import Http404
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from app.models import AlertChannel, AlertRule, Delivery, Incident
from app.ops import alerts
from app.web.access import operator_required
from app.web.alert_forms import AlertChannelForm, AlertRuleForm

INCIDENTS_PER_PAGE = 25


def _get(model, pk, what):
    try:
        return model.objects.get(pk=pk)
    except model.DoesNotExist:
        raise Http404(f"There is no {what} #{pk}.") from None


@require_GET
@operator_required
def alert_list(request):
    channels = list(AlertChannel.objects.all())
    last = {}
    for delivery in Delivery.objects.filter(channel__in=channels).order_by("channel_id", "-id").distinct():
        last.setdefault(delivery.channel_id, delivery)
    context = {
        "channels": [(c, last.get(c.pk)) for c in channels],
        "rules": [(rule, alerts.describe(rule), alerts.watches(rule)) for rule in AlertRule.objects.prefetch_related("channels")],
        "open": alerts.open_incidents()[:10],
    }
    return render(request, "alerts/list.html", context)


def _edit(request, form_class, instance, what, template_title):
    form = form_class(request.POST or None, instance=instance)
    if request.method == "POST" and form.is_valid():
        creating = instance is None
        thing = form.save()
        closed = alerts.saved(thing, request.user, "created" if creating else "changed")
        messages.success(request, f"{what.capitalize()} “{thing.name}” {'created' if creating else 'saved'}.")
        if closed:
            messages.warning(request, f"It is off, so nothing is watched: its {closed} open incident(s) are closed, "
                                      "without a recovery message.")
        return redirect("alert_list")
    status = 422 if request.method == "POST" else 200
    return render(request, "alerts/form.html", {"form": form, "title": template_title, "thing": instance}, status=status)


@require_http_methods(["GET", "POST"])
@operator_required
def channel_create(request):
    return _edit(request, AlertChannelForm, None, "channel", "New alert channel")


@require_http_methods(["GET", "POST"])
@operator_required
def channel_edit(request, channel_id):
    channel = _get(AlertChannel, channel_id, "alert channel")
    return _edit(request, AlertChannelForm, channel, "channel", f"Edit channel “{channel.name}”")


@require_http_methods(["GET", "POST"])
@operator_required
def rule_create(request):
    return _edit(request, AlertRuleForm, None, "rule", "New alert rule")


@require_http_methods(["GET", "POST"])
@operator_required
def rule_edit(request, rule_id):
    rule = _get(AlertRule, rule_id, "alert rule")
    return _edit(request, AlertRuleForm, rule, "rule", f"Edit rule “{rule.name}”")


@require_POST
@operator_required
def channel_delete(request, channel_id):
    channel = _get(AlertChannel, channel_id, "alert channel")
    alerts.saved(channel, request.user, "deleted")
    channel.delete()
    messages.success(request, f"Channel “{channel.name}” deleted.")
    return redirect("alert_list")


@require_POST
@operator_required
def rule_delete(request, rule_id):
    rule = _get(AlertRule, rule_id, "alert rule")
    alerts.saved(rule, request.user, "deleted")
    rule.delete()
    messages.success(request, f"Rule “{rule.name}” deleted, with its incidents.")
    return redirect("alert_list")


@require_POST
@operator_required
def channel_test(request, channel_id):
    channel = _get(AlertChannel, channel_id, "alert channel")
    delivery = alerts.test_message(channel, request.user)
    if delivery.state == Delivery.State.SENT:
        messages.success(request, f"A test message went to “{channel.name}”.")
    else:
        messages.error(request, f"The test message to “{channel.name}” was not sent: {delivery.last_error}")
    return redirect("alert_list")


@require_GET
@operator_required
def incident_list(request):
    state = request.GET.get("state", "")
    incidents = Incident.objects.select_related("rule", "acknowledged_by")
    if state == "open":
        incidents = incidents.filter(closed_at__isnull=True)
    elif state == "closed":
        incidents = incidents.filter(closed_at__isnull=False)
    page = Paginator(incidents, INCIDENTS_PER_PAGE).get_page(request.GET.get("page"))
    return render(request, "alerts/incidents.html", {"page": page, "state": state})


@require_GET
@operator_required
def incident_detail(request, incident_id):
    incident = _get(Incident, incident_id, "incident")
    deliveries = incident.deliveries.select_related("channel").order_by("id")
    context = {"incident": incident, "deliveries": deliveries, "rule_text": alerts.describe(incident.rule),
               "detail_label": alerts.detail_label(incident.rule)}
    return render(request, "alerts/incident.html", context)


@require_POST
@operator_required
def incident_ack(request, incident_id):
    incident = _get(Incident, incident_id, "incident")
    if alerts.acknowledge(incident, request.user):
        messages.success(request, "Acknowledged: no more reminders; it still closes with a recovery message.")
    else:
        messages.info(request, "It was acknowledged already, or it is closed.")
    return redirect(incident)
