"""The console the commands print their tables and progress on."""

from __future__ import annotations

from rich.console import Console


def table_console(width: int = 140) -> Console:
    """The terminal's console or, piped or in CI, one `width` columns wide (rich would assume 80
    and squeeze the tables)."""
    console = Console()
    return console if console.is_terminal else Console(width=width)
