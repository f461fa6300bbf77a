"""``bastion serve``: run the daemon (API + supervisor + scheduler) for a home.

The server stack (FastAPI, uvicorn) is imported inside the command only: every other CLI
command starts without it.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from bastion.cli._output import config_from, run_command

#: What ``pip install 'bastion[server]'`` adds: a missing one means the extra is missing.
SERVER_MODULES = frozenset(
    {"fastapi", "starlette", "uvicorn", "uvloop", "httptools", "pydantic", "pydantic_core"}
)


@click.command()
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=None,
    help="Port to listen on; 0 picks a free one (default: [api] port, 0).",
)
@click.option(
    "--host",
    default=None,
    help="Address to listen on (default 127.0.0.1, which also binds ::1).",
)
@click.option(
    "--token-file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Read the API token from this file (0600) instead of <home>/run/token.",
)
@click.option(
    "--i-know-this-is-exposed",
    "exposed_ok",
    is_flag=True,
    help="Allow a --host that is not loopback (the API becomes reachable from the network).",
)
@click.option(
    "--log-level",
    type=click.Choice(["debug", "info", "warning", "error"]),
    default="info",
    show_default=True,
    help="Verbosity of the daemon's log (stderr).",
)
@click.option(
    "--exit-with-parent",
    is_flag=True,
    help="Stop gracefully when the process that started the daemon exits (for a desktop "
    "app's sidecar: it must not outlive the app, even after kill -9).",
)
@click.option("--json", "as_json", is_flag=True, help="Errors as JSON (the handshake always is).")
@click.pass_context
@run_command
def serve(  # noqa: PLR0917 - click passes each option as an argument
    ctx: click.Context,
    port: int | None,
    host: str | None,
    token_file: Path | None,
    exposed_ok: bool,
    log_level: str,
    exit_with_parent: bool,
    as_json: bool,
) -> None:
    """Run the daemon: the loopback API, the supervisor and the scheduler.

    Once listening, prints one JSON line (pid, port, started_at, version, api_version) on
    stdout and writes the same to <home>/run/daemon.json. Stops gracefully on SIGTERM/SIGINT
    or `bastion stop`. The log goes to stderr.
    """
    import gc
    import logging

    if host is not None and not host.strip():
        raise click.BadParameter("is empty; leave it out for 127.0.0.1", param_hint="--host")
    from bastion.app import OpenCheckAhead

    cfg = config_from(ctx)
    # No cyclic garbage collection while the daemon starts (issue 22 §7): importing the
    # server stack and building the API make ~80,000 objects that live as long as the daemon,
    # and the collector, run by allocation counts, traversed them again and again (here ~15
    # collections of the middle generation and a full one: 10-15% of the start's CPU). The
    # start leaves almost no garbage cycles (~800 objects, measured). At its handshake the
    # daemon freezes what exists (gc.freeze: never traversed again) and collection resumes
    # (ServeOptions.gc_paused); a start that fails first resumes it here.
    gc.disable()
    try:
        # The database's open-time check runs while the server stack is imported (issue 22 §7:
        # start-up must not grow with the database); the open waits for it before any write.
        precheck = OpenCheckAhead(cfg)
        try:
            from bastion.api.server import ServeOptions
            from bastion.api.server import serve as run_server
        except ModuleNotFoundError as err:
            missing = (err.name or "").partition(".")[0]
            if missing not in SERVER_MODULES:
                raise
            from bastion.errors import ServerNotInstalled

            raise ServerNotInstalled(
                f"`bastion serve` needs the server extra, which is not installed ({missing} is "
                "missing); the library and every other command work without it",
                hint="pip install 'bastion[server]'  (or: uv pip install 'bastion[server]')",
            ) from err

        logging.basicConfig(
            stream=sys.stderr,
            level=log_level.upper(),
            format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        )
        options = ServeOptions(
            host=host,
            port=port,
            token_file=token_file,
            exposed_ok=exposed_ok,
            log_level=log_level,
            exit_with_parent=exit_with_parent,
            gc_paused=True,
        )
        sys.exit(run_server(cfg, options, precheck=precheck))
    finally:
        gc.enable()
