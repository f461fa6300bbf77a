"""A home's configuration history: what ``bastion config history|diff|rollback`` do.

The versions live in ``bastion.db`` (:mod:`bastion.domains.confighistory`). They are
recorded where changes happen:

- the daemon's services watcher records every spec version a reload applied (author
  ``file``) and every ``PUT``/``DELETE /v1/services/{name}`` (author ``api``);
- the daemon records ``bastion.toml`` when it starts and whenever the file changes while it
  runs (author ``file``);
- :func:`sync` records what the files say now, for edits made while no daemon ran (the CLI
  calls it before it reads the history, when no daemon is there to have done it);
- :func:`rollback` records the version it writes back (author ``cli``, or ``api``), in the
  same transaction as the file write: a write that fails records nothing, and a COMMIT that
  fails after the write puts the file back. The file's text before it goes in first (author
  ``file``) when nobody had recorded it, so a rollback never replaces an edit untraced.

A rollback writes the old text back atomically (``_fs.atomic_write``: temp, fsync, rename,
fsync of the folder; 0600) after checking it is still valid (a spec's program may be gone;
a key of bastion.toml may have been renamed), and applies it: a running daemon reloads its
services at once; a ``bastion.toml`` takes effect when the daemon next starts (its values
are read once, at start; the answer says whether a restart is needed).
"""

from __future__ import annotations

import dataclasses
import logging
import os
import tempfile
import tomllib
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bastion._fs import atomic_write, fsync_dir
from bastion.config import CONFIG_FILE, load_config
from bastion.errors import (
    BastionError,
    ConfigError,
    ConfigVersionNotFound,
    ConfigVersionWithheld,
    RollbackRefused,
)

if TYPE_CHECKING:
    from bastion.app import Home
    from bastion.domains.confighistory import ConfigHistoryRepo, ConfigVersion
    from bastion.store import WriteTx
    from bastion.store.repo import Page

__all__ = [
    "Diff",
    "Rollback",
    "check_config_text",
    "diff",
    "history",
    "rollback",
    "sync",
    "sync_config",
]

log = logging.getLogger(__name__)


def _repo(home: Home) -> ConfigHistoryRepo:
    from bastion.domains.confighistory import ConfigHistoryRepo

    return ConfigHistoryRepo(home.db)


def _read(path: Path) -> str | None:
    from bastion._text import read_text

    # As load_config reads it (a UTF-8 byte-order mark dropped; refused when another user
    # could change it, which a start refuses too): the text recorded is the text checked.
    return read_text(path, ConfigError, CONFIG_FILE, missing_ok=True, private=True)


def check_config_text(text: str, *, name: str = CONFIG_FILE) -> None:
    """Raise ``ConfigError`` unless ``text`` is a valid ``bastion.toml`` (read by the very
    code a home's file is: ``load_config``, on a copy in a private temporary folder). The
    error names the text as ``name`` (the file it is, or will be), never the copy: a path
    that is gone once the check returns would send a user to look at the wrong file."""
    with tempfile.TemporaryDirectory(prefix="bastion-config-check-") as folder:
        copy = str(Path(folder, CONFIG_FILE))
        Path(copy).write_text(text, encoding="utf-8")
        try:
            load_config(folder, env={})
        except ConfigError as err:

            def named(value: Any) -> Any:
                return value.replace(copy, name) if isinstance(value, str) else value

            raise type(err)(
                named(err.message),
                hint=named(err.hint),
                recoverable=err.recoverable,
                **{key: named(value) for key, value in err.details.items()},
            ) from None


def sync_config(home: Home, author: str = "file") -> ConfigVersion | None:
    """Record ``bastion.toml`` as it is now, if it changed since its latest version. An
    invalid file is not recorded (it cannot be what runs): ``ConfigError`` says what is
    wrong with it, for the caller to tell (the daemon logs it: nothing else would, until
    its next start refused the file)."""
    from bastion.domains.confighistory import CONFIG_TARGET

    path = home.config.home / CONFIG_FILE
    text = _read(path)
    if text is not None:
        check_config_text(text, name=str(path))
    return _repo(home).record(CONFIG_TARGET, text, author)


def sync(home: Home, author: str = "file") -> list[ConfigVersion]:
    """Record what ``bastion.toml`` and ``services/*.toml`` say now (valid specs only; a
    recorded spec whose file is gone is recorded as deleted). Returns the new versions.

    The files are read inside the write transaction that records them: two processes
    syncing at once (two ``config history`` runs while an editor saves) then record in the
    order the files changed. Read before it, a slower process recorded the text it had read
    after a newer one another had recorded (seen: 333 versions for 160 edits, 186 of them
    back to the text before, an order the file never went through)."""
    from bastion.domains.confighistory import CONFIG_TARGET, service_target
    from bastion.errors import ServiceSpecError
    from bastion.supervisor.spec import read_spec, spec_files

    repo = _repo(home)
    recorded = {t: repo.latest(t) for t in repo.targets()}  # names of recorded specs

    def unit(tx: WriteTx) -> list[ConfigVersion]:
        found = []
        try:
            text = _read(home.config.home / CONFIG_FILE)
            if text is not None:
                check_config_text(text, name=str(home.config.home / CONFIG_FILE))
        except ConfigError:
            pass  # an invalid file is not recorded: it cannot be what runs
        else:
            config = repo.record_tx(tx, CONFIG_TARGET, text, author)
            if config is not None:
                found.append(config)
        texts: dict[str, str | None] = {}
        for path in spec_files(home.config.services_dir):
            try:
                texts[path.stem] = read_spec(path)[1]
            except ServiceSpecError:
                continue  # not a version: it would not run
        present = {service_target(name) for name in texts}
        for target, latest in recorded.items():
            name = latest.service if latest is not None else None
            if (
                name
                and target not in present
                and not (home.config.services_dir / f"{name}.toml").exists()
            ):
                texts[name] = None  # the file is gone: recorded as deleted (once: deduplicated)
        return found + repo.record_specs_tx(tx, texts, author)

    versions: list[ConfigVersion] = home.db.write(unit)
    return versions


def history(
    home: Home, *, service: str | None = None, limit: int = 50, cursor: str | None = None
) -> Page[ConfigVersion]:
    """Versions, newest first; ``service`` narrows to one service's spec (``"bastion.toml"``
    is not a service name: use :data:`~bastion.domains.confighistory.CONFIG_TARGET`)."""
    from bastion.domains.confighistory import service_target
    from bastion.supervisor.spec import validate_service_name

    target = None if service is None else service_target(validate_service_name(service))
    return _repo(home).query(target=target, limit=limit, cursor=cursor)


def _get(home: Home, version_id: int) -> ConfigVersion:
    found = _repo(home).get(version_id)
    if found is None:
        raise ConfigVersionNotFound(f"no configuration version {version_id}", id=version_id)
    return found


def _text(version: ConfigVersion) -> str:
    if version.withheld:
        raise ConfigVersionWithheld(
            f"version {version.id} of {version.target} was not kept: {version.withheld}",
            id=version.id,
        )
    return version.content or ""


@dataclasses.dataclass(frozen=True, slots=True)
class Diff:
    """Two versions and the unified diff from ``a`` to ``b``."""

    a: ConfigVersion
    b: ConfigVersion
    text: str

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: both versions (without content) and the diff."""
        return {"a": self.a.to_dict(), "b": self.b.to_dict(), "diff": self.text}


def diff(home: Home, a: int, b: int) -> Diff:
    """The unified diff from version ``a`` to version ``b`` (any two: usually of one file)."""
    import difflib  # here: only a diff needs it, not the daemon's start (issue 22 §7)

    first, second = _get(home, a), _get(home, b)
    lines = difflib.unified_diff(
        _text(first).splitlines(keepends=True),
        _text(second).splitlines(keepends=True),
        fromfile=f"{first.target}@{first.id}",
        tofile=f"{second.target}@{second.id}",
    )
    text = "".join(line if line.endswith("\n") else line + "\n" for line in lines)
    return Diff(first, second, text)


@dataclasses.dataclass(frozen=True, slots=True)
class Rollback:
    """What a rollback did: the version restored, the one recorded for it, how it applied."""

    restored: ConfigVersion
    recorded: ConfigVersion | None
    path: str
    #: "reloaded" (the daemon applied it now), "next start" (no daemon runs), "restart
    #: needed" (bastion.toml under a running daemon), or "not reloaded" (the daemon did not
    #: take the reload: ``problem`` says why; the file is written and recorded all the same).
    applied: str
    reload: dict[str, Any] | None = None
    problem: str | None = None
    #: Where the file's text before the rollback was kept, when it was not valid (so never
    #: recorded): ``<file>.invalid-<UTC time>``, next to it.
    kept: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready."""
        return {
            "restored": self.restored.to_dict(),
            "recorded": None if self.recorded is None else self.recorded.to_dict(),
            "path": self.path,
            "applied": self.applied,
            "reload": self.reload,
            "problem": self.problem,
            "kept": self.kept,
        }


def rollback(home: Home, version_id: int, *, author: str = "cli") -> Rollback:
    """Write version ``version_id``'s text back to its file atomically (or remove the file,
    for a version that was a deletion) and apply it. Refused, with nothing written, when the
    text was withheld or is no longer valid."""
    from bastion.domains.confighistory import CONFIG_TARGET

    version = _get(home, version_id)
    text = None if version.deleted else _text(version)
    service = version.service
    if version.target == CONFIG_TARGET:
        path = home.config.home / CONFIG_FILE
        if text is not None:
            _still_valid(version, lambda: check_config_text(text))
    elif service is not None:
        path = home.config.services_dir / f"{service}.toml"
        if text is not None:
            from bastion.supervisor.spec import parse_spec

            _still_valid(
                version, lambda: parse_spec(service, tomllib.loads(text), source=str(path))
            )
    else:  # pragma: no cover - only the two kinds of target are ever recorded
        raise RollbackRefused(f"version {version_id} names an unknown file {version.target}")

    def unit(tx: Any) -> ConfigVersion | None:
        # Recorded in the same transaction as the write: if the file cannot be written, the
        # version is rolled back with the transaction and the history stays true. If the
        # transaction fails after the file was written (its COMMIT on a full disk), the
        # file is put back as it was: the command says it failed, so it changed nothing.
        repo = _repo(home)
        # What the file says now goes in first (author "file"), unless it is the latest
        # version already or not valid: an edit the daemon has not recorded (its watch is
        # off, or has yet to settle) would otherwise be replaced without a trace. Read under
        # the write lock, so no recorder can slip a version in between.
        current = _current_text(home, version.target, path)
        # What runs is stopped with its own grace, not the one of the text written back: the
        # latest version the daemon applied, or the file's text it has yet to apply.
        latest = repo.latest(version.target)
        replaced[:] = [current if isinstance(current, str) else None]
        replaced.append(latest.content if latest is not None and not latest.withheld else None)
        if current is not _INVALID:
            repo.record_tx(tx, version.target, current, "file")
        recorded = repo.record_tx(tx, version.target, text, author, rollback_of=version.id)
        before = _Before.keep(path)
        try:
            if text is None:
                path.unlink(missing_ok=True)
            else:
                path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
                atomic_write(path, text)
        except BaseException:
            before.drop()  # the file is as it was
            raise
        tx.on_rollback(before.put_back)
        if current is _INVALID:
            # Not a version (it cannot run), so the history does not hold it: an edit with a
            # typo in it would be lost with the rollback that undid it. Kept next to the file.
            tx.on_commit(lambda: kept.append(before.set_aside()))
        else:
            tx.on_commit(before.drop)
        return recorded

    kept: list[Path | None] = []
    replaced: list[str | None] = []
    try:
        recorded = home.db.write(unit)
    except OSError as err:
        raise RollbackRefused(
            f"cannot write {path}: {os.strerror(err.errno or 0)}",
            hint="Check the folder's permissions and free space; nothing was changed.",
            path=str(path),
        ) from err
    running_grace_s = 0.0
    if service is not None:
        running_grace_s = max(_grace_s(service, text) for text in replaced or [None])
    applied, report, problem = _apply(home, service, running_grace_s)
    aside = kept[0] if kept else None
    return Rollback(
        version,
        recorded,
        str(path),
        applied,
        report,
        problem,
        kept=None if aside is None else str(aside),
    )


#: What :func:`_current_text` returns for a file that is not valid (not a version).
_INVALID = object()


def _current_text(home: Home, target: str, path: Path) -> Any:
    """The text of ``target``'s file now as :func:`sync` would record it: None when there is
    no file, :data:`_INVALID` when it is not valid (it cannot be what runs)."""
    from bastion.domains.confighistory import CONFIG_TARGET
    from bastion.errors import ServiceSpecError
    from bastion.supervisor.spec import read_spec

    try:
        if target == CONFIG_TARGET:
            text = _read(path)
            if text is not None:
                check_config_text(text, name=str(path))
            return text
        if not path.exists():
            return None
        return read_spec(path)[1]
    except (ConfigError, ServiceSpecError):
        return _INVALID


@dataclasses.dataclass(frozen=True, slots=True)
class _Before:
    """A file as it was before a rollback replaced it, to put back if the rollback's
    transaction fails after the write (see :func:`rollback`).

    Kept as a hard link (a hidden name next to it, which no reader of specs or of
    bastion.toml looks at): putting it back is a rename, which needs no free block, so it
    works on the full disk that made the COMMIT fail. Where links are refused, the bytes
    are kept instead (written back: that needs room)."""

    path: Path
    aside: Path | None = None  # the hard link to the old file
    data: bytes | None = None  # or its bytes
    mode: int = 0o600

    @classmethod
    def keep(cls, path: Path) -> _Before:
        aside = path.with_name(f".{path.name}.before-rollback")
        aside.unlink(missing_ok=True)  # left by a rollback killed at this point
        try:
            os.link(path, aside)
        except FileNotFoundError:
            return cls(path)  # no file: putting back is removing the new one
        except OSError:
            if not path.is_file():
                return cls(path)  # a folder in its place: the write fails, nothing to keep
            with open(path, "rb") as handle:
                data, info = handle.read(), os.fstat(handle.fileno())
            return cls(path, data=data, mode=info.st_mode & 0o7777)
        return cls(path, aside=aside)

    def put_back(self) -> None:
        """The file as it was (destructive: replaces or removes what the rollback wrote)."""
        if self.aside is not None:
            os.replace(self.aside, self.path)
            fsync_dir(self.path.parent)
        elif self.data is not None:
            atomic_write(self.path, self.data, mode=self.mode)
        else:
            self.path.unlink(missing_ok=True)

    def drop(self) -> None:
        """Forget the old file (the rollback's write was committed, or never happened)."""
        if self.aside is not None:
            self.aside.unlink(missing_ok=True)

    def set_aside(self) -> Path | None:
        """Keep the old file as ``<name>.invalid-<UTC time>`` next to it (0600; a name no
        reader of bastion.toml or of ``services/*.toml`` looks at) and return that path;
        None when there was no file, or when it cannot be kept (logged: the rollback itself
        is done and recorded)."""
        if self.aside is None and self.data is None:
            return None
        from bastion.store.backup import utc_stamp

        target = self.path.with_name(f"{self.path.name}.invalid-{utc_stamp()}")
        try:
            if self.aside is not None:
                os.chmod(self.aside, 0o600)  # its own inode now: the file has a new one
                os.replace(self.aside, target)
                fsync_dir(self.path.parent)
            else:
                atomic_write(target, self.data or b"")
        except OSError as err:
            log.warning("could not keep the replaced text of %s: %s", self.path, err)
            self.drop()
            return None
        return target


def _still_valid(version: ConfigVersion, check: Any) -> None:
    try:
        check()
    except (BastionError, tomllib.TOMLDecodeError) as err:
        message = getattr(err, "message", str(err))
        raise RollbackRefused(
            f"version {version.id} of {version.target} is not valid any more: {message}",
            hint="Fix what it depends on (a program's path, a renamed key) or pick another "
            "version; nothing was written.",
            id=version.id,
        ) from err


def _grace_s(service: str, text: str | None) -> float:
    """The ``[stop] grace_s`` of a spec's text; 0 for none or one that does not parse."""
    from bastion.supervisor.spec import parse_spec

    if text is None:
        return 0.0
    try:
        return parse_spec(service, tomllib.loads(text)).stop.grace_s
    except (tomllib.TOMLDecodeError, BastionError):
        return 0.0


def _apply(
    home: Home, service: str | None, running_grace_s: float = 0.0
) -> tuple[str, dict[str, Any] | None, str | None]:
    """How the rollback applies: the daemon told to reload, when one runs. Runs after the
    commit: a daemon that does not answer (stopped, hung) makes the rollback "not
    reloaded", never an error -- the file is written and recorded, and an error here
    read as "nothing happened" (with the hint to start a daemon that was running)."""
    from bastion.client import DEFAULT_TIMEOUT_S, DaemonClient
    from bastion.supervisor.catalog import reload_wait_s

    # The reload answers once the services it restarts or removes are stopped: the rolled
    # back one with the grace of the version that runs (``running_grace_s``).
    timeout = DEFAULT_TIMEOUT_S
    if service is not None:
        timeout += reload_wait_s(home.config.services_dir) + running_grace_s
    client = DaemonClient.for_home(home.config, timeout=timeout)
    if client is None:
        return "next start", None, None
    if service is None:
        return "restart needed", None, None
    try:
        report: dict[str, Any] = client.post("/v1/services/reload")
    except BastionError as err:
        return "not reloaded", None, err.message
    return "reloaded", report, None
