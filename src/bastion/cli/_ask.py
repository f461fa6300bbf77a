"""Questions for the person at the terminal -- a confirmation before a destructive step, a
no-echo prompt for a secret -- and what happens when no one is there to answer.

Off a terminal (a script, a pipe, ``</dev/null``, stdin closed) click printed the question,
then "Aborted!" and exit 1, saying neither why nor what to do (``--yes``); a no-echo prompt
(`secrets set --prompt`, `secrets rekey --to passphrase`) first printed Python's
``GetPassWarning`` and "Password input may be echoed". Now: an answer on stdin still counts
(``echo y | bastion db restore B``); stdin ending before one is a ``UsageError`` (exit 2)
naming ``--yes``; a no-echo prompt with no terminal to type at is refused before anything
is read, naming the way to give the value instead. "n" stays click's "Aborted!" (exit 1), Ctrl-C
stays 130.
"""

from __future__ import annotations

import sys

import click

__all__ = ["confirm", "secret_prompt"]


def confirm(question: str) -> None:
    """Ask ``question``; return on yes, ``click.Abort`` on no (exit 1), ``UsageError`` when
    stdin ends before an answer (nothing has been changed when a command asks)."""
    from bastion.errors import UsageError

    try:
        click.confirm(question, abort=True)
    except click.Abort as err:
        if isinstance(err.__context__, KeyboardInterrupt):
            raise KeyboardInterrupt from None  # Ctrl-C: the command edge's 130
        if not isinstance(err.__context__, EOFError):
            raise  # answered no
        click.echo("", err=True)  # end the question's line
        raise UsageError(
            "no answer to the question: standard input ended before one"
            + ("" if sys.stdin.isatty() else " (it is not a terminal)")
            + "; nothing was changed",
            hint="Pass --yes to go ahead without the question, or answer it on stdin "
            "(`echo y | bastion ...`).",
        ) from None


def secret_prompt(
    what: str, *, instead: str, confirmation: bool = False, empty_ok: bool = False
) -> str:
    """A value typed without echo (asked twice with ``confirmation``; Enter alone gives ""
    with ``empty_ok``, else the question is asked again). With no terminal to type it at
    (no controlling terminal and stdin not one: getpass would read stdin with echo on), a
    ``UsageError`` whose hint is ``instead``: how to give the value otherwise."""
    import getpass
    import warnings

    from bastion.errors import UsageError

    with warnings.catch_warnings():
        # getpass warns, before it reads anything, when it cannot turn echo off.
        warnings.simplefilter("error", getpass.GetPassWarning)
        try:
            value: str = click.prompt(
                what,
                # None: Enter alone asks again; "" (not shown, no "[]"): Enter alone gives "".
                default="" if empty_ok else None,
                hide_input=True,
                confirmation_prompt=confirmation,
                err=True,
                show_default=False,
            )
        except getpass.GetPassWarning:
            click.echo("", err=True)  # end the question's line
            raise UsageError(
                f"the {what} is typed at a terminal, and there is none to type it at "
                "(standard input is not one); nothing was changed",
                hint=instead,
            ) from None
    return value
