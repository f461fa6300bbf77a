"""``bastion db migrate`` and ``bastion db baseline``: apply and adopt schema migrations.

Built-in namespaces come from ``Home.namespaces()`` (``core``); an app's own namespace is named
with ``--package NS=python.package`` (its ``NNNN_name.sql`` files), so apps need no plug-in.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import click

from bastion.cli._output import config_from, emit, human_time, json_option, run_command

if TYPE_CHECKING:
    from bastion.app import Home
    from bastion.store.migrations import Namespace

__all__ = ["baseline", "migrate", "render_states"]


def _when(ts: float | None) -> str:
    return "never" if ts is None else human_time(ts)


def render_states(states: list[dict[str, Any]]) -> list[str]:
    """Lines for ``db status``/``db migrate``: one block per namespace."""
    lines = []
    for st in states:
        if st["pending"] is None:  # an application's database: its code knows what is pending
            waiting = "pending unknown to bastion (the application holds its migrations)"
        else:
            waiting = f"{len(st['pending'])} pending ({', '.join(st['pending']) or 'none'})"
        lines.append(
            f"migrations {st['namespace']}: {len(st['applied'])} applied, {waiting}; "
            f"last {st['last_applied'] or 'none'} at {_when(st['last_applied_at'])}"
        )
        if st.get("problem"):
            lines.append(f"  problem: {st['problem']['message']}")
            lines.append(f"  hint: {st['problem']['hint']}")
    return lines


def _select(
    home: Home,
    names: tuple[str, ...],
    packages: tuple[str, ...],
    *,
    param_hint: str = "--namespace",
) -> list[Namespace]:
    from bastion.store.migrations import Namespace

    spaces = list(home.namespaces())
    for spec in packages:
        name, sep, package = spec.partition("=")
        if not sep or not name or not package:
            raise click.BadParameter(f"{spec!r}: use NS=python.package", param_hint="--package")
        try:
            spaces.append(Namespace.from_package(name, package))
        except ModuleNotFoundError as err:
            raise click.BadParameter(
                f"cannot import {package}: {err}", param_hint="--package"
            ) from err
        except ValueError as err:
            raise click.BadParameter(str(err), param_hint="--package") from err
    if not names:
        return spaces
    known = {ns.name: ns for ns in spaces}
    unknown = [n for n in names if n not in known]
    if unknown:
        raise click.BadParameter(
            f"unknown namespace(s) {', '.join(map(repr, unknown))}; known: "
            f"{', '.join(sorted(known))} (add an app's with --package NS=python.package)",
            param_hint=param_hint,
        )
    return [known[n] for n in names]


def _render_report(d: dict[str, Any]) -> str:
    head = "dry run (on a temporary copy; nothing changed): " if d["dry_run"] else ""
    applied = d["applied"]
    lines = [
        f"{head}{'would apply' if d['dry_run'] else 'applied'} {len(applied)} migration(s)"
        + (": " + ", ".join(f"{a['namespace']}/{a['id']}" for a in applied) if applied else "")
    ]
    for item in applied:
        for relation, count in item["orphans"].items():
            lines.append(f"  orphans {relation}: {count}")
    for entry in d["accepted_edits"]:
        lines.append(f"accepted edited migration {entry}")
    for path in d["backups"]:
        lines.append(f"backup: {path}")
    changes = d["changes"]
    for word in ("added", "removed", "changed"):
        if changes[word]:
            lines.append(f"schema {word}: {', '.join(changes[word])}")
    lines.extend(render_states(d["namespaces"]))
    return "\n".join(lines)


@click.command()
@click.option("--namespace", "names", multiple=True, help="Only this namespace (repeatable).")
@click.option(
    "--package",
    "packages",
    multiple=True,
    metavar="NS=PKG",
    help="Add an app namespace from a package.",
)
@click.option(
    "--dry-run", is_flag=True, help="Run on a temporary copy and report what would change."
)
@click.option(
    "--accept-edited",
    "accept",
    multiple=True,
    metavar="NS/ID",
    help="Accept an applied migration's edited text (recorded as an event).",
)
@json_option
@click.pass_context
@run_command
def migrate(
    ctx: click.Context,
    *,
    names: tuple[str, ...],
    packages: tuple[str, ...],
    dry_run: bool,
    accept: tuple[str, ...],
    as_json: bool,
) -> None:
    """Apply pending schema migrations (backup first; each in its own transaction)."""
    from bastion.app import Home

    with Home.open(config_from(ctx), create=False, migrate=False) as home:
        spaces = _select(home, names, packages)
        try:
            report = home.migrator().migrate(spaces, dry_run=dry_run, accept_edited=accept)
        except ValueError as err:
            raise click.BadParameter(str(err), param_hint="--accept-edited") from err
    emit(report.to_dict(), as_json, _render_report)


@click.command()
@click.argument("namespace")
@click.option("--at", "at", required=True, metavar="ID", help="The migration id the schema is at.")
@click.option(
    "--package",
    "packages",
    multiple=True,
    metavar="NS=PKG",
    help="Add an app namespace from a package.",
)
@json_option
@click.pass_context
@run_command
def baseline(
    ctx: click.Context, namespace: str, at: str, packages: tuple[str, ...], as_json: bool
) -> None:
    """Adopt a database that has no history: record NAMESPACE's migrations up to --at as
    applied, after checking the schema is what they produce."""
    from bastion.app import Home

    with Home.open(config_from(ctx), create=False, migrate=False) as home:
        (ns,) = _select(home, (namespace,), packages, param_hint="NAMESPACE")
        try:
            result = home.migrator().baseline(ns, at)
        except ValueError as err:
            raise click.BadParameter(str(err), param_hint="--at") from err
    emit(
        result.to_dict(),
        as_json,
        lambda d: f"baselined {d['namespace']} at {d['at']}: recorded {', '.join(d['recorded'])}",
    )
