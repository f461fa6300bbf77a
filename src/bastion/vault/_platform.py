"""What differs between the OS keychains, as facts the keychain backend reads.

- Windows Credential Manager caps an item's blob at 2,560 bytes (``CRED_MAX_CREDENTIAL_BLOB_SIZE``),
  and keyring stores the value as UTF-16: a limit in UTF-16 bytes, not characters (a
  character outside the BMP, an emoji, takes 4). Longer values are chunked
  (:class:`ItemLimit`).
- macOS Keychain and the Secret Service have no limit that matters here.
- The hint when no keychain is reachable names what is missing on that system.

macOS Keychain items carry an access list naming the applications that may read them
without a prompt; keyring creates them for the running executable (the Python interpreter,
or ``dist/bastion``). What that means when the interpreter changes, and what bastion does
about it, is in docs/platforms.md ("Keychains").
"""

from __future__ import annotations

import dataclasses
import sys
from typing import Literal

__all__ = ["ITEM_LIMIT", "UNAVAILABLE_HINT", "ItemLimit"]


@dataclasses.dataclass(frozen=True, slots=True)
class ItemLimit:
    """How much one keychain item holds: ``size`` characters, or bytes of UTF-16."""

    size: int
    unit: Literal["chars", "utf-16-bytes"] = "chars"

    def __post_init__(self) -> None:
        # A piece must hold at least one character of any kind (4 bytes in UTF-16).
        if self.size < (4 if self.unit == "utf-16-bytes" else 1):
            raise ValueError(f"an item limit of {self.size} {self.unit} holds nothing")

    def measure(self, value: str) -> int:
        """``value``'s size in this limit's unit."""
        if self.unit == "chars":
            return len(value)
        return len(value.encode("utf-16-le", "surrogatepass"))

    def fits(self, value: str) -> bool:
        return self.measure(value) <= self.size

    def split(self, value: str) -> list[str]:
        """``value`` in pieces that each fit, in order, never cutting a character (in UTF-16
        a character outside the BMP is a surrogate pair: it stays whole)."""
        if self.unit == "chars":
            return [value[i : i + self.size] for i in range(0, len(value), self.size)] or [""]
        pieces: list[str] = []
        start = used = 0
        for i, char in enumerate(value):
            cost = 4 if ord(char) > 0xFFFF else 2
            if used + cost > self.size:
                pieces.append(value[start:i])
                start, used = i, 0
            used += cost
        pieces.append(value[start:])
        return pieces


if sys.platform == "win32":
    #: keyring #355: CredWrite refuses a blob over 2,560 bytes, and the blob is UTF-16.
    ITEM_LIMIT: ItemLimit | None = ItemLimit(2560, "utf-16-bytes")
    UNAVAILABLE_HINT: str | None = (
        "Windows Credential Manager is not reachable from this session (a service account "
        "or a session without a user profile); run bastion as the signed-in user, or set "
        'vault.backend = "encrypted-file" in bastion.toml.'
    )
elif sys.platform == "darwin":
    ITEM_LIMIT = None
    UNAVAILABLE_HINT = (
        "The macOS login keychain is not reachable (an SSH session or a launchd daemon outside "
        "the user's GUI session); run bastion in the user's session, or set "
        'vault.backend = "encrypted-file" in bastion.toml.'
    )
elif sys.platform.startswith("linux"):
    ITEM_LIMIT = None
    UNAVAILABLE_HINT = (
        "No Secret Service on the session bus (is DBUS_SESSION_BUS_ADDRESS set?). Start "
        "one, e.g. `dbus-run-session -- sh -c 'echo -n PASS | gnome-keyring-daemon "
        "--unlock --components=secrets; exec YOUR_COMMAND'`, or set "
        'vault.backend = "encrypted-file" in bastion.toml.'
    )
else:
    ITEM_LIMIT = None
    UNAVAILABLE_HINT = None
