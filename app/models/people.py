from django.conf import settings
from django.db import models


class Preferences(models.Model):
    """What a person chose for themselves: the time zone pages show times in ("" for the one
    their browser reports)."""

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="preferences")
    time_zone = models.CharField(max_length=64, blank=True, help_text="IANA name; empty: the browser's zone")

    class Meta:
        verbose_name_plural = "preferences"

    def __str__(self):
        return f"{self.user}: {self.time_zone or 'browser zone'}"
