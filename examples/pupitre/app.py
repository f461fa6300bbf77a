"""LePupitre's backend on bastion: orchestration only, no SQL (seed 004, workstream 4).

The layout on disk, under one data directory::

    global.db                       workspace profiles (namespace ``pupitre_global``)
    profiles/<workspace>.db         one database per profile (namespace ``pupitre``)
    artifacts/<workspace>/          audio files imported with peer-review packs
    backups/<db name>/              pre-migration backups and verified online backups
    quarantine/<db name>/           corrupt files moved aside by recovery, with report.json
    trash/                          profile files of deleted workspaces (never deleted outright)

Every database is opened the same way (:func:`open_database`): an open-time check of the file,
then bastion's posture (WAL, synchronous=NORMAL, foreign_keys=ON, busy_timeout) read back and
verified, then the namespace's migrations with a verified pre-migration backup. Every
multi-step write is ONE transaction (``db.write``); writes that also touch files compensate:
a file created for rows that never commit is removed.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from bastion.config import BackupConfig, StoreConfig
from bastion.errors import BaselineMismatch, NotFound, StoreCorrupt
from bastion.scheduler import Scheduler
from bastion.store import Database, WriteTx
from bastion.store.backup import BackupResult, create_backup
from bastion.store.migrations import Migrator, Namespace
from bastion.store.recovery import (
    MergeReport,
    RecoveryReport,
    latest_salvage,
    merge_salvage,
    open_check,
    recover,
)
from bastion.vault import Secret, Vault, format_reference
from examples.pupitre import migrations, upkeep
from examples.pupitre.diagnostics import repo as checks
from examples.pupitre.feedback import repo as feedback
from examples.pupitre.pack import repo as pack
from examples.pupitre.settings import repo as settings
from examples.pupitre.talk import repo as talk
from examples.pupitre.workspace import repo as workspace

__all__ = ["ANALYSIS_KEY_NAME", "ImportResult", "Pupitre", "adopt_legacy", "open_database"]

ANALYSIS_KEY_NAME = "ANALYSIS_API_KEY"
_WORKSPACE_ID = re.compile(r"^[a-z0-9][a-z0-9-]{0,39}$")
_COMPANIONS = ("", "-wal", "-shm")
_FOLDERS = ("profiles", "artifacts", "backups", "quarantine", "trash")


def open_database(
    path: Path,
    namespace: Namespace,
    *,
    backups_dir: Path,
    quarantine_dir: Path,
    config: StoreConfig | None = None,
    recover_corrupt: bool = True,
    on_recovered: Callable[[RecoveryReport], None] | None = None,
    vfs: str | None = None,
) -> Database:
    """Check, open, verify posture, migrate. The one way pupitre opens any database.

    A file that fails the open-time check is never used as is: with ``recover_corrupt`` it is
    quarantined with its ``-wal``/``-shm`` and the newest verified backup is put in its place
    (bastion's recovery; the report lands in the quarantine directory), else ``StoreCorrupt``.
    """
    cfg = config or StoreConfig()
    name = path.stem
    check = open_check(path, cfg, backups_dir=backups_dir, db_name=name)
    if not check.ok:
        if not recover_corrupt:
            raise StoreCorrupt(f"{path}: {check.detail}", path=str(path), check=check.kind.value)
        report = recover(
            path,
            backups_dir=backups_dir,
            quarantine_root=quarantine_dir,
            check=check,
            db_name=name,
        )
        if on_recovered is not None:
            on_recovered(report)
    db = Database.open(path, cfg, name=name, vfs=vfs)
    try:
        migrator = Migrator(db, backups_dir=backups_dir, keep=5)
        adopt_legacy(migrator, namespace)
        migrator.migrate([namespace])
    except BaseException:
        db.close()
        raise
    return db


def adopt_legacy(migrator: Migrator, namespace: Namespace) -> str | None:
    """Give a database written by the pre-bastion app (tables, no ``schema_migrations``) the
    history it would have had: find the newest migration whose schema it matches exactly and
    record the migrations up to it (``Migrator.baseline`` checks the schema fingerprint). The
    pending ones then run as for any older database. Returns the id adopted at, if any.

    A schema that matches no prefix raises the ``BaselineMismatch`` of the closest candidate
    (the newest): the file is never migrated on a guess.
    """
    if migrator.status([namespace])[0].applied:
        return None
    if not checks.user_tables(migrator.db):
        return None  # a new, empty database: plain migrate
    closest: BaselineMismatch | None = None
    for migration in reversed(namespace.migrations):
        try:
            migrator.baseline(namespace, migration.id)
        except BaselineMismatch as err:
            closest = closest or err
            continue
        return migration.id
    if closest is None:
        raise ValueError(f"namespace {namespace.name} has no migrations to adopt a database at")
    raise closest


@dataclasses.dataclass(frozen=True, slots=True)
class ImportResult:
    project_id: int
    run_id: int
    review_id: int
    files: tuple[Path, ...]


class Pupitre:
    """One user's data directory: the global database and the active profile's database."""

    def __init__(
        self,
        data_dir: Path,
        config: StoreConfig,
        global_db: Database,
        recoveries: list[RecoveryReport],
        vfs: str | None = None,
    ) -> None:
        self.data_dir = data_dir
        self.config = config
        #: SQLite VFS every database is opened with (None: the default one).
        self.vfs = vfs
        self.global_db = global_db
        #: Recoveries run at open (a corrupt file was quarantined and a backup restored).
        self.recoveries = recoveries
        self._profiles: dict[str, Database] = {}
        self._backups: Scheduler | None = None
        # One Database per file per process: two threads asking for the same profile at once
        # must not open it twice (two writers in one process would contend for the lock).
        self._profiles_lock = threading.Lock()

    @classmethod
    def open(
        cls,
        data_dir: str | os.PathLike[str],
        config: StoreConfig | None = None,
        *,
        vfs: str | None = None,
    ) -> Pupitre:
        """Open (creating if needed) the data directory. ``vfs`` names a registered SQLite
        VFS for every database (an encrypting one, or ``bastion.store.faults.FaultyVFS`` in
        drills)."""
        root = Path(data_dir).absolute()
        for folder in (root, *(root / sub for sub in _FOLDERS)):
            if not folder.exists():
                folder.mkdir(parents=True, mode=0o700)
                # Owner-only (the README's threat model): mkdir's mode is filtered by the
                # umask, so it is set again. An existing folder is left as the user made it.
                folder.chmod(0o700)
        cfg = config or StoreConfig()
        recoveries: list[RecoveryReport] = []
        global_db = _open_in(
            root,
            root / "global.db",
            migrations.global_namespace(),
            config=cfg,
            recoveries=recoveries,
            vfs=vfs,
        )
        return cls(root, cfg, global_db, recoveries, vfs)

    def _open(self, path: Path, namespace: Namespace) -> Database:
        return _open_in(
            self.data_dir,
            path,
            namespace,
            config=self.config,
            recoveries=self.recoveries,
            vfs=self.vfs,
        )

    # --- profiles ------------------------------------------------------------------------

    def profile_path(self, workspace_id: str) -> Path:
        return self.data_dir / "profiles" / f"{workspace_id}.db"

    def profile(self, workspace_id: str | None = None) -> Database:
        """The profile database of ``workspace_id`` (default: the active workspace)."""
        if workspace_id is None:
            current = workspace.active(self.global_db)
            if current is None:
                raise NotFound("no active workspace", hint="Create one with create_workspace().")
            workspace_id = current.id
        with self._profiles_lock:
            db = self._profiles.get(workspace_id)
            if db is None or db.closed:
                if workspace.get(self.global_db, workspace_id) is None:
                    raise NotFound(
                        f"no workspace {workspace_id!r}", entity="workspace", key=workspace_id
                    )
                db = self._open(self.profile_path(workspace_id), migrations.profile_namespace())
                self._profiles[workspace_id] = db
            return db

    def close_profile(self, workspace_id: str) -> None:
        with self._profiles_lock:
            db = self._profiles.pop(workspace_id, None)
        if db is not None:
            db.close()

    def backup_profile(self, workspace_id: str | None = None) -> BackupResult:
        """An online, verified backup (with manifest) of a profile: what recovery restores."""
        db = self.profile(workspace_id)
        return create_backup(db, self.data_dir / "backups" / db.name)

    def start_backups(
        self, rotation: BackupConfig | None = None, *, first_run_in_s: float | None = None
    ) -> Scheduler:
        """Routine backups of every database (global and each workspace's profile) on a
        background thread, on bastion's schedule (:mod:`examples.pupitre.upkeep`): every
        ``rotation.interval_s`` (default: ``[backup]``'s hour), skipped when a database has
        not changed, rotated. The first run waits a minute (``first_run_in_s`` overrides it);
        :meth:`close` stops the thread, after a backup in progress. One at a time."""
        if self._backups is not None:
            raise RuntimeError(f"backups of {self.data_dir} are scheduled already")
        scheduler = upkeep.backup_scheduler(
            self.data_dir,
            lambda: [db for db, _ in self.databases()],
            rotation or BackupConfig(),
            first_run_in_s=first_run_in_s,
        )
        scheduler.start()
        self._backups = scheduler
        return scheduler

    def merge_salvaged(self, workspace_id: str | None = None) -> MergeReport:
        """After a recovery: copy rows the salvaged copy has and the restored backup lacks
        back into the profile (docs/operations.md, "Getting the newer rows back"). Never
        overwrites: a row that clashes is a counted, sampled conflict."""
        db = self.profile(workspace_id)
        salvaged = latest_salvage(self.data_dir / "quarantine" / db.name, db.name)
        if salvaged is None:
            raise NotFound(f"no salvaged copy of {db.name} to merge", entity="salvage")
        return merge_salvage(db, salvaged)

    # --- workspace writes: each one transaction on the global database ---------------------

    def create_workspace(self, workspace_id: str, name: str, *, activate: bool = True) -> None:
        """Create the profile database, then register it (and make it active) in one
        transaction. Compensation: if the registration fails, the new files are removed."""
        if not _WORKSPACE_ID.match(workspace_id):
            raise ValueError(
                f"workspace id {workspace_id!r} must be 1-40 lowercase letters, digits or dashes"
            )
        path = self.profile_path(workspace_id)
        existed = path.exists()
        if not existed:
            self._open(path, migrations.profile_namespace()).close()

        def register(tx: WriteTx) -> None:
            workspace.insert(tx, workspace_id, name, path.name)
            if activate:
                workspace.deactivate_all(tx)
                workspace.activate(tx, workspace_id)

        try:
            self.global_db.write(register)
        except BaseException:
            if not existed:  # files we created for a row that never committed
                _remove_db_files(path)
                shutil.rmtree(self.data_dir / "backups" / path.stem, ignore_errors=True)
            raise

    def switch_workspace(self, workspace_id: str) -> None:
        """Deactivate the current workspace and activate ``workspace_id``, atomically."""

        def switch(tx: WriteTx) -> None:
            workspace.deactivate_all(tx)
            workspace.activate(tx, workspace_id)  # 0 rows -> NotFound -> nothing changed

        self.global_db.write(switch)

    def delete_workspace(self, workspace_id: str) -> None:
        """Remove the workspace; if it was active, activate the fallback in the same
        transaction. Its files move to ``trash/`` only after the commit."""
        self.close_profile(workspace_id)
        path = self.profile_path(workspace_id)
        trash = self.data_dir / "trash" / f"{workspace_id}-{int(time.time() * 1000)}"

        def delete(tx: WriteTx) -> None:
            current = workspace.get(tx, workspace_id)
            workspace.delete(tx, workspace_id)
            if current is not None and current.is_active:
                fallback = workspace.fallback_for(tx, workspace_id)
                if fallback is not None:
                    workspace.activate(tx, fallback)
            tx.on_commit(lambda: _move_db_files(path, trash))

        self.global_db.write(delete)

    # --- profile writes ------------------------------------------------------------------

    def analyze_run(self, run_id: int, summary: str) -> int:
        """Insert feedback and link it to the run, or neither (unknown run -> NotFound)."""

        def analyze(tx: WriteTx) -> int:
            feedback_id = feedback.insert(tx, "run", summary)
            feedback.link_run(tx, run_id, feedback_id)
            return feedback_id

        return self.profile().write(analyze)

    def analyze_attempt(self, attempt_id: int, summary: str) -> int:
        def analyze(tx: WriteTx) -> int:
            feedback_id = feedback.insert(tx, "attempt", summary)
            feedback.link_attempt(tx, attempt_id, feedback_id)
            return feedback_id

        return self.profile().write(analyze)

    def import_peer_review(self, pack_dir: str | os.PathLike[str]) -> ImportResult:
        """Import a peer-review pack: ``review.json`` + the audio it names.

        The audio is copied into ``artifacts/`` and the graph (talk, outline, run, review) is
        written in ONE transaction. The copy happens inside the write unit and registers its
        removal with ``tx.on_rollback``: whatever fails (an insert, the commit, the disk), no
        row and no file of the pack remains.
        """
        source = Path(pack_dir)
        manifest = _read_manifest(source / "review.json")
        db = self.profile()
        target_dir = self.data_dir / "artifacts" / db.name

        def persist(tx: WriteTx) -> ImportResult:
            audio = _copy_durably(source / manifest["audio"], target_dir)
            tx.on_rollback(lambda: audio.unlink(missing_ok=True))
            project_id = talk.create_project(tx, manifest["title"])
            talk.add_outline(tx, project_id, manifest["outline"])
            run_id = talk.add_run(
                tx, project_id, str(audio.relative_to(self.data_dir)), manifest["duration_s"]
            )
            review_id = pack.insert_review(tx, run_id, manifest["reviewer"], manifest["body"])
            return ImportResult(project_id, run_id, review_id, (audio,))

        return db.write(persist)

    # --- secrets: in the vault, a reference in the profile --------------------------------

    def set_analysis_key(self, vault: Vault, value: str | Secret) -> str:
        """Keep the speech-analysis provider's API key in bastion's vault (scope: this
        workspace) and only its reference in the profile settings. Returns the reference."""
        db = self.profile()
        scope = f"pupitre:{db.name}"
        vault.set(ANALYSIS_KEY_NAME, value, scope=scope, actor="pupitre")
        reference = format_reference(scope, ANALYSIS_KEY_NAME)
        db.write(lambda tx: settings.set_value(tx, "analysis.api_key", reference))
        return reference

    def analysis_key(self, vault: Vault) -> Secret | None:
        reference = settings.get(self.profile(), "analysis.api_key")
        return None if reference is None else vault.resolve(reference, actor="pupitre")

    # --- diagnostics ---------------------------------------------------------------------

    def databases(self) -> Iterator[tuple[Database, Namespace]]:
        yield self.global_db, migrations.global_namespace()
        for ws in workspace.list_all(self.global_db):
            yield self.profile(ws.id), migrations.profile_namespace()

    def diagnostics(self) -> dict[str, Any]:
        """Structured, local diagnostics (seed 004 workstream 5): per database its posture,
        schema version, migration state, ``integrity_check`` and ``foreign_key_check``.
        Names, counts and check output only: never row contents."""
        out: dict[str, Any] = {"data_dir": str(self.data_dir), "databases": []}
        for db, ns in self.databases():
            state = Migrator(db).status([ns])[0]
            integrity = checks.integrity_check(db)
            fk = [v.to_dict() for v in checks.foreign_key_check(db)]
            out["databases"].append(
                {
                    "name": db.name,
                    "path": str(db.path),
                    "posture": dataclasses.asdict(db.posture),
                    "schema_version": state.last_applied,
                    "migrations": state.to_dict(),
                    "integrity_check": integrity,
                    "integrity_ok": integrity == ["ok"],
                    "foreign_key_check": fk,
                    "foreign_keys_ok": not fk,
                }
            )
        return out

    def close(self) -> None:
        if self._backups is not None:
            # Before the databases close: a backup in progress finishes first.
            self._backups.stop(timeout=None)
            self._backups = None
        for workspace_id in list(self._profiles):
            self.close_profile(workspace_id)
        self.global_db.close()

    def __enter__(self) -> Pupitre:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# --- files -------------------------------------------------------------------------------


def _open_in(
    root: Path,
    path: Path,
    namespace: Namespace,
    *,
    config: StoreConfig,
    recoveries: list[RecoveryReport],
    vfs: str | None,
) -> Database:
    return open_database(
        path,
        namespace,
        backups_dir=root / "backups" / path.stem,
        quarantine_dir=root / "quarantine" / path.stem,
        config=config,
        on_recovered=recoveries.append,
        vfs=vfs,
    )


def _read_manifest(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as err:
        raise ValueError(f"{path} is missing: a pack folder holds review.json") from err
    except json.JSONDecodeError as err:
        raise ValueError(f"{path} is not valid JSON: {err}") from err
    fields: dict[str, type | tuple[type, ...]] = {
        "title": str,
        "outline": str,
        "audio": str,
        "duration_s": (int, float),
        "reviewer": str,
        "body": str,
    }
    for key, kind in fields.items():
        if not isinstance(data.get(key), kind):
            raise ValueError(f"{path}: field {key!r} is missing or of the wrong type")
    if Path(data["audio"]).name != data["audio"]:
        raise ValueError(f"{path}: 'audio' must be a file name inside the pack folder")
    return dict(data)


def _copy_durably(source: Path, target_dir: Path) -> Path:
    """Copy to a temp name, fsync, rename: the artifact is whole or absent."""
    target_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    final = target_dir / f"{uuid.uuid4().hex[:12]}-{source.name}"
    tmp = final.with_name(f".{final.name}.tmp")
    try:
        with open(source, "rb") as src, open(tmp, "xb") as dst:
            shutil.copyfileobj(src, dst)
            dst.flush()
            os.fsync(dst.fileno())
        os.chmod(tmp, 0o600)
        os.replace(tmp, final)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return final


def _remove_db_files(path: Path) -> None:
    for suffix in _COMPANIONS:
        Path(f"{path}{suffix}").unlink(missing_ok=True)


def _move_db_files(path: Path, trash: Path) -> None:
    trash.mkdir(parents=True, exist_ok=True, mode=0o700)
    for suffix in _COMPANIONS:
        src = Path(f"{path}{suffix}")
        if src.exists():
            os.replace(src, trash / src.name)
