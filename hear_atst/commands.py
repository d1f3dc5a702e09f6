"""Sub-commands of ``hear-atst`` for this package (placeholder until implemented)."""

import typer


def register(app: typer.Typer) -> None:
    """Add this package's commands to the ``hear-atst`` app."""
