"""``bastion doctor``: one read-only report on a home, and a bug-report bundle that holds no
secret.

The report covers posture (pragmas as read back), versions, migration state per namespace,
``integrity_check`` and ``foreign_key_check`` of each database, the vault (backend, index,
consistency when the backend is reachable), the plaintext copies imports kept that are still
on disk (each one a problem), services and the daemon, backups, disk space, and
the mode of every file and directory in the home (0600/0700 expected; anything readable or
writable by group or others is flagged).

The bundle (``--bundle FILE``) is a zip of that report plus a file listing and the database
schema (DDL only: no row of any table is ever read into it). Before it is written, every
byte is scanned for the secrets this process can know (the API token, the vault key and
passphrase variables, and every ``secret``-looking environment value given to it); a hit is
replaced by ``[REDACTED]`` and the bundle is scanned again after writing. A secret value
therefore cannot leave in a bundle by accident, even if a future report field carried one.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import io
import json
import os
import platform
import shutil
import stat
import sys
import zipfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from bastion.__about__ import __version__
from bastion._fs import atomic_write
from bastion.config import Config
from bastion.errors import BastionError, ConfigError, StoreError

__all__ = [
    "collect_secret_values",
    "file_modes",
    "fix_modes",
    "home_mode_problem",
    "newest_verified_backup_age",
    "run_doctor",
    "write_bundle",
]

_REDACTED = "[REDACTED]"
_SECRETISH = ("KEY", "TOKEN", "SECRET", "PASSWORD", "PASSPHRASE", "CREDENTIAL")


#: Files the user writes by hand (an editor makes them 0644): config, not data. Readable by
#: others is a warning (they hold no secret values: credential-looking settings and env are
#: refused, secrets are ``secret:`` references); writable by others is a problem (anyone
#: could change a service's argv).
def _user_written(rel: Path) -> bool:
    return rel == Path("bastion.toml") or (
        len(rel.parts) == 2 and rel.parts[0] == "services" and rel.suffix == ".toml"
    )


def file_modes(home: Path) -> dict[str, Any]:
    """Every file and directory under ``home`` with its mode. Anything bastion writes looser
    than 0600/0700 is ``flagged`` (a problem); a hand-written config file (``bastion.toml``,
    ``services/*.toml``) readable by others is a ``warning``, writable by others flagged."""
    entries: list[dict[str, Any]] = []
    flagged: list[str] = []
    warnings: list[str] = []
    if not home.exists():
        return {"entries": [], "flagged": [], "warnings": []}
    for root, dirs, files in os.walk(home):
        for name in [*dirs, *files]:
            path = Path(root) / name
            try:
                info = path.lstat()
            except FileNotFoundError:
                continue  # removed while walking (a -shm, a temp file)
            rel = path.relative_to(home)
            if stat.S_ISLNK(info.st_mode):
                entries.append({"path": str(rel), "mode": "symlink"})
                flagged.append(f"{path}: a symlink inside the home")
                continue
            mode = stat.S_IMODE(info.st_mode)
            is_dir = stat.S_ISDIR(info.st_mode)
            loose = bool(mode & 0o077)
            entries.append(
                {
                    "path": str(rel) + ("/" if is_dir else ""),
                    "mode": f"{mode:04o}",
                    "bytes": None if is_dir else info.st_size,
                    "ok": not loose,
                }
            )
            if not loose:
                continue
            want = "0700" if is_dir else "0600"
            text = f"{path}: mode {mode:04o}, expected {want} (chmod {want[1:]} {path}, or `bastion doctor --fix`)"
            if not is_dir and _user_written(rel) and not mode & 0o022:
                warnings.append(text)
            else:
                flagged.append(text)
    loose_home = home_mode_problem(home)
    if loose_home is not None:
        flagged.insert(0, loose_home)
    return {"entries": entries, "flagged": flagged, "warnings": warnings}


def home_mode_problem(home: Path) -> str | None:
    """What is wrong with the home folder's own mode, with the fix, or None when it is 0700
    (or stricter). ``init`` says it of an existing folder it was pointed at; ``doctor`` flags
    it."""
    mode = stat.S_IMODE(home.stat().st_mode)
    if not mode & 0o077:
        return None
    return (
        f"{home}: mode {mode:04o}, expected 0700: other users can "
        f"{'write in' if mode & 0o022 else 'list'} it (chmod 700 {home}, or `bastion doctor --fix`)"
    )


def fix_modes(home: Path) -> list[str]:
    """``doctor --fix``: remove group and other permissions from everything in ``home`` (the
    home included; symlinks aside), so files end 0600 and directories 0700 as bastion writes
    them. Returns one line per change. Changes modes only."""
    changed: list[str] = []
    if not home.is_dir():
        return changed
    paths = [home]
    for root, dirs, files in os.walk(home):
        paths += [Path(root) / n for n in [*dirs, *files]]
    for path in paths:
        try:
            info = path.lstat()
        except FileNotFoundError:
            continue
        if stat.S_ISLNK(info.st_mode):
            continue
        mode = stat.S_IMODE(info.st_mode)
        if mode & 0o077:
            # Drop every group/other bit and keep the owner's (0644 -> 0600, 0755 -> 0700).
            os.chmod(path, mode & ~0o077)
            changed.append(f"{path}: {mode:04o} -> {stat.S_IMODE(path.stat().st_mode):04o}")
    return changed


def _database_report(cfg: Config, path: Path, name: str, *, full: bool) -> dict[str, Any]:
    from bastion._home import expects, missing_error
    from bastion.store import Database
    from bastion.store.recovery import open_check
    from bastion.store.stats import check_database, db_stats

    out: dict[str, Any] = {"path": str(path), "exists": path.exists()}
    if not path.exists():
        missing = missing_error(cfg.home, name, path)
        if missing is not None:
            out["problem"] = f"{missing.message}. {missing.hint}"
        return out
    # Before anything opens the file: a damaged database is when this matters most.
    out["newest_verified_backup"] = newest_verified_backup_age(cfg, path, name, deep=full)
    from bastion.store.crypt.cipher import ALGORITHM

    key = _database_key(cfg, path)
    check = open_check(
        path,
        cfg.store,
        backups_dir=cfg.backups_dir,
        db_name=name,
        expected=expects(cfg.home, name),
        key=key,
    )
    out["encryption"] = {"cipher": ALGORITHM, "key_id": key.key_id} if key is not None else None
    out["open_check"] = check.to_dict()
    if check.fault is not None:
        # The disk refuses (full, read-only, permissions): named as such, never as damage.
        out["fault"] = check.fault.to_dict()
    if not check.ok:
        if check.damaged:
            out["problem"] = (
                f"damaged ({check.kind.value}): {check.detail}; `bastion db recover"
                + ("" if name == "bastion" else f" --db {name}")
                + "` restores the newest verified backup"
            )
        elif check.kind.value == "key":
            fault = check.error()
            out["problem"] = f"the database key does not fit: {fault.message}. {fault.hint}"
        else:
            fault = check.error()
            out["problem"] = f"the disk refused the check: {fault.message}. {fault.hint}"
        return out
    if check.fault is not None:
        out["problem"] = (
            f"readable, but the disk refuses writes: {check.fault.message}. {check.fault.hint}"
        )
    try:
        with Database.open_for_reading(path, cfg.store, name=name, key=key) as db:
            out["read_only"] = db.readonly
            out["posture"] = dataclasses.asdict(db.posture)
            out["check"] = check_database(db, full=full)
            stats = db_stats(db, backups_dir=cfg.backups_dir, run_dir=cfg.run_dir)
            out["stats"] = {
                k: stats[k]
                for k in ("file_bytes", "wal_bytes", "page_count", "freelist_count", "auto_vacuum")
            }
            out["tables"] = {t: v["rows"] for t, v in stats["tables"].items()}
            out["last_backup"] = stats["last_backup"]
            out["last_scheduled_backup"] = stats["last_scheduled_backup"]
            out["migrations"] = _migrations(db)
            out["schema"] = [
                str(r[0]) for r in db.query("SELECT sql FROM sqlite_schema WHERE sql IS NOT NULL")
            ]
    except BastionError as err:
        out["problem"] = err.message
    return out


def newest_verified_backup_age(
    cfg: Config, path: Path, name: str, *, deep: bool = True
) -> dict[str, Any] | None:
    """The newest verified backup of database ``name``: file, when, age in seconds, and
    whether the database changed since it was taken. ``deep`` re-hashes and re-checks it
    (``quick_check``) before trusting it; otherwise the manifest and size must match.
    Read-only; None when there is no verified backup."""
    from bastion.store.backup import SourceState, list_backups, read_source_state
    from bastion.store.backup import newest_verified_backup as newest

    key = _database_key(cfg, path)
    if deep:
        info = newest(cfg.backups_dir, name, key=key)
    else:
        info = next((b for b in list_backups(cfg.backups_dir, name, key=key) if b.verified), None)
    if info is None:
        return None
    changed: bool | None = None
    try:
        taken = SourceState.from_dict((info.manifest or {})["source_state"])
        changed = not read_source_state(path).same_data_as(taken)
    except (KeyError, TypeError):
        pass  # a manifest without the source's position: unknown
    return {
        "path": str(info.path),
        "created_at": info.created_at.isoformat(),
        "age_s": round(info.age_s(), 1),
        "deep_verified": deep,
        "changed_since": changed,
    }


def _age(seconds: float) -> str:
    for size, unit in ((86400, "d"), (3600, "h"), (60, "min")):
        if seconds >= size:
            return f"{seconds / size:.1f} {unit}"
    return f"{seconds:.0f} s"


def _migrations(db: Any) -> Any:
    try:
        rows = db.query(
            "SELECT namespace, count(*), max(applied_at) FROM schema_migrations "
            "GROUP BY namespace ORDER BY namespace"
        )
        last = {
            str(ns): str(mid)
            for ns, mid in db.query(
                "SELECT namespace, id FROM schema_migrations s WHERE applied_at = "
                "(SELECT max(applied_at) FROM schema_migrations WHERE namespace = s.namespace)"
            )
        }
    except StoreError:
        return {}
    return {
        str(ns): {
            "applied": int(n),
            "last": last.get(str(ns)),
            "last_applied_at": dt.datetime.fromtimestamp(float(at), dt.UTC).isoformat(),
        }
        for ns, n, at in rows
    }


def _vault_report(cfg: Config) -> dict[str, Any]:
    out: dict[str, Any] = {"backend": cfg.vault.backend, "index": str(cfg.vault_db_path)}
    if not cfg.vault_db_path.exists():
        out["state"] = "no vault yet"
        return out
    try:
        from bastion.vault import Vault

        vault = Vault.open(cfg)
    except (ImportError, BastionError) as err:
        out["state"] = f"unavailable: {getattr(err, 'message', err)}"
        hint = getattr(err, "hint", None)
        if hint:
            out["hint"] = hint
        indexed = _secrets_indexed(cfg)
        if indexed is not None:
            out["secrets_indexed"] = indexed
        return out
    try:
        # Which backend is active and why (e.g. "vault.backend = keychain in bastion.toml"),
        # and whether it answers; never raises.
        out["active"] = vault.backend_info()
        out["secrets_indexed"] = len(vault.list())
        try:
            rec = vault.reconcile(fix=False, actor="doctor")
            # Names only: reconcile reports keys, never values.
            out["consistency"] = {
                k: (len(v) if isinstance(v, list | tuple | set | dict) else v)
                for k, v in rec.items()
            }
        except BastionError as err:
            out["consistency"] = f"not checked: {err.message}"
    finally:
        vault.close()
    return out


def _secrets_indexed(cfg: Config) -> int | None:
    """How many secrets ``vault.db`` records, read from it alone (no backend, no rules, no
    migration; read-only): whether a vault that cannot be opened holds secrets. None when
    ``vault.db`` cannot be read either (the database section says why)."""
    from bastion.store import Database
    from bastion.vault.index import Index

    try:
        key = _database_key(cfg, cfg.vault_db_path)
        with Database.open(cfg.vault_db_path, cfg.store, name="vault", create=False, key=key) as db:
            return Index(db).count()
    except BastionError:
        return None


def _vault_problem(vault: dict[str, Any]) -> str | None:
    """What is wrong with the vault's backend, with its fix, or None when it answers. The
    report's own lines only said "does not answer"; the reason and the hint are the vault's
    error (``Vault.backend_info``), or the one ``Vault.open`` raised."""
    state = str(vault.get("state") or "")
    if state.startswith("unavailable"):
        said = f"vault: {state}"
        if vault.get("secrets_indexed") == 0:
            said += "; no secret is stored yet, and none can be until it opens"
        return said + (f". {vault['hint']}" if vault.get("hint") else "")
    active = vault.get("active") or {}
    if not active or active.get("available"):
        return None
    error = active.get("error") or {}
    said = f"vault: the {active.get('backend')} backend does not answer: {error.get('message')}"
    if not vault.get("secrets_indexed"):
        said += "; no secret is stored yet, and none can be until it does"
    return said + (f". {error['hint']}" if error.get("hint") else "")


def _plaintext_backups(cfg: Config) -> list[dict[str, Any]]:
    """The copies imports kept that are still on disk (from vault.db alone: no backend)."""
    if not cfg.vault_db_path.exists():
        return []
    from bastion.store import Database
    from bastion.vault.plaintext_backups import recorded

    try:
        # An encrypted vault.db is read with the database key (without it, the database
        # section says the key is missing; the copies were reported as none before).
        key = _database_key(cfg, cfg.vault_db_path)
        with Database.open(cfg.vault_db_path, cfg.store, name="vault", create=False, key=key) as db:
            return [b.to_dict() for b in recorded(db)]
    except BastionError:
        return []  # the database section reports why vault.db cannot be read


def _services_report(cfg: Config) -> dict[str, Any]:
    from bastion.runfiles import read_handshake, running_daemon

    specs = (
        sorted(p.stem for p in cfg.services_dir.glob("*.toml")) if cfg.services_dir.is_dir() else []
    )
    handshake = read_handshake(cfg.run_dir) if cfg.run_dir.is_dir() else None
    daemon: dict[str, Any] = {"running": False}
    if handshake is not None:
        daemon = {
            # Its process alive and listening on its port: a file a killed daemon left,
            # naming a pid now another program's, is not a running daemon.
            "running": running_daemon(cfg.run_dir) == handshake,
            "pid": handshake.pid,
            "port": handshake.port,
            "started_at": handshake.started_at,
            "version": handshake.version,
        }
    return {"specs": specs, "daemon": daemon, "containment": _containment(cfg)}


def _containment(cfg: Config) -> str:
    """What contains a service's processes on this machine: a cgroup v2 of its own where
    this process's cgroup is writable (Linux), else the process group and the shim, and
    why. Leaves no cgroup behind (a running daemon's is left as it is)."""
    from bastion.supervisor import _platform as plat

    if cfg.supervisor.cgroups == "off":
        return plat.Cgroups(None, "[supervisor] cgroups = 'off'").describe()
    return plat.discover_cgroups(plat.home_tag(cfg.db_path), keep=False).describe()


def run_doctor(
    cfg: Config, *, full_check: bool = True, config_problem: ConfigError | None = None
) -> dict[str, Any]:
    """The whole report as JSON-ready data, with ``problems`` summarizing what needs action.

    Read-only on the databases (the check runs on read connections); it records nothing.
    ``config_problem``: why ``bastion.toml`` did not load (``cfg`` is then the config without
    it: :func:`bastion.config.load_config_past_file`), the first problem listed.
    """
    from bastion.store.backup import list_backups

    report: dict[str, Any] = {
        "generated_at": dt.datetime.now(dt.UTC).isoformat(),
        "home": str(cfg.home),
        "versions": {
            "bastion": __version__,
            "python": sys.version.split()[0],
            "platform": platform.platform(),
        },
    }
    problems: list[str] = []
    warnings: list[str] = []
    if config_problem is not None:
        report["config"] = {"problem": config_problem.to_dict()}
        hint = config_problem.hint or ""
        if "config rollback" not in hint:
            hint += " A recorded version goes back with `bastion config rollback ID` (ids from "
            hint += "`bastion config history`)."
        problems.append(
            f"{config_problem.message}; the rest of this report reads the home as if it were "
            f"not there. {hint.strip()}"
        )
    if not cfg.home.exists():
        report["problems"] = [f"{cfg.home} does not exist; run `bastion init`"]
        return report
    dbs = {
        "bastion": _database_report(cfg, cfg.db_path, "bastion", full=full_check),
        "vault": _database_report(cfg, cfg.vault_db_path, "vault", full=full_check),
    }
    report["databases"] = dbs
    for name, d in dbs.items():
        if "posture" in d:
            report["versions"].setdefault("sqlite", d["posture"]["sqlite_version"])
        if d.get("problem"):
            problems.append(f"{name}: {d['problem']}")
        chk = d.get("check")
        if chk and not chk["ok"]:
            problems.append(
                f"{name}: integrity {'ok' if chk['integrity_ok'] else 'FAILED'}, "
                f"{chk['foreign_key_violation_count']} foreign key violations"
                + (
                    f" (only full-text indexes: `bastion db reindex --db {name}` rebuilds them)"
                    if chk.get("repair") == "reindex"
                    else ""
                )
            )
        last = d.get("last_scheduled_backup")
        if last and not last.get("ok"):
            problems.append(f"{name}: last scheduled backup failed: {last['error']['message']}")
        if d.get("exists") and not d.get("newest_verified_backup"):
            problems.append(
                f"{name}: no verified backup (`bastion db backup --db {name}`; the daemon and "
                "Home.start_maintenance() back it up on a schedule)"
            )
        newest = d.get("newest_verified_backup")
        interval = cfg.backup.interval_s
        if newest and newest["changed_since"] and interval and newest["age_s"] > 2 * interval:
            warnings.append(
                f"{name}: the newest verified backup is {_age(newest['age_s'])} old and the "
                f"database changed since; scheduled backups run every {_age(interval)} where "
                "a daemon or Home.start_maintenance() runs"
            )
    report["vault"] = _vault_report(cfg)
    said = _vault_problem(report["vault"])
    if said is not None:
        # Secrets on record that cannot be read stop the services that use them; with none
        # stored yet, nothing fails until the first one is set (the default backend on a
        # machine with no keychain): said, not counted. A vault that cannot be opened at all
        # (a bad vault.rules entry) counts its secrets from vault.db alone; when that cannot
        # be read either, the database section reports it.
        (problems if report["vault"].get("secrets_indexed") else warnings).append(said)
    report["plaintext_backups"] = _plaintext_backups(cfg)
    for copy in report["plaintext_backups"]:
        problems.append(
            f"{copy['path']}: a plaintext copy of {copy['source']} kept by an import; delete "
            "it once the import is checked (`bastion secrets import --purge-backups`)"
        )
    report["services"] = _services_report(cfg)
    backups = list_backups(cfg.backups_dir, key=_database_key(cfg, cfg.db_path))
    report["backups"] = {
        "count": len(backups),
        # A backup only another key opens (made before a `db rekey`) is not damaged.
        "damaged": [str(b.path) for b in backups if not b.verified and not b.key_problem],
        "other_key": [str(b.path) for b in backups if b.key_problem],
        "newest": backups[0].to_dict() if backups else None,
    }
    if report["backups"]["damaged"]:
        problems.append(f"{len(report['backups']['damaged'])} backup(s) fail verification")
    usage = shutil.disk_usage(cfg.home)
    db_bytes = sum(d.get("stats", {}).get("file_bytes", 0) for d in dbs.values())
    report["disk"] = {"free_bytes": usage.free, "total_bytes": usage.total, "db_bytes": db_bytes}
    if usage.free < 2 * db_bytes + 64 * 1024 * 1024:
        problems.append(
            f"low disk space: {usage.free} bytes free; a backup or VACUUM needs about "
            f"{2 * db_bytes} more"
        )
    modes = file_modes(cfg.home)
    report["files"] = modes
    problems.extend(modes["flagged"])
    report["warnings"] = [*warnings, *modes["warnings"]]
    report["problems"] = problems
    return report


def collect_secret_values(cfg: Config, env: Mapping[str, str] | None = None) -> list[str]:
    """Secret values this process can know, to scrub from a bundle: the API token, the vault
    key/passphrase variables, and every environment value whose name looks secret."""
    environ = os.environ if env is None else env
    values: set[str] = set()
    token = cfg.run_dir / "token"
    try:
        text = token.read_text(encoding="utf-8").strip()
        if text:
            values.add(text)
    except OSError:
        pass
    for name in (cfg.vault.key_env, cfg.vault.passphrase_env):
        if environ.get(name):
            values.add(environ[name])
    for name, value in environ.items():
        if any(word in name.upper() for word in _SECRETISH) and len(value) >= 8:
            values.add(value)
    return sorted(values, key=len, reverse=True)


def _scrub(text: str, secrets: Iterable[str]) -> tuple[str, int]:
    hits = 0
    for value in secrets:
        if value and value in text:
            hits += text.count(value)
            text = text.replace(value, _REDACTED)
    return text, hits


def write_bundle(
    cfg: Config,
    report: Mapping[str, Any],
    dest: Path,
    *,
    env: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """Write ``report`` as a zip for a bug report; returns what was written and redacted.

    Members: ``doctor.json`` (the report), ``files.txt`` (names, sizes, modes), ``config.json``
    (the effective settings, which hold names of variables, never their values).
    """
    secrets = collect_secret_values(cfg, env)
    config_data = {
        section: dataclasses.asdict(getattr(cfg, section))
        for section in ("store", "vault", "supervisor", "api", "backup", "retention")
    }
    files = "\n".join(
        f"{e['mode']:>7}  {e.get('bytes') if e.get('bytes') is not None else '-':>12}  {e['path']}"
        for e in report.get("files", {}).get("entries", [])
    )
    members = {
        "doctor.json": json.dumps(report, indent=2, sort_keys=True, default=str),
        "files.txt": files + "\n",
        "config.json": json.dumps(config_data, indent=2, sort_keys=True, default=str),
    }
    redactions = 0
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, text in members.items():
            clean, hits = _scrub(text, secrets)
            redactions += hits
            zf.writestr(name, clean)
    payload = buffer.getvalue()
    _assert_clean(payload, secrets)
    atomic_write(dest, payload)
    return {"bundle": str(dest), "members": sorted(members), "redactions": redactions}


def _assert_clean(payload: bytes, secrets: Iterable[str]) -> None:
    """Scan every member, decompressed, once more; refuse to write if a secret survived."""
    with zipfile.ZipFile(io.BytesIO(payload)) as zf:
        for info in zf.infolist():
            data = zf.read(info)
            for value in secrets:
                if value.encode() in data:
                    raise BastionError(
                        f"bundle member {info.filename} still contains a secret; not written",
                        hint="This is a bug in bastion doctor; please report it without the bundle.",
                    )


def _database_key(cfg: Config, path: Path) -> Any:
    """The key ``path`` is opened with (None: plaintext, or no usable key: the database's
    own check reports that as a key problem)."""
    from bastion.app import database_key
    from bastion.errors import StoreKeyError

    try:
        return database_key(cfg, path)
    except StoreKeyError:
        return None
