"""``bastion dashboard``: print a one-time sign-in link for the running daemon's dashboard.

The link is minted by the daemon (``POST /v1/dashboard/login`` with the API token from
``run/token``), so it works only while that daemon runs and only once; the token itself never
appears in the link, in the browser, or on screen.
"""

from __future__ import annotations

import click

from bastion.cli._output import config_from, emit, json_option, no_daemon, run_command


@click.command()
@click.option("--open", "open_browser", is_flag=True, help="Also open the link in a browser.")
@json_option
@click.pass_context
@run_command
def dashboard(ctx: click.Context, open_browser: bool, as_json: bool) -> None:
    """Print a sign-in link for the dashboard of this home's running daemon.

    The link works once, for a few minutes; run the command again for a new one.
    """
    from bastion.client import DaemonClient

    cfg = config_from(ctx)
    client = DaemonClient.for_home(cfg, timeout=10)
    if client is None:
        raise no_daemon(
            cfg,
            "cannot make a dashboard link",
            start_hint="Start one with `bastion serve` (it prints a sign-in link too).",
        )
    answer = client.post("/v1/dashboard/login", {})
    url = str(answer["url"])
    data = {"url": url, "expires_in_s": int(answer["expires_in_s"])}
    emit(
        data,
        as_json,
        lambda d: f"{d['url']}\n(works once, for {d['expires_in_s'] // 60} minutes)",
    )
    if open_browser:
        import webbrowser

        webbrowser.open(url)
