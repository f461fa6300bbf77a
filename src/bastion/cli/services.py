"""``bastion services …``: validate, inspect and run supervised sidecars.

Reading commands (``list``, ``status``, ``events``, ``logs``, ``validate``) work on the files:
the spec files in ``<home>/services/`` and the state the supervisor stores in ``bastion.db``
at every transition. Commands that act on a live child (``start``, ``stop``, ``restart``) go
to the running supervisor: the daemon (``bastion serve``) over its API. Until a daemon runs,
``bastion services run`` is the foreground supervisor: it starts the services and stops them
on Ctrl-C/SIGTERM.
"""

from __future__ import annotations

import sys
import time
from typing import TYPE_CHECKING, Any

import click

from bastion.cli._complete import complete_service
from bastion.cli._output import (
    Fields,
    Table,
    config_from,
    emit,
    human_time,
    json_option,
    limit_option,
    no_daemon,
    run_command,
    table_options,
)

if TYPE_CHECKING:
    from bastion.app import Home
    from bastion.config import Config


@click.group()
def services() -> None:
    """Validate, inspect, start and stop supervised sidecar services."""


def _stored(home: Home) -> tuple[dict[str, Any], dict[str, int]]:
    """Stored service rows and live pids; empty if the supervisor never ran in this home.

    The pid is the service's own process as the supervisor reports it (the API's
    ``status().pid``), read from the journal and shown only while that process (pid and
    create time) still lives."""
    from bastion.supervisor.journal import Journal
    from bastion.supervisor.process import alive

    exists = home.db.scalar("SELECT count(*) FROM sqlite_master WHERE name = 'supervisor_services'")
    if not exists:
        return {}, {}
    journal = Journal(home.db)
    pids = {service: rec.pid for service, rec in journal.service_pids().items() if alive(rec)}
    return journal.load(), pids


def _rows(cfg: Config, home: Home, only: str | None = None) -> list[dict[str, Any]]:
    from bastion.errors import ServiceNotFound
    from bastion.supervisor.spec import validate_dir, validate_service_name

    if only is not None:
        validate_service_name(only)
    good, bad = validate_dir(cfg.services_dir)
    stored, pids = _stored(home)
    rows: list[dict[str, Any]] = []
    for spec in good:
        row = stored.get(spec.name)
        rows.append(
            {
                "name": spec.name,
                "state": row.state.value if row else "stopped",
                "reason": row.reason if row else "never started",
                "since": row.since if row else None,
                "breaker": row.policy.breaker.value if row else "closed",
                "restarts": len(row.policy.restarts) if row else 0,
                "trips": row.policy.trips if row else 0,
                "pid": pids.get(spec.name),
                "autostart": spec.autostart,
                "argv": list(spec.argv),
                "secrets": sorted(spec.secrets),
                "valid": True,
            }
        )
    for err in bad:
        name = str(err.details.get("file", "?")).rsplit("/", 1)[-1].removesuffix(".toml")
        rows.append({"name": name, "state": "invalid", "reason": err.message, "valid": False})
    rows.sort(key=lambda r: r["name"])
    if only is not None:
        rows = [r for r in rows if r["name"] == only]
        if not rows:
            raise ServiceNotFound(
                f"no service named {only!r} in {cfg.services_dir}",
                hint="List them with `bastion services list`; add <name>.toml to create one.",
            )
    return rows


def _render_list(rows: list[dict[str, Any]]) -> Table:
    return Table(
        ["name", "state", "breaker", "pid", "restarts", "since", "reason"],
        [
            [
                r["name"],
                r["state"],
                r.get("breaker"),
                r.get("pid"),
                r.get("restarts"),
                human_time(r.get("since")),
                r["reason"],
            ]
            for r in rows
        ],
        empty="no services (add <name>.toml files to the home's services/ directory)",
        right=frozenset({"pid", "restarts"}),
    )


@services.command("list")
@table_options
@json_option
@click.pass_context
@run_command
def list_(ctx: click.Context, no_headers: bool, as_json: bool) -> None:
    """List services with their stored state, breaker and live pid."""
    from bastion.app import Home

    cfg = config_from(ctx)
    with Home.open(cfg, create=False) as home:
        rows = _rows(cfg, home)
    emit(rows, as_json, _render_list)


@services.command()
@click.argument("name", shell_complete=complete_service)
@json_option
@click.pass_context
@run_command
def status(ctx: click.Context, name: str, as_json: bool) -> None:
    """Show one service: state, reason, since, breaker, restarts, pid, secret names."""
    from bastion.app import Home

    cfg = config_from(ctx)
    with Home.open(cfg, create=False) as home:
        (row,) = _rows(cfg, home, only=name)

    def human(r: dict[str, Any]) -> Fields:
        keys = ("name", "state", "reason", "since", "breaker", "restarts", "trips", "pid")
        items = [(k, human_time(r[k]) if k == "since" else r[k]) for k in keys if k in r]
        if "secrets" in r:
            items.append(("secrets", r["secrets"]))
        return Fields(items)

    emit(row, as_json, human)


@services.command()
@json_option
@click.pass_context
@run_command
def validate(ctx: click.Context, as_json: bool) -> None:
    """Check every spec file in <home>/services/ before anything starts (exit 1 if any is bad)."""
    from bastion.supervisor.spec import validate_dir

    cfg = config_from(ctx)
    good, bad = validate_dir(cfg.services_dir)
    data = {
        "directory": str(cfg.services_dir),
        "valid": [s.name for s in good],
        "errors": [{**e.to_dict(), "file": e.details.get("file")} for e in bad],
    }

    def human(d: dict[str, Any]) -> str:
        lines = [f"ok       {name}" for name in d["valid"]]
        for e in d["errors"]:
            lines.append(f"invalid  {e['message']}\n         hint: {e['hint']}")
        if not lines:
            lines.append(f"no service files in {d['directory']}")
        return "\n".join(lines)

    emit(data, as_json, human)
    if bad:
        ctx.exit(1)


def event_text(kind: str, data: dict[str, Any]) -> str:
    """What one of a service's events says, in words (``services events``'s REASON column):
    a transition's reason; the other kinds from their data, never the bare kind
    (``service.probe`` with ``-`` for both states told nothing)."""
    if "reason" in data:
        return str(data["reason"])
    what = kind.removeprefix("service.")
    if what == "probe":
        outcome = "passes" if data.get("ok") else "fails"
        detail = f": {data['detail']}" if data.get("detail") else ""
        return f"{data.get('role', '?')} probe ({data.get('kind', '?')}) {outcome}{detail}"
    if what in {"secret_changed", "secret_deleted"}:
        secrets = ", ".join(str(s) for s in data.get("secrets", []))
        verb = "changed" if what == "secret_changed" else "deleted"
        action = data.get("action")
        return f"secret {secrets} {verb}" + (f" ({action})" if action and action != "none" else "")
    if what == "changed":
        restarted = "; restarted" if data.get("restarted") else ""
        return f"spec changed: {', '.join(str(f) for f in data.get('fields', []))}{restarted}"
    if what in {"added", "removed"}:
        return f"spec {what}: {data.get('file', '?')}"
    if what == "spec_invalid":
        return f"spec invalid: {data.get('message', '?')}"
    return what.replace("_", " ")


@services.command()
@click.argument("name", shell_complete=complete_service)
@limit_option(50, "How many of the latest events.")
@table_options
@json_option
@click.pass_context
@run_command
def events(ctx: click.Context, name: str, limit: int, no_headers: bool, as_json: bool) -> None:
    """Show a service's events, oldest first: state transitions with their reasons, and
    changes of a probe's outcome, of its spec and of the secrets it is given."""
    from bastion.app import Home

    cfg = config_from(ctx)
    with Home.open(cfg, create=False) as home:
        _rows(cfg, home, only=name)
        page = home.events.query(subject=name, limit=limit, newest_first=True)
        rows = [e.to_dict() for e in reversed(page.items)]

    def human(items: list[dict[str, Any]]) -> Table:
        rows = []
        for e in items:
            d = e.get("data") or {}
            rows.append([human_time(e["ts"]), d.get("from"), d.get("to"), event_text(e["kind"], d)])
        return Table(["time", "from", "to", "reason"], rows, empty=f"no events for {name}")

    emit(rows, as_json, human)


@services.command()
@click.argument("name", shell_complete=complete_service)
@limit_option(100, "How many of the latest lines.")
@click.option("--follow", "-f", is_flag=True, help="Keep printing new lines until Ctrl-C.")
@click.option("--interval", default=0.5, show_default=True, hidden=True)
@json_option
@click.pass_context
@run_command
def logs(  # noqa: PLR0917 - click passes options as arguments
    ctx: click.Context, name: str, limit: int, follow: bool, interval: float, as_json: bool
) -> None:
    """Show a service's captured stdout/stderr (secrets already redacted)."""
    import json

    from bastion.app import Home
    from bastion.cli._output import to_json
    from bastion.cli.logs import format_line

    cfg = config_from(ctx)

    def line(rec: Any) -> str:
        if as_json:
            return json.dumps(to_json(rec.to_dict()), sort_keys=True)
        return format_line(rec)

    with Home.open(cfg, create=False) as home:
        _rows(cfg, home, only=name)
        page = home.logs.query(source=name, limit=limit, newest_first=True)
        records = list(reversed(page.items))
        if not follow and as_json:
            emit([r.to_dict() for r in records], True)
            return
        if not records and not follow:
            click.echo(f"no log lines from {name}", err=True)
        for rec in records:
            click.echo(line(rec))
        last = records[-1].id if records else home.logs.latest_id()
        while follow:
            # The CLI follows the table; the daemon's SSE stream is the push alternative.
            new = home.logs.query(source=name, after_id=last, limit=1000).items
            for rec in new:
                click.echo(line(rec))
            if new:
                last = new[-1].id
            else:
                time.sleep(interval)


def _grace_s(cfg: Config, name: str) -> float:
    """How long the daemon may wait out ``name``'s stop: its spec file's ``[stop] grace_s``;
    the longest a spec may set when the file does not load (the daemon keeps the version it
    runs, whose grace this cannot know); none when there is no file (nothing to stop)."""
    from bastion.errors import BastionError
    from bastion.supervisor.spec import GRACE_MAX_S, load_spec

    path = cfg.services_dir / f"{name}.toml"
    if not path.exists():
        return 0.0
    try:
        return load_spec(path).stop.grace_s
    except BastionError:
        return GRACE_MAX_S


def _daemon_action(ctx: click.Context, name: str, action: str, as_json: bool) -> None:
    from bastion.client import DEFAULT_TIMEOUT_S, DaemonClient
    from bastion.supervisor.spec import validate_service_name

    validate_service_name(name)
    cfg = config_from(ctx)
    # A stop (and a restart's) answers once the child is gone: after its grace period.
    waits = _grace_s(cfg, name) if action in {"stop", "restart"} else 0.0
    client = DaemonClient.for_home(cfg, timeout=DEFAULT_TIMEOUT_S + waits)
    if client is None:
        raise no_daemon(
            cfg,
            f"cannot {action} {name!r}",
            start_hint="Start one with `bastion serve`, or run the services in the foreground "
            "with `bastion services run`.",
        )
    result = client.post(f"/v1/services/{name}/{action}")
    emit(
        result,
        as_json,
        lambda r: f"{name}: {r.get('state', '-') if isinstance(r, dict) else r}",
    )


@services.command()
@click.argument("name", shell_complete=complete_service)
@json_option
@click.pass_context
@run_command
def start(ctx: click.Context, name: str, as_json: bool) -> None:
    """Start a service in the running supervisor (an OPEN breaker is reset)."""
    _daemon_action(ctx, name, "start", as_json)


@services.command()
@click.argument("name", shell_complete=complete_service)
@json_option
@click.pass_context
@run_command
def stop(ctx: click.Context, name: str, as_json: bool) -> None:
    """Stop a service: its stop signal, the grace period, then SIGKILL to its group."""
    _daemon_action(ctx, name, "stop", as_json)


@services.command()
@click.argument("name", shell_complete=complete_service)
@json_option
@click.pass_context
@run_command
def restart(ctx: click.Context, name: str, as_json: bool) -> None:
    """Stop then start a service in the running supervisor."""
    _daemon_action(ctx, name, "restart", as_json)


@services.command()
@json_option
@click.pass_context
@run_command
def reload(ctx: click.Context, as_json: bool) -> None:
    """Apply edits of <home>/services/ to the running daemon now (it also watches the folder):
    new files are added, changed ones restarted or updated in place, removed ones stopped.
    Exit 1 if a file is invalid (its running version keeps running)."""
    from bastion.client import DEFAULT_TIMEOUT_S, DaemonClient
    from bastion.supervisor.catalog import reload_wait_s

    cfg = config_from(ctx)
    # The daemon answers once the services it restarts or removes are stopped.
    timeout = DEFAULT_TIMEOUT_S + reload_wait_s(cfg.services_dir)
    client = DaemonClient.for_home(cfg, timeout=timeout)
    if client is None:
        raise no_daemon(
            cfg,
            "nothing to reload",
            start_hint="`bastion serve` reads the folder when it starts; `bastion services "
            "validate` checks the files now.",
        )
    report = client.post("/v1/services/reload")

    def human(r: dict[str, Any]) -> str:
        lines = []
        for key in ("added", "started", "restarted", "updated", "removed"):
            if r.get(key):
                lines.append(f"{key + ':':11} {', '.join(r[key])}")
        for p in r.get("problems", []):
            kept = " (the running version keeps running)" if p.get("running_previous") else ""
            lines.append(f"invalid    {p['message']}{kept}\n           hint: {p['hint']}")
        return "\n".join(lines) or "no changes"

    emit(report, as_json, human)
    if report.get("problems"):
        ctx.exit(1)


@services.command()
@click.argument("names", nargs=-1, shell_complete=complete_service)
@json_option
@click.pass_context
@run_command
def run(ctx: click.Context, names: tuple[str, ...], as_json: bool) -> None:
    """Run the supervisor in the foreground (all autostart services, or NAMES) until
    Ctrl-C or SIGTERM, printing every state transition; then stop the children.

    Exits 130 after Ctrl-C (SIGINT) and 143 after SIGTERM, once every child has stopped,
    as a shell expects of a program ended by that signal. When the reader of its output
    goes away (`services run | head -1`) it stops the children too and exits 0.
    """
    import asyncio
    import json

    from bastion.app import Home
    from bastion.cli._output import to_json
    from bastion.client import DaemonClient
    from bastion.errors import DaemonAlreadyRunning
    from bastion.supervisor import load_specs
    from bastion.supervisor._platform import on_stop_signals
    from bastion.supervisor.spec import validate_service_name

    for name in names:
        validate_service_name(name)
    cfg = config_from(ctx)
    if DaemonClient.for_home(cfg) is not None:
        raise DaemonAlreadyRunning(
            f"a bastion daemon already supervises {cfg.home}",
            hint="Use `bastion services start|stop|restart NAME` against it.",
        )
    specs = load_specs(cfg.services_dir)  # a bad spec file is an error before anything starts
    if not names and not any(spec.autostart for spec in specs):
        from bastion.errors import ServiceNotFound

        # Nothing would start and nothing watches the folder: it sat silent until Ctrl-C.
        raise ServiceNotFound(
            f"no services to run: {cfg.services_dir} has no service files"
            if not specs
            else f"no services to run: none of the {len(specs)} in {cfg.services_dir} is autostart",
            hint="Add <name>.toml files there (docs/services.md), or name the services to run: "
            "`bastion services run NAME`.",
        )
    received: list[int] = []

    async def main(home: Home) -> None:
        sup = home.supervisor()  # secrets from the vault, through bastion.app.VaultSecrets
        done = asyncio.Event()
        loop = asyncio.get_running_loop()

        def on_signal(signum: int) -> None:
            received.append(signum)
            done.set()

        # SIGINT/SIGTERM (and Ctrl+Break on Windows, whose loop has no add_signal_handler).
        on_stop_signals(loop, on_signal)
        queue = sup.subscribe()
        await sup.open()
        for rec in sup.swept:
            click.echo(f"swept orphan pid {rec.pid} of a previous supervisor", err=True)
        if names:
            for name in names:
                await sup.start(name)
        else:
            await sup.start_all()

        async def printer() -> None:
            try:
                while True:
                    event = await queue.get()
                    if as_json:
                        click.echo(json.dumps(to_json(event), sort_keys=True))
                    else:
                        click.echo(
                            f"{human_time(event['ts'])}  {event['service']}: {event['from']} "
                            f"-> {event['to']}  {event['reason']}"
                        )
            except OSError:
                # Standard output refused the line (its reader left: `services run | head
                # -1`; or the disk is full): the children are stopped as after Ctrl-C, then
                # the error is raised again for the edge (exit 0, or 71 naming the output).
                # The supervisor went on without a word, its task's error never read.
                done.set()
                raise

        task = loop.create_task(printer())
        try:
            await done.wait()
        finally:
            await sup.close()
            await asyncio.sleep(0)  # let the printer show the final transitions
            task.cancel()
        if task.done() and not task.cancelled() and (refused := task.exception()) is not None:
            raise refused

    with Home.open(cfg) as home:
        asyncio.run(main(home))
    if received:
        # 128 + the signal's number: 130 for SIGINT, 143 for SIGTERM (docs/errors.md).
        sys.exit(128 + received[0])
