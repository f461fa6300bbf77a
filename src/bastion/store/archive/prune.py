"""Retention of an archive: what ``[archive] retain`` drops, read from the files and deleted.

:func:`plan_archive_prune` reads a database's generations (headers, base records) into the
views :func:`bastion.store.archive.policy.plan_prune` decides on (pure: never what a
restore inside ``retain`` needs); :func:`apply_prune` deletes what the plan names, in an
order a prune killed half-way cannot turn into a generation with holes.
"""

from __future__ import annotations

import contextlib
import shutil
from pathlib import Path

from bastion._fs import fsync_dir
from bastion.store.archive import policy
from bastion.store.archive.layout import list_bases, list_generations, list_segments

__all__ = ["apply_prune", "plan_archive_prune"]


def plan_archive_prune(
    archive_root: Path, db_name: str, *, wall: float, retain_s: float
) -> policy.PrunePlan:
    """Read the archive of ``db_name`` and plan its pruning (read-only)."""
    views = []
    for gen in list_generations(archive_root, db_name):
        segments, _ = list_segments(gen)
        last = max((s.columns.t_hi_us[-1] / 1e6 for s in segments if s.columns), default=0.0)
        views.append(
            policy.GenerationView(
                id=gen.id,
                path=gen.path,
                last_at=max(last, gen.created_at),
                bases=[
                    policy.BaseView(b.path, b.record, b.usable_from, b.lo) for b in list_bases(gen)
                ],
                segments=[policy.SegmentView(s.path, s.end) for s in segments],
            )
        )
    return policy.plan_prune(views, wall=wall, retain_s=retain_s)


def apply_prune(plan: policy.PrunePlan) -> None:
    """DESTRUCTIVE: delete what ``plan`` names (bases with their manifest and record)."""
    touched: set[Path] = set()
    for base in plan.bases:
        for path in (base.record, base.path.with_name(base.path.name + ".json"), base.path):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
        touched.add(base.path.parent)
    for seg in plan.segments:
        with contextlib.suppress(FileNotFoundError):
            seg.unlink()
        touched.add(seg.parent)
    for gen_dir in plan.generations:
        # generation.json first: a prune killed half-way leaves a directory list_generations
        # skips, never a generation with holes in it.
        with contextlib.suppress(FileNotFoundError):
            (gen_dir / "generation.json").unlink()
        shutil.rmtree(gen_dir, ignore_errors=True)
        touched.add(gen_dir.parent)
    for directory in touched:
        with contextlib.suppress(OSError):
            fsync_dir(directory)
