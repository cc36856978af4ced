"""Retention: deleting old runs with everything they left (`manage.py prune`, and once a day
on a worker when PRUNE_OLDER_THAN_DAYS is set).

A run is pruned when it finished before the cutoff and is not among the newest `keep_last`
runs of its pipeline. With it go its step runs, attempts, metrics, result tables and
retrain verdict, its outputs and logs in the artifact store, its scratch files, and the
model versions it registered that never went live (row and file). Never pruned:
- a run that is not finished;
- a run that registered a version which is or ever was deployed (the production history
  keeps its lineage: the version's file, its run, that run's logs);
- a run whose outputs a kept run reused (retry from failure points at them).
Also deleted: pipeline snapshots no run or version refers to any more, the signs of life of
workers silent for a day, and the directories of runs that no longer exist (what a prune
that died half-way left behind).

Rows go first, in batches of BATCH runs, each in a transaction of its own, so a busy site
waits at most one batch for its writes; the files of a batch go once its rows are gone. A
run that changed meanwhile (a deploy of one of its versions) is kept: Deployment protects
its version, the batch is rolled back and tried again without it.
"""

import datetime
import logging
import re
import shutil
from dataclasses import asdict, dataclass, field

from django.conf import settings
from django.db import transaction
from django.db.models import ProtectedError
from django.utils import timezone

from app import artifacts
from app.models import (
    FINISHED,
    AuditAction,
    ModelVersion,
    PipelineSnapshot,
    Run,
    StepRun,
    WorkerHeartbeat,
)
from app.runs import audit
from app.runs.worker import FORGET_AFTER

log = logging.getLogger(__name__)

BATCH = 50
AGE = re.compile(r"(\d{1,6})([mhdw])")
UNITS = {"m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_age(text: str) -> datetime.timedelta:
    """'30d' → 30 days; also m(inutes), h(ours), w(eeks). ValueError naming the bad value."""
    match = AGE.fullmatch(str(text).strip())
    if not match:
        raise ValueError(f"{text!r} is not an age: write a whole number and a unit, e.g. 30d, 12h, 2w or 90m")
    return datetime.timedelta(**{UNITS[match[2]]: int(match[1])})


@dataclass
class Report:
    """What a prune deleted (or, with dry_run, would delete), and what it kept on purpose."""

    runs: int = 0
    step_runs: int = 0
    versions: int = 0
    snapshots: int = 0
    heartbeats: int = 0
    files: int = 0
    bytes: int = 0
    orphans: int = 0
    kept_for_models: int = 0
    kept_for_reuse: int = 0
    pruned_ids: list = field(default_factory=list, repr=False)

    def summary(self) -> str:
        return (
            f"{self.runs} run(s) with {self.step_runs} step run(s), {self.versions} never-deployed model version(s), "
            f"{self.snapshots} snapshot(s) and {self.heartbeats} old worker record(s); "
            f"{self.files} file(s), {_size(self.bytes)} in the artifact store"
            + (f" (of which {self.orphans} directories left by an earlier prune)" if self.orphans else "")
            + f". Kept {self.kept_for_models} old run(s) whose model version is or was deployed"
            f" and {self.kept_for_reuse} whose outputs a newer run reuses."
        )


def _size(count: int) -> str:
    for unit in ("bytes", "KB", "MB", "GB"):
        if count < 1024 or unit == "GB":
            return f"{count:.0f} {unit}" if unit == "bytes" else f"{count:.1f} {unit}"
        count /= 1024
    return ""


def prunable(older_than: datetime.timedelta, keep_last: int, now=None) -> tuple[list[int], Report]:
    """The ids of the runs a prune would delete, oldest first, and a report of those kept."""
    now = now or timezone.now()
    cutoff = now - older_than
    old = Run.objects.filter(status__in=FINISHED, created_at__lt=cutoff).exclude(finished_at__gte=cutoff)
    candidates = set(old.values_list("pk", flat=True))
    if keep_last:
        for name in set(old.values_list("pipeline_name", flat=True)):
            newest = Run.objects.filter(pipeline_name=name).order_by("-id").values_list("pk", flat=True)[:keep_last]
            candidates -= set(newest)
    report = Report()
    deployed = set(
        ModelVersion.objects.filter(deployments__isnull=False, run__isnull=False).values_list("run_id", flat=True)
    )
    report.kept_for_models = len(candidates & deployed)
    candidates -= deployed
    # Retry from failure copies output names: a kept run may read files in a candidate's
    # directory. A kept run keeps what it reuses, and so on until nothing changes.
    reuses = list(StepRun.objects.filter(reused_from__isnull=False).values_list("run_id", "reused_from__run_id"))
    while True:
        needed = {source for user, source in reuses if source in candidates and user not in candidates}
        if not needed:
            break
        report.kept_for_reuse += len(needed)
        candidates -= needed
    return sorted(candidates), report


def prune(older_than: datetime.timedelta, keep_last: int, *, by="", dry_run=False, now=None) -> Report:
    """Delete what `prunable` names (nothing with dry_run) and say what it freed; audited
    as done `by` (the command, or the daily prune)."""
    ids, report = prunable(older_than, keep_last, now)
    if dry_run:
        return _estimate(ids, report)
    for start in range(0, len(ids), BATCH):
        _prune_batch(ids[start:start + BATCH], report)
    report.orphans = _sweep_orphans(report)
    used = set(Run.objects.values_list("snapshot_id", flat=True).distinct())
    used |= set(ModelVersion.objects.filter(snapshot__isnull=False).values_list("snapshot_id", flat=True))
    report.snapshots = PipelineSnapshot.objects.exclude(pk__in=used).delete()[0]
    report.heartbeats = WorkerHeartbeat.objects.filter(last_seen__lt=timezone.now() - FORGET_AFTER).delete()[0]
    audit.record(None, AuditAction.PRUNE, username=by, details={
        "older_than_seconds": int(older_than.total_seconds()), "keep_last": keep_last,
        **{key: value for key, value in asdict(report).items() if key != "pruned_ids"},
        "first_run": ids[0] if ids else None, "last_run": ids[-1] if ids else None,
    })
    log.info("prune: %s", report.summary())
    return report


def _prune_batch(ids: list[int], report: Report):
    while ids:
        try:
            with transaction.atomic():
                # Still finished (a run is never unfinished again, but the ids were read
                # outside this transaction) and its versions still never deployed.
                ids = list(Run.objects.filter(pk__in=ids, status__in=FINISHED).values_list("pk", flat=True))
                versions = ModelVersion.objects.filter(run_id__in=ids)
                files = list(versions.values_list("file_path", flat=True))
                deleted_versions = versions.delete()[1].get(ModelVersion._meta.label, 0)
                counts = Run.objects.filter(pk__in=ids).delete()[1]
        except ProtectedError as exc:
            # One of the versions was deployed meanwhile: keep its run, try the rest again.
            keep = {deployment.version.run_id for deployment in exc.protected_objects}
            report.kept_for_models += len(keep & set(ids))
            ids = [pk for pk in ids if pk not in keep]
            if not keep:
                raise
            continue
        report.versions += deleted_versions
        report.runs += counts.get(Run._meta.label, 0)
        report.step_runs += counts.get(StepRun._meta.label, 0)
        report.pruned_ids.extend(ids)
        for pk in ids:
            _delete_run_files(pk, report)
        for name in files:
            found = artifacts.size_of(name)
            artifacts.delete(name)
            if found is not None:
                report.files += 1
                report.bytes += found
        return


def _delete_run_files(pk: int, report: Report):
    for prefix in (f"runs/{int(pk)}", f"logs/{int(pk)}"):
        files, size = artifacts.delete_tree(prefix)
        report.files += files
        report.bytes += size
    if not artifacts.is_local():  # a step's own directory is scratch space on this machine
        shutil.rmtree(settings.ARTIFACTS_SCRATCH_DIR / "runs" / str(int(pk)), ignore_errors=True)


def _sweep_orphans(report: Report) -> int:
    """Delete run directories whose run no longer exists (a prune that died between its
    rows and its files). A run's directory is made only after its run was committed, so a
    directory listed before the runs are read is never a run still being created."""
    listed = {}
    for top in ("runs", "logs"):
        for name in artifacts.storage().listdir(top)[0] if _exists(top) else []:
            if name.isdigit():
                listed.setdefault(int(name), []).append(top)
    existing = set()
    ids = sorted(listed)
    for start in range(0, len(ids), 500):
        existing |= set(Run.objects.filter(pk__in=ids[start:start + 500]).values_list("pk", flat=True))
    orphans = [pk for pk in ids if pk not in existing]
    for pk in orphans:
        _delete_run_files(pk, report)
    return len(orphans)


def _exists(top: str) -> bool:
    if artifacts.is_local():
        return artifacts.resolve(top).is_dir()
    return True  # listing a prefix nothing is under gives nothing


def _estimate(ids: list[int], report: Report) -> Report:
    """What deleting `ids` would free, without deleting anything."""
    report.runs = len(ids)
    for start in range(0, len(ids), 500):
        chunk = ids[start:start + 500]
        report.step_runs += StepRun.objects.filter(run_id__in=chunk).count()
        versions = ModelVersion.objects.filter(run_id__in=chunk)
        report.versions += versions.count()
        for name in versions.values_list("file_path", flat=True):
            found = artifacts.size_of(name)
            if found is not None:
                report.files += 1
                report.bytes += found
    for pk in ids:
        for prefix in (f"runs/{int(pk)}", f"logs/{int(pk)}"):
            for _name, size in artifacts.walk(prefix):
                report.files += 1
                report.bytes += size
    report.pruned_ids = ids
    return report


def scheduled_prune():
    """The daily prune of a worker (app.runs.worker's jobs), when PRUNE_OLDER_THAN_DAYS is set."""
    if settings.PRUNE_OLDER_THAN_DAYS:
        prune(datetime.timedelta(days=settings.PRUNE_OLDER_THAN_DAYS), settings.PRUNE_KEEP_LAST, by="daily prune")
