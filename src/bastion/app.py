"""Composition root: opens a bastion home and wires its parts together.

``Home`` is what the CLI, the daemon and Python apps hold: the config, the app database
(``bastion.db``) and, as the other parts arrive, the vault, the supervisor and the scheduler.
Nothing below this module knows how the parts are wired; ``vault`` and ``supervisor`` meet
only here, through the supervisor's ``SecretSource`` protocol.
"""

from __future__ import annotations

import dataclasses
import os
import threading
from collections.abc import Collection, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bastion._fs import InsecureDirectoryError, ensure_private_dir
from bastion._home import HOME_SUBDIRS, expects, missing_error, record, refuse_shared
from bastion.config import Config, load_config
from bastion.errors import BastionError, ConfigError, HomeNotFound, StoreIOError
from bastion.runfiles import ensure_token
from bastion.store import Database

if TYPE_CHECKING:
    from bastion._lockfile import LockFile
    from bastion._platform.filewatch import FileWatch
    from bastion.domains.activity import ActivityRepo
    from bastion.domains.events import EventsRepo
    from bastion.domains.logs import LogsRepo
    from bastion.domains.settings import SettingsRepo
    from bastion.maintenance import Maintenance
    from bastion.store.archive import Archiver
    from bastion.store.crypt.key import DatabaseKey
    from bastion.store.migrations import Migrator, Namespace
    from bastion.supervisor import ServiceSpec, Supervisor
    from bastion.vault import Vault

__all__ = [
    "HOME_SUBDIRS",
    "Home",
    "OpenCheckAhead",
    "VaultSecrets",
    "database_key",
    "encryption_status",
]


@dataclasses.dataclass
class Home:
    """An open home. Create with :meth:`open`; close with :meth:`close` (or ``with``)."""

    config: Config
    db: Database
    #: The vault, opened on first use of ``home.vault`` (so ``db status`` works without it).
    _vault: Any = dataclasses.field(default=None, init=False, repr=False)
    #: Scheduled backups, retention and checks, once ``start_maintenance()`` was called.
    _maintenance: Any = dataclasses.field(default=None, init=False, repr=False)
    #: The WAL archiver of bastion.db, once ``start_archiving()`` was called.
    _archiver: Any = dataclasses.field(default=None, init=False, repr=False)
    #: Guards the lazy opening of the vault (the maintenance thread may want it too).
    _open_lock: threading.Lock = dataclasses.field(
        default_factory=threading.Lock, init=False, repr=False
    )
    #: A ``VaultTally`` the vault counts into once opened (the daemon's, for GET /metrics).
    vault_tally: Any = dataclasses.field(default=None, init=False, repr=False)
    #: Set when the open-time check failed and ``store.on_corrupt = "recover"`` ran.
    recovery: Any = None
    #: An app's own migration namespaces in ``bastion.db``, migrated and reported with ``core``.
    app_namespaces: tuple[Namespace, ...] = ()

    @classmethod
    def init(cls, config: Config | None = None, *, precheck: OpenCheckAhead | None = None) -> Home:
        """Create the home (0700) and its subdirectories and database if missing; idempotent.
        ``precheck``: see :meth:`open`."""
        cfg = config or load_config()
        _make_private(cfg.home)
        for sub in HOME_SUBDIRS:
            _make_private(cfg.home / sub)
        # The daemon's bearer token (0600), created once; re-running init keeps it. (With
        # api.token_store = "vault" it is created in the vault by the first `bastion serve`.)
        if cfg.api.token_store == "file":  # noqa: S105 - a setting, not a secret
            ensure_token(cfg.run_dir)
        return cls.open(cfg, precheck=precheck)

    @classmethod
    def open(
        cls,
        config: Config | None = None,
        *,
        create: bool = True,
        migrate: bool = True,
        check: bool = True,
        namespaces: Iterable[Namespace] = (),
        for_reading: bool = False,
        precheck: OpenCheckAhead | None = None,
    ) -> Home:
        """Open the home; with ``migrate`` (the default) apply pending migrations of ``core``
        and of the app's ``namespaces`` (pre-migration backup to ``backups/``). A bad
        migration history refuses to open; ``migrate=False`` opens as is (``bastion db
        status``/``db migrate`` use it).

        ``check=False`` skips the open-time integrity check (and so never recovers): for
        one-shot reads such as ``bastion settings get``, which must neither change the file
        nor pay for a check on every call; a damaged page still fails the read loudly
        (``StoreCorrupt``) and the header is always checked.

        ``for_reading=True`` is for read-only commands (``bastion db status``, ``db check``):
        when the disk refuses a normal open (full, read-only media, permissions) the
        database is opened read-only instead, writing nothing (``home.db.readonly`` says
        how it is read; writes raise the refusal). It needs ``migrate=False``.

        A ``bastion.db`` this home has held (see :mod:`bastion._home`) that has gone missing
        is never replaced by an empty one: the open raises ``StoreMissing``.

        ``precheck``: the open-time check, started earlier on a thread
        (:class:`OpenCheckAhead`); its result is waited for and acted on as if the check ran
        here (the database is opened for writing only after it), unless the file was
        replaced since, which is checked again."""
        if for_reading and migrate:
            raise ValueError("for_reading=True needs migrate=False: migrating writes")
        cfg = config or load_config()
        app_namespaces = tuple(namespaces)
        # Before anything else looks at the home: a home this process may not enter is named
        # with its fix here (is_dir would raise a bare PermissionError); one that does not
        # exist yet passes, and init makes it private.
        refuse_shared(cfg.home)
        if not cfg.home.is_dir():
            if not create:
                raise HomeNotFound(
                    f"no bastion home at {cfg.home}",
                    hint="Run `bastion init` to create it. Point at another home with "
                    "`--home DIR` or BASTION_HOME.",
                    path=str(cfg.home),
                )
            if not app_namespaces:
                return cls.init(cfg)
            cls.init(cfg).close()
        key = database_key(cfg, cfg.db_path)
        if check:
            db, recovery = _open_checked(cfg, for_reading=for_reading, key=key, precheck=precheck)
        else:
            missing = missing_error(cfg.home, "bastion", cfg.db_path)
            if missing is not None:
                raise missing
            db = Database.open(cfg.db_path, cfg.store, name="bastion", key=key)
            recovery = None
            record(cfg.home, "bastion", cfg.db_path)
        home = cls(config=cfg, db=db, recovery=recovery, app_namespaces=app_namespaces)
        if migrate:
            try:
                if not home.migrations_current():
                    home.migrator().migrate(home.namespaces())
            except BaseException:
                db.close()
                raise
        return home

    # --- schema and built-in tables (bastion.domains) ---------------------------------

    def namespaces(self) -> list[Namespace]:
        """Migration namespaces of ``bastion.db``: ``core`` (the built-in tables), the
        supervisor's tables, the configuration history, then the app's own given to
        :meth:`open`."""
        from bastion.store.migrations import Namespace

        return [
            *(Namespace.from_package(name, package) for name, package in _builtin_migrations()),
            *self.app_namespaces,
        ]

    def migrations_current(self) -> bool:
        """Whether ``bastion.db``'s migration history is exactly what :meth:`namespaces`
        declare (nothing pending, nothing the engine would refuse), read without the
        migration engine: :meth:`open` runs the ``Migrator`` only when it is not (see
        :mod:`bastion.store.migrate.current`). Read-only."""
        from bastion.store.migrate.current import history_is_current

        return history_is_current(self.db, self.declared_history())

    def declared_history(self) -> list[tuple[str, dict[str, str]]]:
        """Per namespace of :meth:`namespaces`, in order: its name and its migrations' ids
        and checksums, read without declaring them (no migration engine)."""
        from bastion.store.migrate.current import namespace_history, package_history

        return [
            *((name, package_history(package)) for name, package in _builtin_migrations()),
            *((ns.name, namespace_history(ns)) for ns in self.app_namespaces),
        ]

    def migrator(self) -> Migrator:
        """A ``Migrator`` for ``bastion.db``: backups to ``backups/``, events to ``events``."""
        from bastion.domains.events import event_sink
        from bastion.store.migrations import Migrator

        return Migrator(
            self.db,
            backups_dir=self.config.backups_dir,
            keep=self.config.backup.pre_migrate_keep,
            on_event=event_sink,
        )

    @property
    def settings(self) -> SettingsRepo:
        """The ``settings`` table (key -> JSON value) of bastion.db."""
        from bastion.domains.settings import SettingsRepo

        return SettingsRepo(self.db)

    @property
    def logs(self) -> LogsRepo:
        """The ``logs`` table (captured service output, redacted) of bastion.db."""
        from bastion.domains.logs import LogsRepo

        return LogsRepo(self.db)

    @property
    def activity(self) -> ActivityRepo:
        """The ``activity`` table (who did what) of bastion.db."""
        from bastion.domains.activity import ActivityRepo

        return ActivityRepo(self.db)

    @property
    def events(self) -> EventsRepo:
        """The ``events`` table (state transitions, backups, migrations) of bastion.db."""
        from bastion.domains.events import EventsRepo

        return EventsRepo(self.db)

    def backup(self, *, to: Path | None = None, vacuum: bool = False, progress: Any = None) -> Any:
        """An online, verified backup of ``bastion.db`` into ``backups/`` (or ``to``); emits
        "backup.created" or "backup.failed". Returns a ``store.backup.BackupResult``."""
        from bastion.errors import StoreError
        from bastion.store.backup import create_backup

        try:
            # An encrypted database's backup is encrypted with its key (the pages are copied).
            result = create_backup(
                self.db, self.config.backups_dir, to=to, vacuum=vacuum, progress=progress
            )
        except StoreError as err:
            _emit_event(self.db, "backup.failed", self.db.name, {"error": err.to_dict()})
            raise
        _emit_event(self.db, "backup.created", self.db.name, {"path": str(result.path)})
        return result

    def status(self) -> dict[str, Any]:
        """Where everything is and how the database is set up (read back, never assumed)."""
        posture = dataclasses.asdict(self.db.posture)
        sizes = self.db.file_sizes()
        page_count, page_size, freelist = self.db.read(
            lambda tx: (
                tx.scalar("PRAGMA page_count"),
                tx.scalar("PRAGMA page_size"),
                tx.scalar("PRAGMA freelist_count"),
            )
        )
        return {
            "home": str(self.config.home),
            "database": str(self.db.path),
            "posture": posture,
            "size_bytes": sizes["db"],
            "wal_bytes": sizes["wal"],
            "page_count": page_count,
            "page_size": page_size,
            "freelist_count": freelist,
            "sqlite_version": self.db.posture.sqlite_version,
            # None, or how the file is read when the disk refused a normal open.
            "read_only": self.db.readonly,
            # Read back from the file: its first bytes are a salt, not SQLite's header.
            "encryption": encryption_status(self.db),
            "migrations": [state.to_dict() for state in self.migrator().status(self.namespaces())],
        }

    @property
    def vault(self) -> Vault:
        """The secrets vault (``vault.db`` + the configured backend), opened lazily."""
        if self._vault is None:
            from bastion.vault import Vault

            with self._open_lock:
                if self._vault is None:
                    self._vault = Vault.open(self.config)
                    if self.vault_tally is not None:
                        self._vault.attach_tally(self.vault_tally)
        vault: Vault = self._vault
        return vault

    @property
    def vault_opened(self) -> bool:
        """Whether ``home.vault`` was opened (reading this never opens it)."""
        return self._vault is not None

    def start_maintenance(self, *, first_run_in_s: float | None = None) -> Maintenance:
        """Start this home's scheduled upkeep on a background thread and return it: verified,
        rotated backups of ``bastion.db`` and ``vault.db``, retention, integrity checks, on
        the intervals of ``[backup]``, ``[retention]`` and ``[store]`` (what ``bastion
        serve`` runs; see :mod:`bastion.maintenance`). ``stop()`` it, use it as a context
        manager, or let :meth:`close` stop it. One at a time per home. ``first_run_in_s=0``
        runs every job once right away (e.g. a backup at app start), then on its interval."""
        from bastion.maintenance import Maintenance

        if self._maintenance is not None and self._maintenance.running:
            raise RuntimeError(f"maintenance of {self.config.home} is running already")
        self._maintenance = Maintenance(self, first_run_in_s=first_run_in_s).start()
        maintenance: Maintenance = self._maintenance
        return maintenance

    def start_archiving(self) -> Archiver:
        """Archive bastion.db's WAL continuously into ``[archive] dir`` (default
        ``<home>/archive``) on a background thread, for ``bastion db restore --at``: what
        ``bastion serve`` runs unless ``[archive] enabled = false``. Returns the started
        :class:`~bastion.store.archive.Archiver`; :meth:`close` stops it (after a last
        pass). One per home, across processes: while another process (the daemon, another
        instance of the app) archives this home, ``ArchiverBusy`` names it (that process
        archives every process's commits). The first pass takes a base snapshot (a verified
        backup into the archive) when the archive cannot continue an earlier history."""
        from bastion.store.archive import Archiver

        if self._archiver is not None and self._archiver.running:
            raise RuntimeError(f"archiving of {self.config.home} is running already")

        def emit(kind: str, subject: str, data: Any) -> None:
            _emit_event(self.db, kind, subject, dict(data))

        self._archiver = Archiver(
            self.db, self.config.archive_dir, self.config.archive, on_event=emit
        ).start()
        archiver: Archiver = self._archiver
        return archiver

    @property
    def archiver(self) -> Archiver | None:
        """The running WAL archiver of bastion.db, or None."""
        archiver: Archiver | None = self._archiver
        return archiver

    def supervisor(
        self, specs: Iterable[ServiceSpec] | None = None, *, owner: LockFile | None = None
    ) -> Supervisor:
        """A ``Supervisor`` for the services in ``services/*.toml`` (or ``specs``), fed
        secrets by this home's vault. Every spec file is validated first: one bad file
        raises, naming the file, key and fix, rather than running a partial set (the daemon
        passes the valid ``specs`` and reports the others through its ``ServiceCatalog``).
        Open it with ``await sup.open()`` on the event loop that will run it; ``owner`` is
        the supervisor lock when the caller took it already (``supervisor.ownership.take``)."""
        from bastion.supervisor import Supervisor, load_specs

        cfg = self.config
        return Supervisor(
            self.db,
            load_specs(cfg.services_dir) if specs is None else specs,
            secrets=VaultSecrets(self),
            config=cfg.supervisor,
            backups_dir=cfg.backups_dir,
            owner=owner,
        )

    def close(self) -> None:
        """Stop the maintenance thread (after its running job) and the archiver (after a last
        pass), close the vault (if it was opened) and bastion.db; the home can be opened
        again."""
        if self._maintenance is not None:
            self._maintenance.stop()
            self._maintenance = None
        if self._archiver is not None:
            # After the jobs (their writes get archived), before the database closes.
            self._archiver.stop()
            self._archiver = None
        if self._vault is not None:
            self._vault.close()
            self._vault = None
        self.db.close()

    def __enter__(self) -> Home:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _builtin_migrations() -> list[tuple[str, str]]:
    """bastion.db's own namespaces, in migration order: each one's name and the package of
    its SQL files (what ``core_namespace()`` and its siblings declare)."""
    from bastion.domains import CORE_MIGRATIONS, CORE_NAMESPACE
    from bastion.domains.confighistory import CONFIG_HISTORY_MIGRATIONS, CONFIG_HISTORY_NAMESPACE
    from bastion.supervisor.migrations import SUPERVISOR_MIGRATIONS, SUPERVISOR_NAMESPACE

    return [
        (CORE_NAMESPACE, CORE_MIGRATIONS),
        (SUPERVISOR_NAMESPACE, SUPERVISOR_MIGRATIONS),
        (CONFIG_HISTORY_NAMESPACE, CONFIG_HISTORY_MIGRATIONS),
    ]


def database_key(cfg: Config, path: Path) -> DatabaseKey | None:
    """The key ``path`` is opened with (see :func:`bastion.vault.dbkey.database_key`)."""
    if cfg.store.encryption != "required":
        return None
    from bastion.vault.dbkey import database_key as key_of

    return key_of(cfg, path)


def encryption_status(db: Database) -> dict[str, Any] | None:
    """What ``db status`` says about encryption (never the key): None for a plaintext
    database, else the cipher and the key's fingerprint."""
    if not db.encrypted:
        return None
    from bastion.store.crypt.cipher import ALGORITHM

    return {"cipher": ALGORITHM, "key_id": db.key_id}


class OpenCheckAhead:
    """The open-time check of ``bastion.db`` (read-only: it writes nothing), started on a
    thread now, for a later :meth:`Home.open` to act on.

    ``bastion serve`` starts it before importing its server stack (FastAPI, uvicorn, the
    routes: a few hundred ms that never touch the database), so SQLite checks the file on
    the other core meanwhile (apsw lets go of the GIL while SQLite runs) instead of after.
    Nothing writes to the file before the result is known: the database is opened only
    then, and a damaged file is refused or recovered exactly as by a check at the open.
    An encrypted home (``store.encryption = "required"``) is checked at the open instead:
    its key may have to be asked for, which is not for a thread to do.

    The thread has a child interpreter run the check (``bastion.store.open_check_process``:
    a check on a thread of the daemon slowed its imports, one in another process does not)
    and takes its answer when the file is sound; anything else is checked again here.
    """

    def __init__(self, cfg: Config) -> None:
        self.path = cfg.db_path
        self._cfg = cfg
        self._identity = _identity(cfg.db_path)
        self._outcome: tuple[Any, BaseException | None] = (None, None)
        #: Where the check ran: "child" (a sound file, checked by a child interpreter: see
        #: bastion.store.open_check_process), "thread" (in this process), or None (not run).
        self.ran_in: str | None = None
        self._thread = threading.Thread(target=self._run, name="bastion-open-check", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        if self._cfg.store.encryption == "required":
            return  # result() says None: the open checks, with the key
        try:
            check = _check_in_child(self._cfg)
            if check is not None:
                self.ran_in = "child"
            else:
                check = _check_now(self._cfg, None)
                self.ran_in = "thread"
            self._outcome = (check, None)
        except BaseException as err:  # re-raised in the caller's thread by result()
            self._outcome = (None, err)

    def result(self, cfg: Config) -> Any:
        """The check's ``OpenCheck`` once done; None when it does not stand for ``cfg``'s
        file as it is now (another path, or the file was replaced since: check again)."""
        self._thread.join()
        check, error = self._outcome
        if error is not None:
            raise error
        if check is None or cfg.db_path != self.path or _identity(self.path) != self._identity:
            return None
        return check


def _identity(path: Path) -> tuple[int, int] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return st.st_dev, st.st_ino


def _check_in_child(cfg: Config) -> Any:
    """The check by a child interpreter when it found the file sound, else None (the caller
    checks in this process, whose typed result is the one acted on)."""
    from bastion.store import open_check_process

    if not open_check_process.can_run():
        return None
    return open_check_process.check_in_child(
        cfg.db_path,
        cfg.store,
        backups_dir=cfg.backups_dir,
        db_name="bastion",
        expected=expects(cfg.home, "bastion"),
    )


def _check_now(cfg: Config, key: DatabaseKey | None) -> Any:
    # The check alone, not the recovery stack: serve runs this on a thread beside its
    # imports, and what it imports holds the GIL against them (issue 22 §7).
    from bastion.store.open_check import open_check

    return open_check(
        cfg.db_path,
        cfg.store,
        backups_dir=cfg.backups_dir,
        db_name="bastion",
        expected=expects(cfg.home, "bastion"),
        key=key,
    )


def _open_checked(
    cfg: Config,
    *,
    for_reading: bool = False,
    key: DatabaseKey | None = None,
    precheck: OpenCheckAhead | None = None,
) -> tuple[Database, Any]:
    """Open ``bastion.db`` after the open-time check.

    The check's outcome is acted on by cause. An I/O condition (full disk, read-only media,
    permissions: ``IO_ERROR``, or a normal open refused) raises its typed ``StoreIOError``
    and never leads to recovery. Evidence of damage is refused or recovered per
    ``cfg.store.on_corrupt`` (never silently continued on); a missing file the home has
    held is damage too, and recovery never answers it with an empty database. Damage to
    full-text indexes alone is recovered by rebuilding them in place (:func:`_reindex`), not
    by restoring a backup, which would lose what was written since. The recovery stack
    (:mod:`bastion.store.recovery`, backups, the swap) is imported only then: a sound file's
    open never loads it.
    """
    from bastion.store.open_check import CheckKind

    check = precheck.result(cfg) if precheck is not None else None
    if check is None:
        check = _check_now(cfg, key)
    report = None
    rebuilt: list[str] | None = None
    if check.kind in (CheckKind.IO_ERROR, CheckKind.KEY):
        # The disk refused, or the key does not fit: never damage, never a recovery.
        raise check.error()
    if check.damaged:
        if cfg.store.on_corrupt != "recover":  # "auto" means refuse outside the daemon
            error = check.error()
            missing = missing_error(cfg.home, "bastion", cfg.db_path)
            error.hint = (
                missing.hint
                if missing is not None
                else "Nothing was changed. Only a full-text index is damaged: run `bastion db "
                "reindex` to rebuild it from its table (nothing is lost)."
                if check.index_only
                else "Nothing was changed. Run `bastion db recover` to quarantine it and "
                'restore the newest verified backup, or set store.on_corrupt = "recover".'
            )
            raise error
        rebuilt = _reindex(cfg, key, check.output) if check.index_only else None
        if rebuilt is None:
            _refuse_if_open_elsewhere(check.error(), cfg.db_path)
            from bastion.store.recovery import recover

            report = recover(
                cfg.db_path,
                backups_dir=cfg.backups_dir,
                quarantine_root=cfg.quarantine_dir,
                check=check,
                db_name="bastion",
                # An empty database only replaces a damaged file it quarantined, never a
                # lost one.
                allow_empty=check.kind is not CheckKind.MISSING,
                key=key,
            )
    try:
        db = Database.open(cfg.db_path, cfg.store, name="bastion", key=key)
    except StoreIOError as err:
        if not for_reading:
            raise
        db = Database.open_readonly(cfg.db_path, cfg.store, name="bastion", reason=err, key=key)
    if db.readonly is None:
        record(cfg.home, "bastion", cfg.db_path)
    if report is not None:
        # Events go into the database now in place, so they are emitted after it opened.
        data = report.to_dict()
        _emit_event(db, "store.quarantined", "bastion", {"dir": data["quarantine_dir"]})
        _emit_event(db, "store.restored", "bastion", {"placed": data["placed"]})
    if rebuilt is not None:
        _emit_event(
            db, "store.reindexed", "bastion", {"tables": rebuilt, "found": list(check.output)}
        )
    return db, report


def _refuse_if_open_elsewhere(error: BastionError, path: Path) -> None:
    """Raise ``error`` when another process has ``path`` (or its -wal) open: a recovery moves
    the file to quarantine, and a process that has it open (an app, the CLI, a running
    daemon) would go on writing into the quarantined copy, its writes lost without a word."""
    import psutil

    wanted = {str(path), f"{path}-wal"}
    others = []
    for proc in psutil.process_iter(["pid", "name"]):
        if proc.info["pid"] == os.getpid():
            continue
        try:
            if any(f.path in wanted for f in proc.open_files()):
                others.append(f"{proc.info['name']} (pid {proc.info['pid']})")
        except (psutil.AccessDenied, psutil.NoSuchProcess, psutil.ZombieProcess):
            continue
    if others:
        error.hint = (
            f"Nothing was changed: {', '.join(others)} has it open, and a recovery would move "
            "it from under them. Stop them, then run `bastion db recover` (or start again)."
        )
        raise error


def _reindex(cfg: Config, key: DatabaseKey | None, found: tuple[str, ...]) -> list[str] | None:
    """Rebuild ``bastion.db``'s full-text indexes in place, for ``on_corrupt = "recover"``
    when the open-time check found damage to them alone: each index is derived data, rebuilt
    from its table (``bastion db reindex``), so nothing is lost, where a restore would lose
    every write since the newest backup. The rest of the file passed the check (its every
    finding is FTS5's), so the rebuild's writes go to a sound b-tree. The rebuilt tables, or
    None when the rebuild or the quick check after it did not mend the file: the caller
    then recovers as from any damage.

    A rebuild the disk refuses (full, a quota, read-only media, a file's or folder's mode),
    or that another writer's lock or the key keeps out, raises that typed error: the daemon
    does not start, and nothing is quarantined or restored because of it (a restore would
    lose every write since the backup, to mend what freeing space mends). docs/operations.md
    ("When a database is damaged") says why it refuses rather than start on the index."""
    import logging

    from bastion.store.fts import repair_in_place

    log = logging.getLogger("bastion.app")
    done = repair_in_place(
        cfg.db_path,
        cfg.store,
        name="bastion",
        key=key,
        full=False,
        retry="start bastion again (or run `bastion db reindex`)",
        found=found,
    )
    if not done.mended:
        log.warning(
            "full-text index damage: %s; recovering", "; ".join(done.problems) or "not mended"
        )
        return None
    log.warning("full-text index damage in %s: rebuilt %s in place", cfg.db_path, done.rebuilt)
    return list(done.rebuilt)


def _emit_event(db: Database, kind: str, subject: str, data: dict[str, Any]) -> None:
    """Record an event when the events domain is present (it arrives with the schema)."""
    import importlib
    import logging

    try:
        events = importlib.import_module("bastion.domains.events")
        events.EventsRepo(db).emit(kind, subject, data)
    except Exception:  # no events table yet, or none in this build: log instead
        logging.getLogger("bastion.app").info("event %s %s %s", kind, subject, data)


class VaultSecrets:
    """The supervisor's ``SecretSource`` filled by a home's vault: where ``vault`` and
    ``supervisor`` meet without importing each other. Each read is audited as ``inject``
    with actor ``supervisor``; the value goes straight into the child's environment."""

    def __init__(self, home: Home, *, actor: str = "supervisor") -> None:
        self._home = home
        self._actor = actor

    def resolve(self, scope: str, name: str) -> str:
        """The value of ``scope/name`` for a child's environment (audited as ``inject``)."""
        return self._home.vault.inject([name], scope, actor=self._actor)[name].reveal()

    # The supervisor's SecretWatch: running services follow changes of their secrets.

    def resolve_stamped(self, scope: str, name: str) -> tuple[str, str]:
        """The value and its stamp: the index's fingerprint, read *before* the value (a set
        in between costs one restart too many, never a missed change)."""
        found = self._home.vault.index.lookup(scope, name)
        value = self.resolve(scope, name)  # SecretNotFound when absent, as at every start
        return value, found[2] if found is not None else ""

    def stamps(self, keys: Collection[tuple[str, str]]) -> dict[tuple[str, str], str | None]:
        """Each secret's current fingerprint (None: deleted); the index only, no value."""
        index = self._home.vault.index
        return {
            (scope, name): (found[2] if (found := index.lookup(scope, name)) else None)
            for scope, name in keys
        }

    def watch(self) -> FileWatch:
        """Wake-ups when vault.db changes, whichever process wrote it (a commit appends to
        ``vault.db-wal``; a restore replaces ``vault.db``): inotify on Linux, else polling."""
        from bastion._platform.filewatch import watch_files

        path = self._home.config.vault_db_path
        return watch_files(path.parent, [path.name, f"{path.name}-wal"])


def _make_private(path: Path) -> None:
    try:
        ensure_private_dir(path)
    except InsecureDirectoryError as err:
        raise ConfigError(str(err), hint=f"Run `chmod 700 {path}` or choose another home.") from err
    except OSError as err:
        raise ConfigError(
            f"cannot create {path}: {os.strerror(err.errno or 0)}",
            hint="Choose a home you can write to.",
        ) from err
