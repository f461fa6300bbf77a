"""``bastion serve --exit-with-parent``: the daemon stops when the app that started it dies.

A desktop app's sidecar must not outlive the app, however the app ends: a crash, ``kill -9``,
or Tauri's shell plugin killing its children on exit (``SIGKILL``, no chance to clean up).
The daemon cannot be told, so it looks: every ``INTERVAL_S`` it checks that its parent is
the one it started with (``getppid()`` changes when a parent dies and the process is
re-parented) and that each watched process still runs (psutil compares pid *and* start
time, so a reused pid does not pass for the app; a zombie counts as dead).

Under the one-file executable (``make dist``) the daemon is the child of PyInstaller's
bootloader (the same file, which unpacks the bundle, forwards signals and waits); the app is
the bootloader's parent, so both are watched. Killing either ends the daemon.

Portable (psutil) rather than ``PR_SET_PDEATHSIG``: the kernel sends that signal when the
parent *thread* that forked the process exits, and Tauri spawns from a runtime worker thread.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
from collections.abc import Callable

import psutil

__all__ = ["INTERVAL_S", "watch_parent", "watched_parents"]

log = logging.getLogger("bastion.daemon")

#: How often the parent is looked at; stopping takes at most this long to begin.
INTERVAL_S = 0.5


def watched_parents() -> list[psutil.Process]:
    """The parent, and the grandparent when the parent is the one-file bootloader."""
    me = psutil.Process()
    try:
        parent = me.parent()
    except psutil.Error:
        return []
    if parent is None:
        return []
    chain = [parent]
    if getattr(sys, "frozen", False):
        try:
            bootloader = parent.exe() == me.exe()
            grandparent = parent.parent() if bootloader else None
        except psutil.Error:
            grandparent = None
        if grandparent is not None:
            chain.append(grandparent)
    return chain


def _gone(proc: psutil.Process) -> bool:
    try:
        return not proc.is_running() or proc.status() == psutil.STATUS_ZOMBIE
    except psutil.Error:
        return True


async def watch_parent(on_gone: Callable[[str], None], *, interval: float = INTERVAL_S) -> None:
    """Call ``on_gone(description)`` once, when the parent (or the app above a bootloader)
    is gone; runs until then or until cancelled."""
    ppid = os.getppid()
    chain = await asyncio.to_thread(watched_parents)
    names = [f"pid {p.pid}" for p in chain]
    log.info("exiting with parent %s", " and ".join(names) or f"pid {ppid}")
    while True:
        await asyncio.sleep(interval)
        if os.getppid() != ppid:
            on_gone(f"the parent process (pid {ppid})")
            return
        for proc, name in zip(chain, names, strict=True):
            if await asyncio.to_thread(_gone, proc):
                on_gone(f"the parent process ({name})")
                return
