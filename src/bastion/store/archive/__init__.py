"""Continuous WAL archiving and point-in-time restores (Litestream's idea on bastion's backups).

* :mod:`.archiver` -- the thread that copies committed WAL frames into the archive, holds
  the read transaction that keeps SQLite from reusing frames it has not copied, runs the
  checkpoints, takes base snapshots and prunes; under it :mod:`.batch` (a locked phase's
  frames, the pending segment), :mod:`.writelock`, :mod:`.checkpoint`, :mod:`.resume`
  (proving a restart continues the history), :mod:`.timing` (commit times, pure),
  :mod:`.compact` (merging old segments) and :mod:`.prune` (retention, applied);
* :mod:`.plan` -- what a restore at an instant uses and reaches, the timeline; :mod:`.restore`
  -- rebuilding a database as of an instant (base + replay) and swapping it in;
* :mod:`.segment`, :mod:`.layout` -- the archive's files; :mod:`.walfile` -- reading the
  live WAL and wal-index; :mod:`.policy` -- schedule and retention, pure.

The names below load on first use, like :mod:`bastion.store`'s.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from bastion._lazy import lazy_exports

if TYPE_CHECKING:
    from bastion.store.archive.archiver import Archiver, ArchiveStatus
    from bastion.store.archive.plan import (
        GenerationRange,
        RestorePlan,
        parse_instant,
        plan_restore,
        timeline,
    )
    from bastion.store.archive.restore import PointInTimeRestore, build_at, restore_at

__all__ = [
    "ArchiveStatus",
    "Archiver",
    "GenerationRange",
    "PointInTimeRestore",
    "RestorePlan",
    "build_at",
    "parse_instant",
    "plan_restore",
    "restore_at",
    "timeline",
]

_HOME = {
    "ArchiveStatus": "bastion.store.archive.archiver",
    "Archiver": "bastion.store.archive.archiver",
    **{
        name: "bastion.store.archive.plan"
        for name in ("GenerationRange", "RestorePlan", "parse_instant", "plan_restore", "timeline")
    },
    **{
        name: "bastion.store.archive.restore"
        for name in ("PointInTimeRestore", "build_at", "restore_at")
    },
}

__getattr__, __dir__ = lazy_exports(globals(), _HOME)
