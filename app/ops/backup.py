"""Backups of a running site: the database and the artifact store together, and restoring
them (`manage.py backup DEST`, `manage.py restore SRC`).

A backup is a directory:
    manifest.json        what is in it; written last, so a backup without it is incomplete
    database.sqlite3     SQLite's online backup (the backup API: a consistent copy while
                         workers write), or
    database.pgdump      pg_dump's custom format (one consistent snapshot)
    artifacts/...        every file of the artifact store, by its name in the store

Consistency: the database is copied first, then the store. Everything the copied database
names is in the store by then and stays there: outputs and model files are written before
the rows that name them and are never rewritten (a new attempt writes a new file), and logs
only grow. Files written after the copy are extra, and the next prune sweeps those of runs
the database does not have. Only a prune deletes files; one that removes a file while the
backup copies it is counted in the manifest as `vanished`.

Restoring writes the database and the files back (into an empty installation, unless told
to replace), migrates it to this version's schema, and queues again the steps that were
queued when the backup was taken (the queue itself is not backed up); steps that were
running are taken back by the watchdog as steps whose worker died. So a backup of a busy
site restores into a site that finishes its runs.
"""

import json
import logging
import os
import shutil
import sqlite3
import subprocess
from dataclasses import asdict, dataclass, field
from pathlib import Path

from django.core.management import call_command
from django.db import DatabaseError, connection, transaction
from django.utils import timezone

from app import artifacts
from app.models import AuditAction, ModelVersion, Run, Status, StepRun
from app.runs import audit, tasks

log = logging.getLogger(__name__)

FORMAT = 1
MANIFEST = "manifest.json"
FILES = "artifacts"
DUMPS = {"sqlite": "database.sqlite3", "postgresql": "database.pgdump"}


class BackupError(Exception):
    """Why a backup or a restore cannot be made, in words for the operator."""


@dataclass
class Manifest:
    format: int = FORMAT
    created_at: str = ""
    database: str = ""
    runs: int = 0
    step_runs: int = 0
    versions: int = 0
    files: int = 0
    bytes: int = 0
    vanished: list = field(default_factory=list)
    store: str = ""

    def summary(self) -> str:
        text = (
            f"{self.runs} run(s) with {self.step_runs} step run(s), {self.versions} model version(s), "
            f"{self.files} file(s) ({self.bytes / 1024 / 1024:.1f} MB) from {self.database}"
        )
        if self.vanished:
            text += f"; {len(self.vanished)} file(s) were deleted (pruned) while being copied"
        return text


def backup(dest: Path, *, by: str = "") -> Manifest:
    """Write a backup of this installation into the new directory `dest`."""
    dest = Path(dest)
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        raise BackupError(f"{dest} already exists and is not an empty directory: give a new one")
    dest.mkdir(parents=True, exist_ok=True, mode=0o700)
    manifest = Manifest(created_at=timezone.now().isoformat(), database=connection.vendor, store=artifacts.where())
    if connection.vendor == "sqlite":
        _backup_sqlite(dest / DUMPS["sqlite"], manifest)
    elif connection.vendor == "postgresql":
        _backup_postgres(dest / DUMPS["postgresql"], manifest)
    else:
        raise BackupError(f"backups of a {connection.vendor} database are not supported (SQLite and PostgreSQL are)")
    _copy_store(dest / FILES, manifest)
    (dest / MANIFEST).write_text(json.dumps(asdict(manifest), indent=2))
    audit.record(None, AuditAction.BACKUP, username=by, details={"to": str(dest), **_counts(manifest)})
    log.info("backup to %s: %s", dest, manifest.summary())
    return manifest


def _counts(manifest: Manifest) -> dict:
    return {key: getattr(manifest, key) for key in ("runs", "step_runs", "versions", "files", "bytes")}


def _count_rows(cursor, manifest: Manifest):
    """The numbers of the copy, read from the copy itself (or its snapshot)."""
    for attribute, model in (("runs", Run), ("step_runs", StepRun), ("versions", ModelVersion)):
        cursor.execute(f"SELECT COUNT(*) FROM {model._meta.db_table}")  # noqa: S608 — our own table names
        setattr(manifest, attribute, cursor.fetchone()[0])


def _backup_sqlite(target: Path, manifest: Manifest):
    source = sqlite3.connect(connection.settings_dict["NAME"], timeout=30)
    copy = sqlite3.connect(target)
    try:
        source.backup(copy)  # one step: a consistent copy, taken under a read lock
        _count_rows(copy.cursor(), manifest)
    finally:
        copy.close()
        source.close()
    os.chmod(target, 0o600)


def _pg_env() -> dict:
    """The environment that points pg_dump and pg_restore at our database."""
    db = connection.settings_dict
    env = dict(os.environ, PGDATABASE=db["NAME"])
    for variable, key in (("PGHOST", "HOST"), ("PGPORT", "PORT"), ("PGUSER", "USER"), ("PGPASSWORD", "PASSWORD")):
        if db.get(key):
            env[variable] = str(db[key])
    return env


def _run(command: list[str], what: str):
    if shutil.which(command[0]) is None:
        raise BackupError(f"{command[0]} is not installed: it is needed to {what} (apt-get install postgresql-client)")
    done = subprocess.run(command, env=_pg_env(), capture_output=True, text=True)
    if done.returncode != 0:
        raise BackupError(f"{command[0]} failed to {what}: {done.stderr.strip()[-500:]}")


def _backup_postgres(target: Path, manifest: Manifest):
    # pg_dump reads the very snapshot our transaction counts the rows in.
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        cursor.execute("SELECT pg_export_snapshot()")
        snapshot = cursor.fetchone()[0]
        _count_rows(cursor, manifest)
        _run(["pg_dump", "--format=custom", "--no-owner", f"--snapshot={snapshot}", f"--file={target}"],
             "dump the database")
    os.chmod(target, 0o600)


def _copy_store(target: Path, manifest: Manifest):
    for name, _size in artifacts.walk():
        path = target / name
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            with artifacts.open_artifact(name) as source, open(path, "wb") as copy:
                shutil.copyfileobj(source, copy, 1024 * 1024)
        except artifacts.MissingArtifact:
            manifest.vanished.append(name)
            path.unlink(missing_ok=True)
            continue
        manifest.files += 1
        manifest.bytes += path.stat().st_size


# --- restore ---------------------------------------------------------------------------------


def read_manifest(src: Path) -> Manifest:
    src = Path(src)
    try:
        data = json.loads((src / MANIFEST).read_text())
    except FileNotFoundError:
        raise BackupError(f"{src} is not a complete backup: it has no {MANIFEST}") from None
    except (OSError, ValueError) as exc:
        raise BackupError(f"{src / MANIFEST} cannot be read: {exc}") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise BackupError(f"{src / MANIFEST} is not a backup of format {FORMAT} (made by another version?)")
    known = Manifest.__dataclass_fields__
    return Manifest(**{key: value for key, value in data.items() if key in known})


def installation_is_empty() -> bool:
    """No runs and no model versions (or no tables at all: a fresh DATA_DIR)."""
    try:
        return not Run.objects.exists() and not ModelVersion.objects.exists()
    except DatabaseError:
        return True


@dataclass
class Restored:
    manifest: Manifest
    runs: int
    versions: int
    files: int
    requeued: int

    def summary(self) -> str:
        return (
            f"{self.runs} run(s), {self.versions} model version(s) and {self.files} file(s) restored from the backup "
            f"of {self.manifest.created_at}; {self.requeued} queued step(s) queued again"
        )


def restore(src: Path, *, replace: bool = False, by: str = "") -> Restored:
    """Bring the backup `src` back into this installation (which must be empty unless
    `replace`): its database, its files; then migrate, and queue the queued steps again."""
    src = Path(src)
    manifest = read_manifest(src)
    if manifest.database != connection.vendor:
        raise BackupError(
            f"the backup is of a {manifest.database} database and this installation uses {connection.vendor}: "
            "restore it with the same kind of database"
        )
    if not replace and not installation_is_empty():
        raise BackupError(
            "this installation already has runs or model versions: restore into an empty one, "
            "or pass --replace to overwrite them (stop the site and every worker first)"
        )
    dump = src / DUMPS[connection.vendor]
    if not dump.is_file():
        raise BackupError(f"{dump} is missing from the backup")
    connection.close()
    if connection.vendor == "sqlite":
        _restore_sqlite(dump)
    else:
        _run(["pg_restore", "--clean", "--if-exists", "--no-owner", "--single-transaction",
              f"--dbname={connection.settings_dict['NAME']}", str(dump)], "restore the database")
    files = _restore_store(src / FILES)
    call_command("migrate", interactive=False, verbosity=0)
    queued = list(StepRun.objects.filter(status=Status.QUEUED).values_list("pk", flat=True))
    tasks.enqueue(queued)
    restored = Restored(manifest, Run.objects.count(), ModelVersion.objects.count(), files, len(queued))
    if (restored.runs, restored.versions) != (manifest.runs, manifest.versions) or files < manifest.files:
        raise BackupError(
            f"the restore is incomplete: {restored.runs}/{manifest.runs} runs, {restored.versions}/{manifest.versions} "
            f"model versions, {files}/{manifest.files} files"
        )
    audit.record(None, AuditAction.RESTORE, username=by, details={
        "from": str(src), "backup_taken_at": manifest.created_at, **_counts(manifest), "requeued": len(queued),
    })
    return restored


def _restore_sqlite(dump: Path):
    name = connection.settings_dict["NAME"]
    Path(name).parent.mkdir(parents=True, exist_ok=True)
    source = sqlite3.connect(dump)
    target = sqlite3.connect(name, timeout=30)
    try:
        source.backup(target)  # replaces the whole database, WAL included
    finally:
        target.close()
        source.close()
    os.chmod(name, 0o600)


def _restore_store(files: Path) -> int:
    count = 0
    if not files.is_dir():
        return count
    for directory, _dirs, names in os.walk(files):
        for file in names:
            path = Path(directory) / file
            name = path.relative_to(files).as_posix()
            artifacts.write_atomically(name, lambda tmp, path=path: shutil.copyfile(path, tmp))
            count += 1
    return count
