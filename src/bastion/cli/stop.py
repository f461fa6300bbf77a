"""``bastion stop``: ask the home's running daemon to shut down gracefully, and wait."""

from __future__ import annotations

import time

import click

from bastion.cli._output import config_past_file, emit, json_option, run_command


@click.command()
@click.option(
    "--timeout",
    type=click.FloatRange(0.1, 3600),
    default=60.0,
    show_default=True,
    help="Seconds to wait for the daemon to finish stopping its services.",
)
@json_option
@click.pass_context
@run_command
def stop(ctx: click.Context, timeout: float, as_json: bool) -> None:
    """Stop the daemon running for this home (services first, then the API). Idempotent."""
    from bastion.client import DaemonClient
    from bastion.errors import DaemonUnreachable
    from bastion.runfiles import pid_alive, read_handshake

    # A bastion.toml broken while the daemon ran is not the daemon's (it read the file at its
    # start): stopping it must not wait for the file's repair.
    cfg, _ = config_past_file(ctx)
    client = DaemonClient.for_home(cfg)
    if client is None:
        emit(
            {"running": False, "stopped": False, "home": str(cfg.home)},
            as_json,
            lambda d: f"no daemon is running for the home {d['home']} (nothing to stop)",
        )
        return
    answer = client.shutdown()
    pid = int(answer["pid"])
    # The daemon removes its handshake and exits once services are stopped: wait for that.
    deadline = time.monotonic() + timeout
    while pid_alive(pid) and read_handshake(cfg.run_dir) is not None:
        if time.monotonic() >= deadline:
            raise DaemonUnreachable(
                f"the daemon (pid {pid}) did not stop within {timeout:g} s",
                hint="It may be waiting on a service's stop grace period; "
                f"wait longer, or `kill -TERM {pid}` again.",
            )
        time.sleep(0.05)  # polling a process we do not own: no event to wait on
    emit(
        {"running": False, "stopped": True, "pid": pid},
        as_json,
        lambda d: f"stopped the daemon (pid {d['pid']})",
    )
