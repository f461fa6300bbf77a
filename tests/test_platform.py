"""Platform interfaces (#18): the pure parts of the Windows paths (SDDL, sharing-violation
retries), which module each system gets, and that nothing outside a Linux-only module reads
``/proc`` -- checked on the source and, with the portable paths forced, on a real run."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from bastion import _platform
from bastion._platform._retry import SHARING_ERRORS, retry_sharing
from bastion._platform.sddl import exposure, private_dacl

SRC = Path(__file__).resolve().parents[1] / "src" / "bastion"
USER = "S-1-5-21-1111111111-2222222222-3333333333-1001"
OTHER = "S-1-5-21-1111111111-2222222222-3333333333-1002"


# --- Windows DACLs as SDDL (the text windows.py reads and writes) ----------------------------


def test_the_private_dacl_is_protected_and_names_only_the_user_and_system() -> None:
    dacl = private_dacl(USER)
    assert dacl == f"D:P(A;OICI;FA;;;{USER})(A;OICI;FA;;;SY)"
    assert exposure(dacl, USER) is None
    with pytest.raises(ValueError, match="not a SID"):
        private_dacl("Everyone")


@pytest.mark.parametrize(
    ("sddl", "found"),
    [
        # What a profile directory usually carries: private.
        (f"D:PAI(A;OICIID;FA;;;SY)(A;OICIID;FA;;;BA)(A;OICIID;FA;;;{USER})", None),
        # Everyone may read (a home made under C:\\Users\\Public, a share).
        (f"D:AI(A;;FA;;;{USER})(A;;FR;;;WD)", "readable by Everyone (WD)"),
        # Users may read and execute (0x1200a9), as under C:\\ProgramData.
        (f"D:(A;;FA;;;{USER})(A;OICI;0x1200a9;;;BU)", "readable by Users (BU)"),
        (f"D:(A;;FA;;;{USER})(A;;GA;;;{OTHER})", f"readable and writable by {OTHER}"),
        (f"D:(A;;FA;;;{USER})(A;;0x6;;;AU)", "writable by Authenticated Users (AU)"),
        # Inherit-only entries do not apply to the object itself; deny entries grant nothing.
        (f"D:(A;;FA;;;{USER})(A;OICIIO;FA;;;WD)(D;;FA;;;WD)", None),
        # Rights that let another user neither read nor write the data (read attributes).
        (f"D:(A;;FA;;;{USER})(A;;0x80;;;WD)", None),
        ("D:NO_ACCESS_CONTROL", "a NULL DACL: everyone has full access"),
        ("O:BAG:SY", "no DACL: everyone has full access"),
        (f"O:{USER}D:P(A;;FA;;;{USER})S:(AU;SA;FA;;;WD)", None),
    ],
)
def test_exposure_names_who_else_may_read_or_write(sddl: str, found: str | None) -> None:
    assert exposure(sddl, USER) == found


# --- retries through sharing violations (windows.replace) ------------------------------------


def _winerror(code: int) -> OSError:
    err = PermissionError(13, "The process cannot access the file")
    err.winerror = code  # type: ignore[attr-defined]  # what Windows sets on its OSErrors
    return err


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def test_a_sharing_violation_is_retried_until_the_other_handle_closes() -> None:
    clock = FakeClock()
    calls: list[int] = []

    def op() -> str:
        calls.append(1)
        if len(calls) < 4:
            raise _winerror(32)  # ERROR_SHARING_VIOLATION: a scanner holds the file
        return "replaced"

    assert retry_sharing(op, sleep=clock.sleep, clock=lambda: clock.now) == "replaced"
    assert len(calls) == 4
    assert clock.sleeps == [0.01, 0.02, 0.04]


def test_other_errors_are_raised_at_once_and_a_lasting_violation_after_the_deadline() -> None:
    clock = FakeClock()
    with pytest.raises(FileNotFoundError):
        retry_sharing(
            lambda: (_ for _ in ()).throw(FileNotFoundError(2, "gone")),
            sleep=clock.sleep,
            clock=lambda: clock.now,
        )
    assert clock.sleeps == []

    def held() -> None:
        raise _winerror(5)  # ERROR_ACCESS_DENIED: a handle without FILE_SHARE_DELETE

    with pytest.raises(PermissionError) as err:
        retry_sharing(held, timeout_s=2.0, sleep=clock.sleep, clock=lambda: clock.now)
    assert getattr(err.value, "winerror", None) in SHARING_ERRORS
    assert 2.0 <= clock.now < 2.0 + 0.2 + 1e-9  # gave up at the deadline, not before
    assert max(clock.sleeps) == 0.2


# --- which module runs, and /proc ------------------------------------------------------------

PROBE = """
import json, sys
from bastion import _platform
from bastion.supervisor import _platform as sup
print(json.dumps({
    "system": _platform.SYSTEM, "portable": _platform.PORTABLE,
    "file_copy": _platform.FILE_COPY, "fd_dirs": list(_platform.FD_DIRS),
    "copy_file_range": _platform.copy_file_range is not None,
    "sup_system": sup.SYSTEM, "auto": sup.AUTO_PARENT_DEATH,
    "modes": sorted(sup.PARENT_DEATH_MODES),
}))
"""


def _probe(env: dict[str, str]) -> dict[str, object]:
    out = subprocess.run(
        [sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, check=True
    ).stdout
    return dict(json.loads(out))


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the Linux modules")
def test_linux_gets_its_module_and_bastion_portable_the_macos_paths() -> None:
    native = _probe({})
    assert native == {
        "system": "linux",
        "portable": False,
        "file_copy": True,
        "fd_dirs": ["/proc/self/fd", "/dev/fd"],
        "copy_file_range": True,
        "sup_system": "linux",
        "auto": "pipe",  # the shim, a subreaper, also ends re-parented grandchildren (#22 §5)
        "modes": ["pdeathsig", "pipe"],
    }
    portable = _probe({"BASTION_PORTABLE": "1"})
    assert portable == {
        "system": "posix",
        "portable": True,
        "file_copy": False,  # backups copy through the SQLite backup API
        "fd_dirs": ["/dev/fd"],
        "copy_file_range": False,
        "sup_system": "posix",
        "auto": "pipe",
        "modes": ["pipe"],
    }


#: Modules that may read /proc: they are only imported on Linux.
LINUX_ONLY = {
    SRC / "_platform" / "linux.py",
    SRC / "supervisor" / "_platform" / "linux.py",
    # Imported by linux.py only (cgroup v2: /proc/self/mountinfo, /proc/<pid>/cgroup).
    SRC / "supervisor" / "_platform" / "cgroup.py",
}


def test_no_module_but_the_linux_ones_names_proc() -> None:
    offenders = []
    for path in SRC.rglob("*.py"):
        if path in LINUX_ONLY:
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if (
                isinstance(node, ast.Constant)
                and isinstance(node.value, str)
                and node.value.startswith("/proc")
                and node.value not in _DOCUMENTED
            ):
                offenders.append(f"{path.relative_to(SRC)}:{node.lineno}")
    assert offenders == []


#: Strings that mention /proc without reading it (none today).
_DOCUMENTED: frozenset[str] = frozenset()


WORKLOAD = """
import asyncio, os, sys
from pathlib import Path

READS = []

def hook(event, args):
    if event in ("open", "os.listdir", "os.scandir") and args and args[0] is not None:
        path = os.fsdecode(args[0]) if isinstance(args[0], (str, bytes)) else ""
        if path.startswith("/proc"):
            frame = sys._getframe(1)
            while frame is not None and "/bastion/" not in frame.f_code.co_filename.replace("\\\\", "/"):
                if "/psutil/" in frame.f_code.co_filename:
                    return  # psutil's own Linux implementation: documented, and portable
                frame = frame.f_back
            if frame is not None:
                READS.append(f"{path} from {frame.f_code.co_filename}:{frame.f_lineno}")

sys.addaudithook(hook)

from bastion.config import StoreConfig, SupervisorConfig
from bastion.store import Database
from bastion.store._locks import write_lock_holder
from bastion.store._rawread import read_head
from bastion.store.backup import create_backup
from bastion.supervisor import Supervisor
from bastion.supervisor.spec import parse_spec
from bastion.supervisor.states import ServiceState as S

root = Path(sys.argv[1])
db = Database.open(root / "bastion.db", StoreConfig(), name="bastion")
db.write(lambda tx: tx.execute("CREATE TABLE t (x)"))
db.write(lambda tx: tx.execute("INSERT INTO t VALUES (1)"))
read_head(root / "bastion.db", 100)
write_lock_holder(root / "bastion.db")
method = create_backup(db, root / "backups").manifest["method"]

async def run():
    spec = parse_spec("kid", {"argv": [sys.executable, "-c", "import time; time.sleep(30)"]})
    sup = Supervisor(db, [spec], config=SupervisorConfig())
    await sup.open()
    await sup.start("kid")
    await sup.wait_state("kid", S.RUNNING)
    await sup.stop("kid")
    await sup.close()

asyncio.run(run())
db.close()
print(method)
print("\\n".join(READS))
"""


@pytest.mark.posix
def test_with_the_portable_paths_forced_bastion_reads_nothing_under_proc(tmp_path: Path) -> None:
    """What macOS would run (BASTION_PORTABLE=1): a store open, writes, a raw header read, a
    lock-holder lookup, a backup and a supervised child. An audit hook records every open
    or listing of /proc whose caller is bastion's code (psutil's own reads excepted)."""
    out = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(WORKLOAD), str(tmp_path)],
        env={"BASTION_PORTABLE": "1", "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout.splitlines()
    assert out[0] == "backup-api"
    assert [line for line in out[1:] if line] == []


@pytest.mark.posix
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="compares with the Linux paths")
def test_the_audit_hook_sees_the_linux_paths_read_proc(tmp_path: Path) -> None:
    """The check above can fail: on the Linux paths the same workload does read /proc."""
    out = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(WORKLOAD), str(tmp_path)],
        env={"PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout.splitlines()
    assert out[0] == "file"
    assert any("/proc/self/fd" in line for line in out[1:])


def test_every_platform_module_offers_the_same_interface() -> None:
    names = set(_platform.__all__) - {"FILE_COPY", "PORTABLE", "SYSTEM"}
    for name in ("posix", "linux", "windows"):
        text = (SRC / "_platform" / f"{name}.py").read_text(encoding="utf-8")
        tree = ast.parse(text)
        exported = next(
            node.value
            for node in tree.body
            if isinstance(node, ast.Assign)
            and any(isinstance(t, ast.Name) and t.id == "__all__" for t in node.targets)
        )
        assert isinstance(exported, ast.List)
        assert {ast.literal_eval(e) for e in exported.elts} == names, name


@pytest.mark.skipif(_platform.SYSTEM != "linux", reason="F_GETLK's struct flock is Linux's here")
def test_locked_elsewhere_sees_another_process_lock_and_never_our_own(tmp_path: Path) -> None:
    import fcntl

    path = tmp_path / "f"
    path.write_bytes(b"\0" * 256)
    fd = os.open(path, os.O_RDWR)
    try:
        fcntl.lockf(fd, fcntl.LOCK_SH | fcntl.LOCK_NB, 1, 128)  # ours: never reported
        assert _platform.locked_elsewhere(fd, 128) is False
        holder = subprocess.Popen(
            [sys.executable, "-c", _HOLD_A_BYTE, str(path)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert holder.stdout is not None
        assert holder.stdin is not None
        try:
            assert holder.stdout.readline().strip() == "held"
            assert _platform.locked_elsewhere(fd, 128) is True
            assert _platform.locked_elsewhere(fd, 127) is False  # another byte
        finally:
            holder.stdin.close()
            holder.wait(timeout=60)
            holder.stdout.close()
        assert _platform.locked_elsewhere(fd, 128) is False  # gone with its process
    finally:
        os.close(fd)


_HOLD_A_BYTE = """
import fcntl, os, sys
fd = os.open(sys.argv[1], os.O_RDWR)
fcntl.lockf(fd, fcntl.LOCK_SH | fcntl.LOCK_NB, 1, 128)
print("held", flush=True)
sys.stdin.read()
"""
