"""True labels sent back for predictions, and live accuracy (STUB: helper C fills this in)."""


def page(model) -> dict | None:
    """What templates/models/_feedback.html shows; None hides the section."""
    return None
