"""The pipelines the test suite runs against (tests/settings.py points PIPELINES_PACKAGE here).

The shipped examples are loaded from their files in pipelines/, so the suite tests them as
users get them, but nothing else a user adds to pipelines/ — a new or broken module of theirs
never changes what the suite sees.
"""
