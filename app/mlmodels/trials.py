"""Shadow and canary trials of a candidate version (STUB: helper D fills this in)."""


def promote_due(now=None) -> int:
    return 0


def page(model) -> dict | None:
    """What templates/models/_trial.html shows; None hides the section."""
    return None
