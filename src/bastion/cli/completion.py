"""``bastion completion bash|zsh|fish``: print the shell's completion script."""

from __future__ import annotations

import click

from bastion.cli._output import emit, json_option, run_command

__all__ = ["completion"]

_INSTALL = {
    "bash": 'eval "$(bastion completion bash)"   # in ~/.bashrc',
    "zsh": 'eval "$(bastion completion zsh)"    # in ~/.zshrc',
    "fish": "bastion completion fish > ~/.config/fish/completions/bastion.fish",
}


@click.command()
@click.argument("shell", type=click.Choice(sorted(_INSTALL)))
@json_option
@run_command
def completion(shell: str, as_json: bool) -> None:
    """Print the completion script for SHELL (bash, zsh or fish).

    It completes commands and options, and service names, secret names and setting keys from
    the home. Install it with one of:

    \b
      eval "$(bastion completion bash)"   # in ~/.bashrc
      eval "$(bastion completion zsh)"    # in ~/.zshrc
      bastion completion fish > ~/.config/fish/completions/bastion.fish
    """
    from click.shell_completion import get_completion_class

    from bastion.cli import cli

    cls = get_completion_class(shell)
    if cls is None:  # pragma: no cover - the Choice above lists only shells click has
        raise click.BadParameter(f"no completion for {shell}", param_hint="SHELL")
    script = cls(cli, {}, "bastion", "_BASTION_COMPLETE").source()
    emit(
        {"shell": shell, "script": script, "install": _INSTALL[shell]},
        as_json,
        lambda d: d["script"].rstrip("\n"),
    )
