"""Windows access control as SDDL text: the private DACL bastion applies, and who else an
existing DACL lets in. Pure string work (no Windows API), so it is tested on every system;
:mod:`bastion._platform.windows` reads and writes the DACLs themselves.

An SDDL DACL reads ``D:<flags>(<ace>)(<ace>)...``; each ACE is
``type;flags;rights;object_guid;inherit_guid;sid``. Only *allow* ACEs that apply to the
object itself (not ``IO``, inherit-only) grant anything; deny ACEs only take away.
"""

from __future__ import annotations

import re

__all__ = ["TRUSTED", "exposure", "private_dacl"]

#: Who may hold rights on a private file besides its user: the OS itself (LocalSystem) and
#: the local Administrators (who can take any file anyway). Both as SDDL aliases and SIDs.
TRUSTED = frozenset({"SY", "S-1-5-18", "BA", "S-1-5-32-544"})

#: Names of well-known trustees, for messages.
_NAMES = {
    "WD": "Everyone",
    "S-1-1-0": "Everyone",
    "AU": "Authenticated Users",
    "S-1-5-11": "Authenticated Users",
    "BU": "Users",
    "S-1-5-32-545": "Users",
    "BG": "Guests",
    "AN": "Anonymous",
    "IU": "Interactive users",
    "NU": "Network users",
}

#: Access-mask bits of the two-letter right codes (generic, standard and file rights).
_RIGHTS = {
    "GA": 0x10000000,
    "GX": 0x20000000,
    "GW": 0x40000000,
    "GR": 0x80000000,
    "FA": 0x001F01FF,
    "FR": 0x00120089,
    "FW": 0x00120116,
    "FX": 0x001200A0,
    "SD": 0x00010000,
    "RC": 0x00020000,
    "WD": 0x00040000,
    "WO": 0x00080000,
    "CC": 0x1,
    "DC": 0x2,
    "LC": 0x4,
    "SW": 0x8,
    "RP": 0x10,
    "WP": 0x20,
    "DT": 0x40,
    "LO": 0x80,
    "CR": 0x100,
}
_READ = 0x1 | 0x80000000 | 0x10000000  # FILE_READ_DATA, GENERIC_READ, GENERIC_ALL
#: FILE_WRITE_DATA, FILE_APPEND_DATA, WRITE_DAC, WRITE_OWNER, GENERIC_WRITE, GENERIC_ALL
_WRITE = 0x2 | 0x4 | 0x40000 | 0x80000 | 0x40000000 | 0x10000000

_ACE = re.compile(r"\(([^()]*)\)")


def private_dacl(user_sid: str) -> str:
    """The DACL of a private directory: full control for ``user_sid`` and LocalSystem only,
    inherited by everything created inside (``OICI``), protected (``P``) from the parent's
    inheritable entries. Files written inside inherit it: nothing else has to be set."""
    if not re.fullmatch(r"S-1(-\d+)+", user_sid):
        raise ValueError(f"not a SID: {user_sid!r}")
    return f"D:P(A;OICI;FA;;;{user_sid})(A;OICI;FA;;;SY)"


def _mask(rights: str) -> int:
    if rights.lower().startswith("0x"):
        return int(rights, 16)
    if rights.isdigit():
        return int(rights)
    mask = 0
    for i in range(0, len(rights), 2):
        mask |= _RIGHTS.get(rights[i : i + 2], 0)
    return mask


def exposure(sddl: str, user_sid: str) -> str | None:
    """Who other than ``user_sid`` and :data:`TRUSTED` may read or write under ``sddl``
    (a description such as ``"readable by Everyone (WD)"``), or None when nobody may."""
    dacl = sddl[sddl.find("D:") :] if "D:" in sddl else ""
    if not dacl:
        return "no DACL: everyone has full access"
    dacl = re.split(r"\b[SOG]:", dacl[2:], maxsplit=1)[0]  # stop at a following SACL/owner
    if dacl.startswith("NO_ACCESS_CONTROL"):
        return "a NULL DACL: everyone has full access"
    found: list[str] = []
    for ace in _ACE.findall(dacl):
        fields = ace.split(";")
        if len(fields) < 6:
            continue
        kind, flags, rights, sid = fields[0], fields[1], fields[2], fields[5]
        if kind not in ("A", "XA") or "IO" in re.findall("..", flags):
            continue  # deny entries take away; inherit-only ones do not apply here
        if sid == user_sid or sid in TRUSTED:
            continue
        mask = _mask(rights)
        what = [w for w, bits in (("readable", _READ), ("writable", _WRITE)) if mask & bits]
        if what:
            name = _NAMES.get(sid)
            found.append(f"{' and '.join(what)} by {f'{name} ({sid})' if name else sid}")
    return "; ".join(found) or None
