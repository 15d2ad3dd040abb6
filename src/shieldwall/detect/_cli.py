"""The `detect` part's commands, registered on the root CLI app."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Add this part's commands to ``app``."""
