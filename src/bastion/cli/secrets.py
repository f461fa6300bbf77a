"""``bastion secrets …``: the vault from the command line.

Values never come from argv (other users can read a process's arguments): ``set`` reads stdin
or prompts without echo, after the name and scope are checked, and refuses an empty value.
``get`` shows metadata and a mask unless ``--reveal`` (audited as ``reveal``, not ``get``).
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import click

from bastion.cli._complete import complete_secret
from bastion.cli._output import (
    SQL_INT_MAX,
    Table,
    config_from,
    emit,
    json_option,
    limit_option,
    require_home,
    run_command,
    table_options,
)

if TYPE_CHECKING:
    from bastion.vault import Vault

_scope_option = click.option(
    "--scope", default="global", show_default=True, help="Scope: global, bot:42, space:abc, ..."
)


@click.group()
def secrets() -> None:
    """Store, read, list, import and audit secrets in the vault."""


@contextmanager
def _vault(ctx: click.Context) -> Iterator[Vault]:
    from bastion.vault import Vault

    cfg = config_from(ctx)
    require_home(cfg)
    passphrase = None
    if (
        cfg.vault.backend == "encrypted-file"
        and cfg.vault.key_source == "passphrase"
        and not _env(cfg.vault.passphrase_env)
        and sys.stdin.isatty()
    ):
        passphrase = click.prompt("vault passphrase", hide_input=True, err=True)
    vault = Vault.open(cfg, passphrase=passphrase)
    try:
        yield vault
    finally:
        vault.close()


def _env(name: str) -> str | None:
    import os

    return os.environ.get(name)


def _read_value(from_stdin: bool, prompt: bool, *, what: str = "the value") -> str:
    """The value from a no-echo prompt (asked twice) or stdin; an empty one is refused, as
    the API refuses it (an empty secret is a mistake: a missed paste, a closed pipe)."""
    from bastion.errors import RuleViolation

    if prompt or (not from_stdin and sys.stdin.isatty()):
        from bastion.cli._ask import secret_prompt

        # Enter alone gives "" (refused below).
        value = secret_prompt(
            "value",
            instead='Pipe the value on stdin: printf %s "$VALUE" | bastion secrets set NAME',
            confirmation=True,
            empty_ok=True,
        )
    else:
        data = sys.stdin.read()
        # One trailing newline is the shell's (echo, heredoc), not the secret's.
        value = data[:-1] if data.endswith("\n") else data
    if not value:
        raise RuleViolation(
            f"{what} is empty; nothing was stored",
            hint='Pipe the value on stdin (printf %s "$VALUE" | bastion secrets set NAME) or '
            "type it at the prompt; to remove a secret use `bastion secrets delete NAME`.",
            rule="non_empty",
        )
    return value


def _check_names(name: str | None, scope: str | None) -> None:
    """Refuse a malformed name or scope before anything is read or opened."""
    from bastion.vault.rules import validate_name, validate_scope

    if scope is not None:
        validate_scope(scope)
    if name is not None:
        validate_name(name)


@secrets.command("set")
@click.argument("name", shell_complete=complete_secret)
@_scope_option
@click.option(
    "--from-stdin", is_flag=True, help="Read the value from stdin (the default off a TTY)."
)
@click.option("--prompt", is_flag=True, help="Prompt for the value without echo.")
@click.option(
    "--expected-version",
    type=click.IntRange(0, SQL_INT_MAX),
    help="Compare-and-set: fail if the version differs (0: the secret must not exist yet).",
)
@json_option
@click.pass_context
@run_command
def set_(  # noqa: PLR0917 - click passes options as arguments
    ctx: click.Context,
    name: str,
    scope: str,
    from_stdin: bool,
    prompt: bool,
    expected_version: int | None,
    as_json: bool,
) -> None:
    """Store NAME's value, read from stdin or a prompt (never from the command line).

    An empty value is refused.
    """
    _check_names(name, scope)
    require_home(config_from(ctx))
    value = _read_value(from_stdin, prompt, what=f"the value for {scope}/{name}")
    with _vault(ctx) as vault:
        meta = vault.set(name, value, scope=scope, actor="cli", expected_version=expected_version)
    emit(
        meta.to_dict(),
        as_json,
        lambda d: f"stored {d['scope']}/{d['name']} (version {d['version']}, {d['size']} bytes)",
    )


@secrets.command()
@click.argument("name", shell_complete=complete_secret)
@_scope_option
@click.option("--reveal", is_flag=True, help="Print the value itself.")
@json_option
@click.pass_context
@run_command
def get(ctx: click.Context, name: str, scope: str, reveal: bool, as_json: bool) -> None:
    """Show NAME's metadata and a masked value; --reveal prints the value (audited as reveal)."""
    from bastion.errors import VaultError

    _check_names(name, scope)
    with _vault(ctx) as vault:
        if reveal and not vault.config.vault.allow_reveal:
            raise VaultError(
                "revealing values is disabled (vault.allow_reveal = false)",
                hint="Read the value through the app or the API instead.",
            )
        secret = vault.get(name, scope=scope, actor="cli", reveal=reveal)
        data: dict[str, Any] = vault.meta(name, scope=scope).to_dict()
    data["value"] = secret.reveal() if reveal else str(secret)
    if reveal and not as_json:
        click.echo(data["value"])
        return
    emit(data, as_json, lambda d: f"{d['scope']}/{d['name']} = {d['value']}")


def _render_list(rows: list[dict[str, Any]]) -> Table:
    from bastion.cli._output import human_time

    return Table(
        ["scope", "name", "version", "size", "updated", "last used"],
        [
            [
                r["scope"],
                r["name"],
                r["version"],
                r["size"],
                human_time(r["updated_at"]),
                human_time(r["last_used_at"]),
            ]
            for r in rows
        ],
        empty="no secrets",
        right=frozenset({"version", "size"}),
    )


@secrets.command("list")
@click.option("--scope", default=None, help="Only this scope (default: all).")
@table_options
@json_option
@click.pass_context
@run_command
def list_(ctx: click.Context, scope: str | None, no_headers: bool, as_json: bool) -> None:
    """List secrets (metadata only; reads no value, never touches the keychain)."""
    _check_names(None, scope)
    with _vault(ctx) as vault:
        rows = [m.to_dict() for m in vault.list(scope)]
    emit(rows, as_json, _render_list)


@secrets.command()
@click.argument("name", required=False, shell_complete=complete_secret)
@_scope_option
@click.option(
    "--all",
    "all_",
    is_flag=True,
    help="Delete every secret of --scope (which must then be given), instead of NAME.",
)
@json_option
@click.pass_context
@run_command
def delete(ctx: click.Context, name: str | None, scope: str, all_: bool, as_json: bool) -> None:
    """Delete NAME and its value, or with --scope S --all every secret of scope S.

    A whole scope goes in one index transaction; keychain items are journaled with it and
    deleted after it, so an interrupted delete is finished by the next command that opens the
    vault."""
    if all_:
        if name is not None:
            raise click.UsageError("give NAME or --all, not both")
        if ctx.get_parameter_source("scope") is not click.core.ParameterSource.COMMANDLINE:
            raise click.UsageError("--all needs --scope SCOPE: name the scope to empty")
        _check_names(None, scope)
        with _vault(ctx) as vault:
            result = vault.delete_scope(scope, actor="cli")

        def human(d: dict[str, Any]) -> str:
            text = f"deleted {d['count']} secret(s) of scope {d['scope']}"
            if d["pending"]:
                text += (
                    f"; {d['pending']} keychain item(s) could not be removed yet and will be "
                    "at the next open of the vault"
                )
            return text

        emit(result.to_dict(), as_json, human)
        return
    if name is None:
        raise click.UsageError("give the NAME to delete (or --scope SCOPE --all)")
    _check_names(name, scope)
    with _vault(ctx) as vault:
        meta = vault.delete(name, scope=scope, actor="cli")
    emit(
        {"deleted": f"{meta.scope}/{meta.name}", "version": meta.version},
        as_json,
        lambda d: f"deleted {d['deleted']}",
    )


@secrets.command()
@click.option("--prefix", help="Only scopes starting with this, e.g. bot: (global never is).")
@click.option(
    "--alive",
    multiple=True,
    metavar="SCOPE",
    help="A scope whose owner still exists (repeatable).",
)
@click.option(
    "--alive-from",
    type=click.Path(dir_okay=False, allow_dash=True),
    help="A file (or - for stdin) listing the live scopes, one per line.",
)
@table_options
@json_option
@click.pass_context
@run_command
def orphans(  # noqa: PLR0917 - click passes options as arguments
    ctx: click.Context,
    prefix: str | None,
    alive: tuple[str, ...],
    alive_from: str | None,
    no_headers: bool,
    as_json: bool,
) -> None:
    """Scopes whose owner the app reports gone: secrets a deleted bot, space or profile left.

    The app says which owners exist (--alive, --alive-from); every other scope (matching
    --prefix) is listed with its number of secrets. Nothing is deleted: remove one with
    `bastion secrets delete --scope SCOPE --all`."""
    if not alive and alive_from is None:
        raise click.UsageError(
            "say which scopes are alive: --alive SCOPE (repeatable) or --alive-from FILE|- "
            "(an empty file means none is)"
        )
    live = set(alive)
    if alive_from is not None:
        live |= {line.strip() for line in _lines(alive_from) if line.strip()}
    with _vault(ctx) as vault:
        found = vault.orphan_scopes(live, prefix=prefix)
        if prefix is None:
            found.pop("global", None)  # the app's own scope has no owner to lose
    rows = [{"scope": scope, "secrets": count} for scope, count in found.items()]
    emit(
        rows,
        as_json,
        lambda items: Table(
            ["scope", "secrets"],
            [[r["scope"], str(r["secrets"])] for r in items],
            empty="no orphaned scopes",
        ),
    )


def _lines(path: str) -> list[str]:
    """The lines of ``path`` (``-``: stdin) as UTF-8 text; anything else is a usage error."""
    from pathlib import Path

    if path != "-":
        from bastion._text import read_text
        from bastion.errors import InvalidValue

        # A device or FIFO is refused, not read forever; a folder or an unreadable file
        # is named; a byte-order mark is dropped.
        return read_text(Path(path), InvalidValue, "list of live scopes").splitlines()
    try:
        data = sys.stdin.buffer.read()
        return data.decode("utf-8").splitlines()
    except OSError as err:
        raise click.BadParameter(
            f"cannot read {path}: {err.strerror or err}", param_hint="--alive-from"
        ) from err
    except UnicodeDecodeError:
        raise click.BadParameter(
            f"{path} is not UTF-8 text (one scope per line)", param_hint="--alive-from"
        ) from None


@secrets.command()
@click.option("--service", required=True, help="The keychain service the other app used.")
@_scope_option
@json_option
@click.pass_context
@run_command
def adopt(ctx: click.Context, service: str, scope: str, as_json: bool) -> None:
    """Copy another app's keychain items (service SERVICE, one item per username) into the
    vault under --scope: each username becomes a secret name.

    Needs a keychain that can list a service's items (the freedesktop Secret Service on
    Linux); elsewhere nothing happens and the message says so. Items already in the vault
    with the same value are left, with another value skipped (never overwritten); the
    originals stay where they are."""
    from bastion.errors import BastionError

    _check_names(None, scope)
    with _vault(ctx) as vault:
        try:
            report = vault.adopt(service, scope, actor="cli")
        except ValueError as err:  # an empty service, or bastion's own
            if isinstance(err, BastionError):
                raise
            raise click.BadParameter(str(err), param_hint="--service") from err

    def human(d: dict[str, Any]) -> str:
        lines = [f"  adopted {scope}/{n}" for n in d["adopted"]]
        lines += [f"  already there {scope}/{n}" for n in d["unchanged"]]
        lines += [f"  skipped {s['name']}: {s['why']}" for s in d["skipped"]]
        return "\n".join([*lines, d["message"]])

    emit(report.to_dict(), as_json, human)


@secrets.command()
@_scope_option
@click.option("--declared", multiple=True, help="A name the app needs (repeatable).")
@json_option
@click.pass_context
@run_command
def status(ctx: click.Context, scope: str, declared: tuple[str, ...], as_json: bool) -> None:
    """Which backend is active and why, and which declared secrets are set."""
    _check_names(None, scope)
    for name in declared:
        _check_names(name, None)
    with _vault(ctx) as vault:
        data = vault.status(list(declared) or None, scope=scope)
        data["backend_info"] = vault.backend_info()

    def human(d: dict[str, Any]) -> str:
        info = d["backend_info"]
        lines = [f"backend: {d['backend']} -- {d['why']}"]
        if info.get("available"):
            detail = info.get("keyring") or info.get("key_from") or ""
            lines.append(f"         available ({detail})")
        else:
            err = info.get("error", {})
            lines.append(f"         UNAVAILABLE: {err.get('message')}")
            lines.append(f"         hint: {err.get('hint')}")
        lines.append(f"scope {d['scope']}: {d['count']} secrets")
        for n, s in d["secrets"].items():
            lines.append(f"  {n:32} {'set' if s['configured'] else 'NOT SET'}")
        return "\n".join(lines)

    emit(data, as_json, human)


@secrets.command("import")
@click.argument("file", required=False, type=click.Path(exists=True, dir_okay=False))
@_scope_option
@click.option("--dry-run", is_flag=True, help="Show what would move; change nothing.")
@click.option(
    "--no-backup",
    is_flag=True,
    help="Keep no copy of the original (by default a 0600 copy, which holds the plaintext).",
)
@click.option(
    "--purge-backups",
    is_flag=True,
    help="Import nothing: delete the plaintext copies earlier imports kept (of FILE, or all).",
)
@json_option
@click.pass_context
@run_command
def import_(  # noqa: PLR0917 - click passes options as arguments
    ctx: click.Context,
    file: str | None,
    scope: str,
    dry_run: bool,
    no_backup: bool,
    purge_backups: bool,
    as_json: bool,
) -> None:
    """Move plaintext secrets of a .env, MCP config or JSON file into the vault; scrub it.

    The original is kept beside FILE as FILE.bastion-backup-<time> (0600): it holds the
    plaintext values, so delete it once the import is checked (--purge-backups; `bastion
    doctor` lists the copies still on disk), or make none with --no-backup.
    """
    if purge_backups:
        _purge_backups(ctx, file, as_json)
        return
    if file is None:
        raise click.UsageError("Missing argument 'FILE' (or use --purge-backups).")
    from bastion.vault.importer import import_file

    _check_names(None, scope)
    with _vault(ctx) as vault:
        report = import_file(
            vault, file, scope=scope, dry_run=dry_run, actor="cli", backup=not no_backup
        )

    def human(d: dict[str, Any]) -> str:
        lines = [f"{d['file']} ({d['format']}){' [dry run]' if d['dry_run'] else ''}"]
        for item in d["items"]:
            lines.append(
                f"  {item['location']:40} -> {item['scope']}/{item['name']}: {item['action']}"
            )
        if d["rewritten"]:
            lines.append("rewritten with references")
            if d["warning"]:
                lines.append(f"warning: {d['warning']}")
            else:
                lines.append("no copy of the original was kept (--no-backup)")
        elif not d["dry_run"]:
            lines.append("nothing to change")
        return "\n".join(lines)

    emit(report.to_dict(), as_json, human)


def _purge_backups(ctx: click.Context, file: str | None, as_json: bool) -> None:
    from bastion.vault.plaintext_backups import purge

    with _vault(ctx) as vault:
        deleted = purge(vault, file, actor="cli")

    def human(d: dict[str, Any]) -> str:
        if not d["deleted"]:
            return "no plaintext copies to delete"
        return "\n".join(f"deleted {p}" for p in d["deleted"])

    emit({"deleted": deleted}, as_json, human)


@secrets.command()
@click.option("--fix", is_flag=True, help="Adopt orphaned items and drop rows whose value is gone.")
@click.option(
    "--allow-drop-all",
    is_flag=True,
    help="With --fix, drop rows even when every value looks gone (usually a wrong keychain).",
)
@json_option
@click.pass_context
@run_command
def reconcile(ctx: click.Context, fix: bool, allow_drop_all: bool, as_json: bool) -> None:
    """Compare the index with the backend: orphaned items and vanished values."""
    with _vault(ctx) as vault:
        data = vault.reconcile(fix=fix, actor="cli", allow_drop_all=allow_drop_all)

    def human(d: dict[str, Any]) -> str:
        lines = [f"backend {d['backend']}"]
        lines += [f"  orphan (in backend, not indexed): {k}" for k in d["orphans"]]
        lines += [f"  missing (indexed, value gone):    {k}" for k in d["missing"]]
        lines += [f"  {c['action']} {c['scope']}/{c['name']}" for c in d["changes"]]
        lines += [
            f"  recounted scope {scope}: {kept} -> {real} secrets"
            for scope, (kept, real) in d.get("recounted", {}).items()
        ]
        if not d["orphans"] and not d["missing"]:
            lines.append("  in step")
        return "\n".join(lines)

    emit(data, as_json, human)


@secrets.command()
@click.option(
    "--to",
    "to",
    type=click.Choice(["env", "passphrase", "keychain"]),
    help="New key source (default: the current one).",
)
@click.option(
    "--new-key-env",
    metavar="VAR",
    help="Environment variable holding the new base64 key (for --to env).",
)
@click.option(
    "--rotate-data-key", is_flag=True, help="Also re-encrypt every record with a new data key."
)
@json_option
@click.pass_context
@run_command
def rekey(
    ctx: click.Context,
    to: str | None,
    new_key_env: str | None,
    rotate_data_key: bool,
    as_json: bool,
) -> None:
    """Re-wrap the encrypted file's data key under a new key (crash-safe: one transaction)."""
    from bastion.errors import VaultLocked

    with _vault(ctx) as vault:
        target = to or vault.config.vault.key_source
        new_secret = None
        if target == "env":
            var = new_key_env or vault.config.vault.key_env
            new_secret = _env(var)
            if not new_secret:
                raise VaultLocked(
                    f"the new key variable {var} is not set",
                    hint=f'export {var}="$(bastion secrets keygen)" and retry.',
                )
        elif target == "passphrase":
            from bastion.cli._ask import secret_prompt

            new_secret = secret_prompt(
                "new vault passphrase",
                instead="Run it at a terminal to be asked, or re-wrap the key under one in a "
                "variable: --to env (see `bastion secrets rekey --help`).",
                confirmation=True,
            )
        result = vault.rekey(target, new_secret=new_secret, rotate_data_key=rotate_data_key)
    emit(
        result,
        as_json,
        lambda d: (
            f"vault key now from {d['key_source']}"
            + (f"; {d['records']} records re-encrypted" if d["rotated_data_key"] else "")
            + (f"\nnext: {d['next']}" if d.get("next") else "")
        ),
    )


@secrets.group(invoke_without_command=True)
@click.option("--name", default=None, help="Only this secret name.")
@click.option("--scope", default=None, help="Only this scope.")
@limit_option(50, "How many of the latest rows.")
@table_options
@json_option
@click.pass_context
@run_command
def audit(  # noqa: PLR0917 - click passes options as arguments
    ctx: click.Context,
    name: str | None,
    scope: str | None,
    limit: int,
    no_headers: bool,
    as_json: bool,
) -> None:
    """Show audit rows (who, what, when, fingerprint -- never a value).

    A read shown to a person (`get --reveal`, the API's reveal) is recorded as `reveal`; a
    read by a program, or a masked `get`, as `get`; a service's as `inject`.
    """
    if ctx.invoked_subcommand is not None:
        return
    _check_names(name, scope)
    with _vault(ctx) as vault:
        rows = [e.to_dict() for e in vault.audit_entries(name=name, scope=scope, limit=limit)]

    def human(items: list[dict[str, Any]]) -> Table:
        from bastion.cli._output import human_time

        return Table(
            ["time", "operation", "scope", "name", "actor", "pid", "fingerprint"],
            [
                [
                    human_time(r["ts"]),
                    r["operation"],
                    r["scope"],
                    r["name"],
                    r["actor"],
                    r["pid"],
                    (r["fingerprint"] or "")[:16],
                ]
                for r in items
            ],
            empty="no audit rows",
            right=frozenset({"pid"}),
        )

    emit(rows, as_json, human)


@audit.command("hash")
@click.argument("value", required=False)
@json_option
@click.pass_context
@run_command
def audit_hash(ctx: click.Context, value: str | None, as_json: bool) -> None:
    """Print the fingerprint of VALUE (or of stdin when VALUE is - or omitted)."""
    require_home(config_from(ctx))
    if value is None or value == "-":
        value = _read_value(True, False)
    with _vault(ctx) as vault:
        fp = vault.fingerprint(value)
    emit({"fingerprint": fp}, as_json, lambda d: d["fingerprint"])


@secrets.command()
@json_option
@run_command
def keygen(as_json: bool) -> None:
    """Print a fresh random key for the encrypted-file vault (32 bytes, base64).

    Use it as BASTION_VAULT_KEY: export BASTION_VAULT_KEY="$(bastion secrets keygen)".
    Keep it somewhere safe: without it the encrypted vault cannot be read.
    """
    import base64
    import secrets as random_source

    from bastion.vault.crypto import KEY_BYTES

    key = base64.b64encode(random_source.token_bytes(KEY_BYTES)).decode("ascii")
    emit({"key": key, "bytes": KEY_BYTES, "encoding": "base64"}, as_json, lambda d: d["key"])
