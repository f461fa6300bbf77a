"""``bastion doctor``: diagnose a home; ``--bundle FILE`` writes a secret-free zip."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from bastion.cli._output import (
    checked_path,
    config_past_file,
    emit,
    home_from,
    json_option,
    run_command,
)


def _age(seconds: float) -> str:
    for size, unit in ((86400, "d"), (3600, "h"), (60, "min")):
        if seconds >= size:
            return f"{seconds / size:.1f} {unit}"
    return f"{seconds:.0f} s"


def _human(d: dict[str, Any]) -> str:
    lines = [f"home:      {d['home']}"]
    v = d["versions"]
    lines.append(
        f"versions:  bastion {v['bastion']}, python {v['python']}, sqlite {v.get('sqlite', '?')}"
    )
    for name, db in d.get("databases", {}).items():
        if not db.get("exists"):
            lines.append(f"{name + '.db:':<10} absent")
            continue
        chk = db.get("check") or {}
        posture = db.get("posture") or {}
        state = (
            "ok"
            if chk.get("ok")
            else (db.get("problem") or f"{chk.get('foreign_key_violation_count')} FK violations")
        )
        lines.append(
            f"{name + '.db:':<10} {state}; {posture.get('journal_mode', '?')}, "
            f"synchronous {posture.get('synchronous', '?')}, "
            f"foreign_keys {'on' if posture.get('foreign_keys') else 'off'}"
        )
        for ns, m in (db.get("migrations") or {}).items():
            lines.append(f"  migrations {ns}: {m['applied']} applied, last {m['last']}")
        newest = db.get("newest_verified_backup")
        lines.append(
            f"  backup: newest verified {_age(newest['age_s'])} ago ({Path(newest['path']).name})"
            if newest
            else "  backup: none verified"
        )
    vault = d.get("vault", {})
    lines.append(
        f"vault:     {vault.get('backend')}, {vault.get('state') or str(vault.get('secrets_indexed', 0)) + ' secrets indexed'}"
    )
    active = vault.get("active") or {}
    if active:
        answers = "answers" if active.get("available") else "does not answer"
        lines.append(f"           {active.get('why')}; the backend {answers}")
    svc = d.get("services", {})
    daemon = svc.get("daemon", {})
    lines.append(
        f"services:  {len(svc.get('specs', []))} specs; daemon "
        + (f"running (pid {daemon['pid']})" if daemon.get("running") else "not running")
    )
    if svc.get("containment"):
        lines.append(f"           {svc['containment']}")
    b = d.get("backups", {})
    lines.append(f"backups:   {b.get('count', 0)}, {len(b.get('damaged', []))} damaged")
    disk = d.get("disk", {})
    if disk:
        lines.append(f"disk:      {disk['free_bytes'] / 2**30:.1f} GiB free")
    for line in d.get("fixed", []):
        lines.append(f"fixed:     {line}")
    warnings = d.get("warnings", [])
    if warnings:
        lines.append(f"warnings:  {len(warnings)}")
        lines.extend(f"  - {w}" for w in warnings)
    problems = d.get("problems", [])
    lines.append(f"problems:  {len(problems)}")
    lines.extend(f"  - {p}" for p in problems)
    if d.get("bundle"):
        lines.append(f"bundle:    {d['bundle']['bundle']} ({d['bundle']['redactions']} redactions)")
    return "\n".join(lines)


@click.command()
@click.option(
    "--bundle",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Also write a zip for a bug report (no secret values, no token).",
)
@click.option("--quick", is_flag=True, help="quick_check instead of the full integrity_check.")
@click.option(
    "--fix",
    is_flag=True,
    help="First remove group/other permissions from every file and directory in the home.",
)
@json_option
@click.pass_context
@run_command
def doctor(ctx: click.Context, bundle: Path | None, quick: bool, fix: bool, as_json: bool) -> None:
    """Check posture, versions, migrations, integrity, vault, services, disk and file modes.

    Exits 1 when a problem is found (listed under "problems"). A hand-written bastion.toml or
    services/*.toml readable by others is a warning, not a problem; --fix tightens it.
    """
    from bastion.doctor import fix_modes, run_doctor, write_bundle

    if bundle is not None:
        bundle = checked_path(bundle, "--bundle", writable=True)
    if bundle is not None and bundle.is_dir():
        raise click.BadParameter(
            f"{bundle} is a directory; name a .zip file", param_hint="--bundle"
        )
    # Modes before the config: a bastion.toml another user can write is refused by its read.
    fixed = fix_modes(home_from(ctx)) if fix else []
    # A bastion.toml that does not load is one of the problems, not the end of the check.
    cfg, config_problem = config_past_file(ctx, warn=False)
    report = run_doctor(cfg, full_check=not quick, config_problem=config_problem)
    if fix:
        report["fixed"] = fixed
    if bundle is not None:
        report["bundle"] = write_bundle(cfg, report, bundle)
    emit(report, as_json, _human)
    if report.get("problems"):
        sys.exit(1)
