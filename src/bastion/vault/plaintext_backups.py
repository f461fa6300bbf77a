"""The plaintext copies an import leaves behind: written with a record, listed, purged.

An import (``bastion secrets import``, :func:`~bastion.vault.importer.import_file`,
:func:`~bastion.vault.importer.migrate_bundled_json`, the voice tray's config migration)
rewrites a file with references and keeps the original beside it as
``NAME.bastion-backup-<UTC stamp>`` (0600): the way back if the rewrite was wrong, and a
plaintext copy of every secret the file held. So that such a copy is never forgotten:

- each one is recorded in the vault's audit trail (operation ``plaintext-backup``, the path in
  ``detail``) *before* it is written -- a crash in between leaves a record of a file that does
  not exist, which is harmless, never a file without a record;
- :func:`recorded` lists the recorded copies still on disk (``bastion doctor`` reports them as
  problems; it only reads ``vault.db``, so it works when the backend does not answer);
- :func:`purge` deletes them (``bastion secrets import --purge-backups [FILE]``) and records
  each deletion; for a given FILE it also takes copies beside it that an older version made
  without a record;
- ``backup=False`` (``--no-backup``) makes none.

Deleting is an unlink: on journaling file systems and SSDs overwriting first would not reach
the old blocks reliably, so it is not pretended here (docs/security.md says so).
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bastion._fs import atomic_write, fsync_dir
from bastion.errors import ImportFailed
from bastion.store import Database, WriteTx
from bastion.vault.audit import Operation

if TYPE_CHECKING:
    from bastion.vault import Vault

__all__ = ["BACKUP_MARK", "PlaintextBackup", "purge", "recorded", "write_backup"]

#: What a backup's name has between the original's name and its timestamp.
BACKUP_MARK = ".bastion-backup-"


@dataclasses.dataclass(frozen=True, slots=True)
class PlaintextBackup:
    """One plaintext copy still on disk: where, of which file, when."""

    path: str
    source: str
    created_at: float

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready fields."""
        return dataclasses.asdict(self)


def _target(file: Path) -> Path:
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
    target = file.with_name(f"{file.name}{BACKUP_MARK}{stamp}")
    n = 1
    while target.exists():
        n += 1
        target = file.with_name(f"{file.name}{BACKUP_MARK}{stamp}-{n}")
    return target


def write_backup(vault: Vault, file: Path, raw: bytes, *, actor: str) -> Path:
    """Keep ``raw`` (the original of ``file``) beside it, 0600, recorded first."""
    target = _target(file).absolute()
    detail = json.dumps({"path": str(target), "source": str(file.absolute())})

    def unit(tx: WriteTx) -> None:
        vault.audit.record(
            tx,
            Operation.PLAINTEXT_BACKUP,
            actor=actor,
            scope=None,
            name=None,
            fingerprint=None,
            detail=detail,
        )

    vault.db.write(unit)
    atomic_write(target, raw, mode=0o600)
    return target


def recorded(db: Database) -> list[PlaintextBackup]:
    """The recorded plaintext copies still on disk, oldest first. Read-only; ``db`` is the
    vault's index (``vault.db``)."""
    rows = db.query(
        "SELECT ts, detail FROM vault_audit WHERE operation = ? ORDER BY id",
        (str(Operation.PLAINTEXT_BACKUP),),
    )
    found: dict[str, PlaintextBackup] = {}
    for ts, detail in rows:
        try:
            data = json.loads(detail)
            path, source = str(data["path"]), str(data["source"])
        except (TypeError, ValueError, KeyError):
            continue  # not ours to judge; the audit trail keeps it as written
        if os.path.lexists(path):
            found[path] = PlaintextBackup(path, source, float(ts))
    return list(found.values())


def _beside(file: Path) -> list[Path]:
    return sorted(file.parent.glob(f"{file.name}{BACKUP_MARK}*"))


def purge(vault: Vault, file: str | os.PathLike[str] | None = None, *, actor: str) -> list[str]:
    """Delete the plaintext copies: all recorded ones, or those of ``file`` (recorded or just
    lying beside it). Returns the paths deleted. Destructive; each deletion is recorded."""
    if file is None:
        paths = [Path(b.path) for b in recorded(vault.db)]
    else:
        source = Path(file).absolute()
        paths = [Path(b.path) for b in recorded(vault.db) if Path(b.source) == source]
        paths += [p.absolute() for p in _beside(source) if p.absolute() not in paths]
    deleted: list[str] = []
    for path in paths:
        try:
            path.unlink()
        except FileNotFoundError:
            continue
        except OSError as err:
            raise ImportFailed(
                f"cannot delete the plaintext copy {path}: {err.strerror or err}",
                hint="Check its directory's permissions, or delete it by hand.",
                path=str(path),
            ) from err
        # The unlink is durable once the directory is: a crash cannot bring the copy back.
        fsync_dir(path.parent)
        deleted.append(str(path))
    if deleted:

        def unit(tx: WriteTx) -> None:
            for path in deleted:
                vault.audit.record(
                    tx,
                    Operation.PLAINTEXT_BACKUP_PURGED,
                    actor=actor,
                    scope=None,
                    name=None,
                    fingerprint=None,
                    detail=json.dumps({"path": path}),
                )

        vault.db.write(unit)
    return deleted
