"""Generated reference pages: ``python -m bastion._docs`` (``make docs``) rewrites them, and
``tests/test_docs.py`` fails when a committed page differs from what the code generates.

Each page is rendered from the code it documents (the error tree, the supervisor's state
table, the click command tree), so the docs cannot drift from the behaviour.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable
from pathlib import Path

import click

__all__ = ["PAGES", "render_cli_reference", "write_all"]


def _errors() -> str:
    from bastion.errors import render_errors_markdown

    return render_errors_markdown()


def _config() -> str:
    from bastion.config import render_config_markdown

    return render_config_markdown()


def _states() -> str:
    module = importlib.import_module("bastion.supervisor.states")
    render: Callable[[], str] = module.render_states_markdown
    return render()


def _command_rows(
    command: click.Command, path: list[str], parent: click.Context | None, root: click.Context
) -> list[str]:
    lines: list[str] = []
    name = " ".join(path)
    lines.append(f"## `{name}`")
    lines.append("")
    # The root's context is the program itself: a child context named "bastion" under it
    # would print "Usage: bastion bastion ...".
    sub_ctx = root if parent is None else click.Context(command, info_name=path[-1], parent=parent)
    help_text = command.get_help(sub_ctx)
    # click wraps help to the terminal width; pin it so the page is the same everywhere.
    lines.append("```")
    lines.extend(line.rstrip() for line in help_text.splitlines())
    lines.append("```")
    lines.append("")
    if isinstance(command, click.Group):
        for sub_name in command.list_commands(sub_ctx):
            sub = command.get_command(sub_ctx, sub_name)
            if sub is not None and not sub.hidden:
                lines.extend(_command_rows(sub, [*path, sub_name], sub_ctx, root))
    return lines


def render_cli_reference() -> str:
    from bastion.cli import cli

    ctx = click.Context(
        cli,
        info_name="bastion",
        terminal_width=100,
        max_content_width=100,
        help_option_names=["-h", "--help"],
    )
    lines = [
        "# CLI reference",
        "",
        "<!-- Generated from the click commands by `python -m bastion._docs`; do not edit. -->",
        "",
        "Every command takes `--json` for machine-readable output (timestamps as RFC 3339 UTC",
        "strings); tables print as tab-separated rows when piped (`--no-headers` drops the",
        "header line). Errors are printed as `error: …` plus a `hint: …` (with `--json`, the",
        "API's `{code, message, hint}` object) and exit with the statuses in",
        "[errors.md](errors.md#exit-statuses).",
        "",
    ]
    lines.extend(_command_rows(cli, ["bastion"], None, ctx))
    return "\n".join(lines).rstrip() + "\n"


def _has_states() -> bool:
    try:
        importlib.import_module("bastion.supervisor.states")
    except ImportError:
        return False
    return True


#: docs path (relative to the repository root) -> renderer
PAGES: dict[str, Callable[[], str]] = {
    "docs/errors.md": _errors,
    "docs/config.md": _config,
    "docs/cli-reference.md": render_cli_reference,
}
if _has_states():
    PAGES["docs/states.md"] = _states


def write_all(root: Path) -> list[Path]:
    from bastion._fs import atomic_write

    written = []
    for rel, render in PAGES.items():
        target = root / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(target, render(), mode=0o644)
        written.append(target)
    return written


if __name__ == "__main__":
    repo = Path(sys.argv[1]) if len(sys.argv) > 1 else Path.cwd()
    for page in write_all(repo):
        print(f"wrote {page}")
