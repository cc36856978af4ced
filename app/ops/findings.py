"""What an alert condition reports, shared by the pipeline conditions (app.ops.alerts) and
the model conditions (app.ops.model_alerts), which alerts.CONDITIONS registers: a module of
its own so that neither imports the other for it."""

from dataclasses import dataclass


@dataclass
class Finding:
    """What to say about one subject a condition holds for: the incident's title, a line of
    detail (the last error, the worst feature …) and the page to look at."""

    summary: str
    detail: str = ""
    link: str = ""


def duration(minutes: int) -> str:
    """A rule's minutes as people say them: 10 min, 1 h 30 min, 6 h, 2 d."""
    if minutes >= 1440 and minutes % 1440 == 0:
        return f"{minutes // 1440} d"
    if minutes >= 60:
        hours, rest = divmod(minutes, 60)
        return f"{hours} h {rest} min" if rest else f"{hours} h"
    return f"{minutes} min"
