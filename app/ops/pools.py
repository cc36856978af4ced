"""Concurrency pools as operators see and set them (the Pools page): every pool a loaded
pipeline names or that has a row, its size, what runs in it now and what waits for it, and
the one way to change a pool's size and description, audited. The limit itself is enforced
when a worker claims a step (app.runs.admission)."""

import dataclasses

from django.db import transaction
from django.db.models import Count, Q

from app.models import AuditAction, Pool, Status, StepRun
from app.pipelines.registry import registry, valid_queue
from app.runs import audit
from app.runs.admission import POOL_WAIT


@dataclasses.dataclass
class PoolUse:
    """A pool as the Pools page shows it. `saved`: it has a row (else it has one slot)."""

    name: str
    size: int = 1
    description: str = ""
    saved: bool = False
    running: int = 0
    waiting: int = 0
    # (pipeline, [its steps in the pool]) of the loaded pipelines, by pipeline name.
    used_by: list[tuple[str, list[str]]] = dataclasses.field(default_factory=list)

    @property
    def full(self) -> bool:
        return self.running >= self.size


def users() -> dict[str, list[tuple[str, list[str]]]]:
    """The pools the loaded pipelines name: pool → [(pipeline, [steps])], in name order."""
    found: dict[str, dict[str, list[str]]] = {}
    for pipe in registry.pipelines().values():
        for step in pipe.steps.values():
            if step.pool:
                found.setdefault(step.pool, {}).setdefault(pipe.name, []).append(step.name)
    return {pool: sorted(by_pipeline.items()) for pool, by_pipeline in sorted(found.items())}


def overview() -> list[PoolUse]:
    """Every pool named by a loaded pipeline or with a row, by name: three queries (the rows,
    and the steps running in and waiting for them, counted on the pool index)."""
    named = users()
    pools = {name: PoolUse(name, used_by=used) for name, used in named.items()}
    for row in Pool.objects.all():
        pools[row.name] = PoolUse(row.name, row.size, row.description, True, used_by=named.get(row.name, []))
    # One count per pool and status: running ones, and queued ones told they wait for it.
    waiting_for_a_slot = Q(status=Status.QUEUED, waiting_for__startswith=POOL_WAIT)
    counts = (
        StepRun.objects.filter(pool__in=list(pools)).filter(Q(status=Status.RUNNING) | waiting_for_a_slot)
        .values("pool").order_by()
        .annotate(running=Count("pk", filter=Q(status=Status.RUNNING)), waiting=Count("pk", filter=waiting_for_a_slot))
    )
    for row in counts:
        pools[row["pool"]].running, pools[row["pool"]].waiting = row["running"], row["waiting"]
    return [pools[name] for name in sorted(pools)]


def find(name: str) -> PoolUse | None:
    """The pool `name` if a loaded pipeline names it or it has a row, else None."""
    if not valid_queue(name):
        return None
    return next((pool for pool in overview() if pool.name == name), None)


def save(name: str, size: int, description: str, user) -> bool:
    """Set a pool's size and description (its row is created if it had none); the next
    claims of its steps use them. Audited as AuditAction.ADMIN_CHANGE with what changed (a
    new choice of AuditEvent.action would need a migration). False when nothing changed."""
    with transaction.atomic():
        pool, _created = Pool.objects.select_for_update().get_or_create(name=name, defaults={"size": 1})
        before = {"size": pool.size, "description": pool.description}
        after = {"size": size, "description": description}
        changed = {key: [before[key], after[key]] for key in before if before[key] != after[key]}
        if not changed and not _created:
            return False
        pool.size, pool.description = size, description
        pool.save(update_fields=["size", "description"])
        audit.record(user, AuditAction.ADMIN_CHANGE, pool, details={"field": "pool", "diff": {"changed": changed}})
    return True
