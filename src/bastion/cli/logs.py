"""``bastion logs``: read (and follow) the built-in logs table."""

from __future__ import annotations

import datetime as dt
import json
import math
import re
import time
from typing import TYPE_CHECKING, Any

import click

from bastion.cli._complete import complete_service
from bastion.cli._output import (
    config_from,
    human_time,
    json_option,
    limit_option,
    run_command,
    to_json,
)

if TYPE_CHECKING:
    from collections.abc import Callable

    from bastion.config import Config
    from bastion.domains.logs import LogRecord

__all__ = ["format_line", "logs", "parse_time"]

_RELATIVE = re.compile(r"^(?P<n>\d+(?:\.\d+)?)(?P<unit>[smhdw])$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_time(text: str, *, now: float | None = None, param_hint: str | None = None) -> float:
    """``10m``/``2h``/``1d`` ago, unix seconds, or an ISO-8601 time (UTC unless it says)."""
    value = text.strip()
    refused = click.BadParameter(
        f"{text[:60]!r} is not a time; use 10m / 2h / 1d (ago), unix seconds, or "
        "2026-01-31T12:00:00",
        param_hint=param_hint,
    )
    match = _RELATIVE.match(value)
    if match:
        return (time.time() if now is None else now) - float(match.group("n")) * _UNITS[
            match.group("unit")
        ]
    try:
        number = float(value)
    except ValueError:
        pass
    else:
        if not math.isfinite(number):  # "nan", "inf": a bound matching nothing, silently
            raise refused
        return number
    try:
        parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise refused from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=dt.UTC)
    return parsed.timestamp()


def _follow_daemon(
    cfg: Config, filters: dict[str, Any], last: int, show: Callable[[list[LogRecord]], bool]
) -> bool:
    """Follow through the running daemon's SSE tail (lines arrive as the supervisor stores
    them, no polling), resuming after ``last`` so nothing is missed or repeated. Returns
    False when no daemon runs for this home (the caller polls the database instead)."""
    from bastion._time import from_rfc3339
    from bastion.client import DaemonClient
    from bastion.domains.logs import LogRecord

    client = DaemonClient.for_home(cfg)
    if client is None:
        return False
    query = {k: v for k, v in filters.items() if k in {"source", "level", "text"} and v}
    # Ctrl-C ends the follow; run_command turns it into exit status 130.
    with client.stream("/v1/logs/stream", last_event_id=str(last), query=query) as events:
        for event in events:
            if event.event != "log":
                continue
            data = event.json()
            record = LogRecord(
                ts=from_rfc3339(data["ts"]),  # the API writes RFC 3339
                level=data["level"],
                source=data["source"],
                stream=data["stream"],
                message=data["message"],
                fields=data.get("fields"),
                id=data["id"],
            )
            if not show([record]):
                return True
    return True


def format_line(r: LogRecord) -> str:
    """One log line for people (``bastion logs``, ``services logs``): local time with its
    offset, to the millisecond, then level, source/stream and the message."""
    stream = f"/{r.stream}" if r.stream else ""
    return f"{human_time(r.ts, precise=True)} {r.level.upper():8} {r.source}{stream}: {r.message}"


@click.command()
@click.option(
    "--source", "-s", help="Only this source (a service name).", shell_complete=complete_service
)
@click.option("--level", "-l", help="Minimum level: debug, info, warning, error, critical.")
@click.option("--since", help="From this time: 10m, 2h, 1d (ago), unix seconds, or ISO-8601.")
@click.option("--until", help="Before this time (same forms as --since).")
@click.option("--grep", "text", help="Only messages containing TEXT (case-insensitive).")
@limit_option(100, "Lines to show.")
@click.option(
    "--follow", "-f", is_flag=True, help="Keep printing new lines as they arrive (Ctrl-C stops)."
)
@click.option(
    "--poll",
    default=0.5,
    show_default=True,
    type=click.FloatRange(0.01, 60),
    help="Seconds between polls with --follow.",
)
@click.option(
    "--exit-after",
    type=click.IntRange(1),
    hidden=True,
    help="Stop following after this many lines (scripts, tests).",
)
@json_option
@click.pass_context
@run_command
def logs(
    ctx: click.Context,
    *,
    source: str | None,
    level: str | None,
    since: str | None,
    until: str | None,
    text: str | None,
    limit: int,
    follow: bool,
    poll: float,
    exit_after: int | None,
    as_json: bool,
) -> None:
    """Show captured service logs, newest last. With --json, one JSON object per line when
    following, else a JSON list."""
    from bastion.app import Home
    from bastion.domains.logs import normalize_level

    if level is not None:
        try:
            level = normalize_level(level)
        except ValueError as err:
            raise click.BadParameter(str(err), param_hint="--level") from err
    filters: dict[str, Any] = {
        "source": source,
        "level": level,
        "since": parse_time(since, param_hint="--since") if since is not None else None,
        "until": parse_time(until, param_hint="--until") if until is not None else None,
        "text": text,
    }
    with Home.open(config_from(ctx), create=False) as home:
        repo = home.logs
        # The newest ``limit`` matching lines, printed oldest first.
        page = repo.query(**filters, limit=limit, newest_first=True)
        records = list(reversed(page.items))
        if as_json and not follow:
            click.echo(json.dumps(to_json([r.to_dict() for r in records]), indent=2))
            return
        if not records and not follow:
            click.echo("no log lines", err=True)
        shown = 0

        def show(batch: list[LogRecord]) -> bool:
            nonlocal shown
            for r in batch:
                click.echo(json.dumps(to_json(r.to_dict())) if as_json else format_line(r))
                shown += 1
                if exit_after is not None and shown >= exit_after:
                    return False
            return True

        if not show(records) or not follow:
            return
        last = max(r.id or 0 for r in records) if records else repo.latest_id()
        if until is None and _follow_daemon(config_from(ctx), filters, last, show):
            return
        # Ctrl-C ends the follow; run_command turns it into exit status 130.
        while True:
            batch = list(repo.query(**filters, after_id=last, limit=1000).items)
            if batch:
                last = batch[-1].id or last
                if not show(batch):
                    return
            else:
                time.sleep(poll)  # follow mode's poll interval, not a wait on a condition
