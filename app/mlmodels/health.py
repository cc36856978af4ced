"""Health of a model's versions from the prediction log (STUB: helper A fills this in)."""


def rollup(now=None) -> int:
    return 0


def page(model, span: str | None) -> dict | None:
    """What templates/models/_health.html shows; None hides the section."""
    return None


def home_rows() -> list:
    """Each live model's last-hour health, for the home page."""
    return []
