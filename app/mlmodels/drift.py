"""Input drift of live versions against their training inputs (STUB: helper B fills this in)."""


def compute_all(now=None) -> int:
    return 0


def page(model) -> dict | None:
    """What templates/models/_drift.html shows; None hides the section."""
    return None
