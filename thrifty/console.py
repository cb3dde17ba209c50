"""The terminal both CLIs (`agent` and `agent bench`) write to, and how they fail: one line, no traceback."""

from __future__ import annotations

import typer
from rich.console import Console
from rich.text import Text

from thrifty.workflows.result import EXIT_BAD_INPUT

err = Console(stderr=True)
out = Console()


def fail(message: str, code: int = EXIT_BAD_INPUT) -> typer.Exit:
    """Print ``error: message`` on stderr and return the Exit to raise (``raise fail(...) from None``)."""
    err.print(Text("error: ", style="red") + Text(message), soft_wrap=True)
    return typer.Exit(code)
