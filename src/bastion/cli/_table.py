"""``Table`` and ``Fields``, the shapes a command's human output takes, and how a table is
printed (Rich on a terminal, tab-separated when piped): see :mod:`bastion.cli._output`, which
re-exports these names.

Their own module so that a command printing one value (``bastion settings get``, called from
scripts in a fresh interpreter each time) does not build these classes at start (issue 7).
"""

from __future__ import annotations

import dataclasses
import os
import sys
from collections.abc import Sequence
from typing import Any

import click

from bastion.cli._output import cell

__all__ = ["Fields", "Table", "print_table"]


@dataclasses.dataclass(frozen=True)
class Table:
    """Rows under named columns; ``empty`` is said (on stderr) when there are no rows.

    On a terminal, ``right`` names the columns to right-align (numbers) and ``wrap`` those
    that may fold onto more lines (names, reasons); the others never break (times, states).
    A terminal narrower than the table gets one record per row instead (``print_table``).
    ``notes`` are lines printed after the table (on stderr when piped, so they never mix
    with rows)."""

    columns: Sequence[str]
    rows: Sequence[Sequence[Any]]
    empty: str = "no rows"
    right: frozenset[str] = frozenset()
    wrap: frozenset[str] = frozenset({"name", "reason", "file", "value", "key", "state"})
    notes: Sequence[str] = ()


@dataclasses.dataclass(frozen=True)
class Fields:
    """One record as ``key: value`` lines, keys aligned; values go through :func:`cell`."""

    items: Sequence[tuple[str, Any]]
    notes: Sequence[str] = ()

    def render(self) -> str:
        width = max((len(k) for k, _ in self.items), default=0) + 1
        lines = [f"{k + ':':<{width}} {cell(v)}" for k, v in self.items]
        return "\n".join([*lines, *self.notes])


def _tsv_cell(text: str) -> str:
    # One row per line, one column per tab: escape what would break that shape.
    return text.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")


def _stdout_is_tty() -> bool:
    # BASTION_FORCE_TTY: draw the Rich table even when piped (screenshots, `script`).
    return sys.stdout.isatty() or os.environ.get("BASTION_FORCE_TTY") == "1"


def print_table(table: Table, *, no_headers: bool = False) -> None:
    """Print ``table``: Rich on a terminal, tab-separated when piped (see the module doc)."""
    if not table.rows:
        for line in (table.empty, *table.notes):
            click.echo(line, err=True)
        return
    rows = [[cell(v) for v in row] for row in table.rows]
    if _stdout_is_tty():
        from rich.console import Console
        from rich.table import Table as RichTable
        from rich.text import Text

        rich_table = RichTable(
            box=None, show_header=not no_headers, header_style="bold", pad_edge=False
        )
        for name in table.columns:
            rich_table.add_column(
                name.upper(),
                justify="right" if name in table.right else "left",
                no_wrap=name not in table.wrap,
                overflow="fold" if name in table.wrap else "ellipsis",
            )
        for row in rows:
            # Text, not str: a cell such as "[REDACTED:KEY]" is data, never Rich markup.
            rich_table.add_row(*(Text(c) for c in row))
        console = Console(file=sys.stdout, highlight=False)
        if console.width < _natural_width(table, rows):
            click.echo(_records(table, rows))
        else:
            console.print(rich_table)
        for note in table.notes:
            click.echo(note)
        return
    lines = [] if no_headers else ["\t".join(c.upper() for c in table.columns)]
    lines += ["\t".join(_tsv_cell(c) for c in row) for row in rows]
    click.echo("\n".join(lines))
    for note in table.notes:
        click.echo(note, err=True)


def _natural_width(table: Table, rows: list[list[str]]) -> int:
    """The table's width with every column at its widest cell, two spaces between columns.

    A terminal narrower than this gets records (:func:`_records`) instead of Rich's
    squeezing, which dropped whole columns: at COLUMNS=60 `secrets list` showed no NAME
    column (a folding column collapsed to nothing), at 20 neither SCOPE nor NAME, and at
    COLUMNS=0 nothing at all, exit 0."""
    from rich.cells import cell_len  # terminal cells: a CJK character takes two

    gaps = 2 * (len(table.columns) - 1)
    return gaps + sum(
        max([len(name), *(cell_len(row[i]) for row in rows)])
        for i, name in enumerate(table.columns)
    )


def _records(table: Table, rows: list[list[str]]) -> str:
    """The rows as records, one ``COLUMN  value`` line per cell and a blank line between
    rows (psql's expanded display): what a terminal too narrow for the table shows."""
    width = max(len(name) for name in table.columns)
    blocks = [
        "\n".join(
            f"{name.upper():<{width}}  {value}"
            for name, value in zip(table.columns, row, strict=True)
        )
        for row in rows
    ]
    return "\n\n".join(blocks)
