"""What differs between operating systems, behind one small interface per concern.

Logic elsewhere never tests ``sys.platform``: it imports the interface from here, and this
package picks the module for the running system once, at import.

* File locks (:mod:`bastion._lockfile` builds on them): ``try_lock(fd)`` takes an exclusive,
  non-blocking lock on an open descriptor and says whether it got it; ``unlock(fd)`` drops
  it. The kernel drops the lock when the process dies, however it dies. ``posix.py`` uses
  ``flock``; ``windows.py`` uses ``msvcrt.locking`` on one byte far past any content.
"""

from __future__ import annotations

import sys

if sys.platform == "win32":
    from bastion._platform.windows import try_lock, unlock
else:
    from bastion._platform.posix import try_lock, unlock

__all__ = ["try_lock", "unlock"]
