"""Once per period across all workers: a Lease row per piece of periodic work, whose
`period` a worker must move forward with a conditional UPDATE before doing the work. Of
any number of workers trying for the same period, exactly one UPDATE matches."""

from django.db import IntegrityError, transaction
from django.utils import timezone

from app.models import Lease


def take(name: str, period: int, holder: str) -> bool:
    """Whether `holder` does the work called `name` for `period` (a number that grows with
    time, e.g. seconds since the epoch // the period's length)."""
    if not Lease.objects.filter(name=name).exists():
        try:
            with transaction.atomic():
                Lease.objects.create(name=name)
        except IntegrityError:
            pass  # another worker created it a moment ago
    taken = Lease.objects.filter(name=name, period__lt=period).update(
        period=period, holder=holder, taken_at=timezone.now()
    )
    return taken == 1


def done(name: str):
    """The work `name` ended well: it has no problem to show any more."""
    Lease.objects.filter(name=name).update(done_at=timezone.now(), problem="", problem_since=None)


def failed(name: str, problem: str):
    """The work `name` failed, saying why; shown on Home (since its first failure) until
    it works again."""
    Lease.objects.filter(name=name).update(problem=problem[:500])
    Lease.objects.filter(name=name, problem_since__isnull=True).update(problem_since=timezone.now())
