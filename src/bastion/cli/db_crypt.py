"""``bastion db encrypt|decrypt|rekey``: convert the home's databases, crash-safe.

Each database (``bastion.db`` and ``vault.db`` by default, those that exist) goes through
:func:`bastion.store.crypt.convert.convert`: a verified backup first, then an exclusive lock,
a keyed copy beside the file, its verification, and one atomic rename. The daemon must not
be running (``--stop-daemon`` stops it), and no other process may have a file open.

The configuration comes first: ``encrypt`` and ``rekey`` need ``store.encryption =
"required"``, ``decrypt`` needs ``"off"``, so that after the command every open expects what
is on disk. The key is the configured one (``store.key_source``); ``rekey`` makes a new one
(keychain), reads it from ``BASTION_DB_NEW_KEY`` (env) or asks for a new passphrase.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from bastion.cli._output import config_from, emit, json_option, require_home, run_command

if TYPE_CHECKING:
    from bastion.config import Config
    from bastion.store.crypt.key import DatabaseKey
    from bastion.vault.dbkey import DatabaseKeySource

_DB_HELP = "A database to convert: bastion, vault, or NAME (repeatable; default: bastion, vault)."


_DB = click.option("--db", "db_names", multiple=True, metavar="NAME", help=_DB_HELP)
_YES = click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
_STOP = click.option("--stop-daemon", is_flag=True, help="Stop a running daemon first.")


@click.command()
@_DB
@_YES
@_STOP
@json_option
@click.pass_context
@run_command
def encrypt(
    ctx: click.Context, *, db_names: tuple[str, ...], yes: bool, stop_daemon: bool, as_json: bool
) -> None:
    """Encrypt plaintext databases with the configured key (store.key_source).

    A verified backup of each is taken first; then the database is copied encrypted,
    verified and swapped in by one rename. Needs store.encryption = "required"."""
    _run(ctx, "encrypt", db_names, yes=yes, stop_daemon=stop_daemon, as_json=as_json)


@click.command()
@_DB
@_YES
@_STOP
@json_option
@click.pass_context
@run_command
def decrypt(
    ctx: click.Context, *, db_names: tuple[str, ...], yes: bool, stop_daemon: bool, as_json: bool
) -> None:
    """Decrypt encrypted databases back to plaintext files (store.encryption = "off").

    A verified (still encrypted) backup of each is taken first."""
    _run(ctx, "decrypt", db_names, yes=yes, stop_daemon=stop_daemon, as_json=as_json)


@click.command()
@_DB
@_YES
@_STOP
@click.option(
    "--new-key-env",
    default="BASTION_DB_NEW_KEY",
    show_default=True,
    help="With store.key_source = env: the variable holding the new base64 key.",
)
@json_option
@click.pass_context
@run_command
def rekey(
    ctx: click.Context,
    *,
    db_names: tuple[str, ...],
    yes: bool,
    stop_daemon: bool,
    as_json: bool,
    new_key_env: str,
) -> None:
    """Re-encrypt databases under a new key.

    keychain: a new random key, kept in the keychain before anything is converted (with the
    keys before it, so older backups still restore). env: the new key from --new-key-env;
    set BASTION_DB_KEY to it afterwards. passphrase: a new passphrase, asked for twice (or
    BASTION_DB_NEW_PASSPHRASE). Backups made before the rekey keep the old key."""
    _run(
        ctx,
        "rekey",
        db_names,
        yes=yes,
        stop_daemon=stop_daemon,
        as_json=as_json,
        new_key_env=new_key_env,
    )


def _run(
    ctx: click.Context,
    operation: str,
    db_names: tuple[str, ...],
    *,
    yes: bool,
    stop_daemon: bool,
    as_json: bool,
    new_key_env: str = "BASTION_DB_NEW_KEY",
) -> None:
    from bastion.cli._hold import keep_daemon_out, refuse_if_open
    from bastion.cli.db_ops import _db_path, _holders
    from bastion.errors import ConfigError, RestoreRefused
    from bastion.store.crypt.cipher import FileKind, file_kind, require_cipher
    from bastion.store.crypt.convert import convert
    from bastion.vault.dbkey import DatabaseKeySource

    cfg = config_from(ctx)
    require_home(cfg)
    require_cipher()
    wanted = "off" if operation == "decrypt" else "required"
    if cfg.store.encryption != wanted:
        raise ConfigError(
            f"`bastion db {operation}` needs store.encryption = {wanted!r} (it is "
            f"{cfg.store.encryption!r}): set it first, so that every open afterwards expects "
            "what is on disk",
            hint=f'Set `encryption = "{wanted}"` under [store] in {cfg.home / "bastion.toml"} '
            f"(or BASTION_STORE_ENCRYPTION={wanted}), then run this again.",
            key="store.encryption",
        )
    names = list(db_names) or [n for n in ("bastion", "vault") if _db_path(cfg, n).exists()]
    paths = {name: _db_path(cfg, name) for name in names}
    for name, path in paths.items():
        if not path.exists():
            raise ConfigError(f"there is no database {name!r} in {cfg.home} ({path.name})")
    plan = []
    for name, path in paths.items():
        kind = file_kind(path)
        if operation == "encrypt" and kind is FileKind.ENCRYPTED:
            continue  # already encrypted: nothing to do
        if operation == "decrypt" and kind is FileKind.PLAIN:
            continue
        plan.append((name, path))
    stopped = _stop_or_refuse(cfg, stop_daemon) if plan else None
    if plan:  # no daemon may start on the files being replaced (cli/_hold.py)
        keep_daemon_out(ctx, cfg, f"db {operation}")
    for _name, path in plan:
        holders = _holders(path)
        if holders:
            raise RestoreRefused(
                f"{path.name} is open in other processes: "
                + ", ".join(f"{prog} (pid {pid})" for pid, prog in holders),
                hint="Close those programs and retry; nothing was changed.",
            )
    if plan and not yes and not as_json:
        from bastion.cli._ask import confirm

        confirm(
            f"{operation.capitalize()} {', '.join(p.name for _n, p in plan)} (a verified backup "
            "of each is taken first)?",
        )
        for _name, path in plan:
            refuse_if_open(path)  # opened while the prompt waited
    source = DatabaseKeySource(cfg, passphrase=_passphrase(cfg, "database passphrase"))
    new_for_all = _new_key(cfg, source, operation, new_key_env) if plan else None
    results = []
    for name, path in plan:
        old = None if operation == "encrypt" else source.current(path)
        new: DatabaseKey | None
        if operation == "decrypt":
            new = None
        elif operation == "encrypt":
            new = source.current(None, create=True)
        else:
            new = (
                new_for_all
                if new_for_all is not None
                else source.new_key_like(passphrase=_new_passphrase(cfg))
            )
        result = convert(
            path, old_key=old, new_key=new, backups_dir=cfg.backups_dir, config=cfg.store, name=name
        )
        results.append({"db": name, **result.to_dict()})
    data: dict[str, Any] = {
        "operation": operation,
        "converted": results,
        "unchanged": [n for n in names if n not in {r["db"] for r in results}],
        "stopped_daemon": stopped,
        "plaintext_backups": _plaintext_backups(cfg) if operation != "decrypt" else [],
    }
    emit(data, as_json, _render)


def _render(d: dict[str, Any]) -> str:
    lines = [
        f"{Path(r['path']).name}: {r['before']} -> {r['after']} "
        f"({sum(r['row_counts'].values())} rows, verified)\n  backup first: {r['backup']}"
        for r in d["converted"]
    ]
    lines += [
        f"{n}: already {'plaintext' if d['operation'] == 'decrypt' else 'encrypted'}"
        for n in d["unchanged"]
        if d["operation"] != "rekey"
    ]
    if d["plaintext_backups"]:
        lines.append(
            f"note: {len(d['plaintext_backups'])} backup(s) in backups/ were made before "
            "encryption and hold plaintext; delete them once you no longer need them:"
        )
        lines += [f"  {p}" for p in d["plaintext_backups"]]
    return "\n".join(lines) or "nothing to do"


def _stop_or_refuse(cfg: Config, stop_daemon: bool) -> int | None:
    from bastion.cli.db_ops import _stop_daemon
    from bastion.errors import RestoreRefused
    from bastion.runfiles import running_daemon

    handshake = running_daemon(cfg.run_dir)
    if handshake is None:
        return None
    if not stop_daemon:
        raise RestoreRefused(
            f"the daemon (pid {handshake.pid}) has the databases open",
            hint="Stop it first (`bastion stop`), or pass --stop-daemon.",
        )
    return _stop_daemon(cfg)


def _passphrase(cfg: Config, what: str) -> str | None:
    """The passphrase from a prompt, when the source wants one, its variable is unset and
    there is a terminal (else None: the source reads the variable, or says it is missing)."""
    if cfg.store.key_source != "passphrase" or os.environ.get(cfg.store.passphrase_env):
        return None
    if not sys.stdin.isatty():
        return None
    text: str = click.prompt(what, hide_input=True, err=True)
    return text


def _new_passphrase(cfg: Config) -> str:
    from bastion.errors import DatabaseKeyMissing

    text = os.environ.get("BASTION_DB_NEW_PASSPHRASE")
    if text:
        return text
    if not sys.stdin.isatty():
        raise DatabaseKeyMissing(
            "a new passphrase is needed (BASTION_DB_NEW_PASSPHRASE is not set, no terminal)",
            hint="Set BASTION_DB_NEW_PASSPHRASE, or run it on a terminal to be asked.",
        )
    new: str = click.prompt(
        "new database passphrase", hide_input=True, confirmation_prompt=True, err=True
    )
    return new


def _new_key(
    cfg: Config, source: DatabaseKeySource, operation: str, variable: str
) -> DatabaseKey | None:
    """For ``rekey``: the one new key of every database (keychain, env); None otherwise."""
    from bastion.errors import DatabaseKeyMissing
    from bastion.store.crypt.key import DatabaseKey
    from bastion.vault.crypto import decode_key

    if operation != "rekey" or cfg.store.key_source == "passphrase":
        return None
    if cfg.store.key_source == "env":
        text = os.environ.get(variable)
        if not text:
            raise DatabaseKeyMissing(
                f"the new database key is not available ({variable} is not set)",
                hint=f'export {variable}="$(head -c 32 /dev/urandom | base64)", run the rekey, '
                f"then set {cfg.store.key_env} to that key.",
            )
        try:
            return DatabaseKey(decode_key(text, what=variable), source=f"variable {variable}")
        except ValueError as err:
            raise DatabaseKeyMissing(f"the new key in {variable} is unusable: {err}") from err
    new = source.new_key_like()
    # Kept before anything is converted: a rekey cut short still opens (every kept key is
    # tried), and the backups of the old key keep theirs.
    source.push_keychain_key(new)
    return new


def _plaintext_backups(cfg: Config) -> list[str]:
    """Backups in backups/ with no encryption in their manifest (made before `encrypt`)."""
    from bastion.store.backup import backup_key_id, list_backups

    return [
        str(info.path)
        for info in list_backups(cfg.backups_dir)
        if info.manifest is not None and backup_key_id(info.manifest) is None
    ]
