"""The regression gate's rows as the plain-text table CI prints, followed by a one-line verdict."""

from __future__ import annotations

import io

from rich.console import Console
from rich.table import Table

from evaluation.leaderboard.gate import GateRow

COLUMNS = ("pair", "metric", "baseline", "current", "change", "tolerance", "chance", "status", "detail")


def render_gate(rows: list[GateRow], width: int = 200) -> str:
    """The gate as a plain-text table, then ``passed: N checks`` or ``FAILED: <the failed checks>``."""
    table = Table(title="Regression gate", show_lines=False)
    for column in COLUMNS:
        table.add_column(column, overflow="fold")
    for row in rows:
        change = f"{row.current - row.baseline:+.4f}" if row.current is not None and row.baseline is not None else "–"
        table.add_row(row.key, row.metric, number(row.baseline), number(row.current), change, number(row.tolerance),
                      number(row.chance), row.status, row.detail)
    buffer = io.StringIO()
    Console(file=buffer, width=width, color_system=None).print(table)
    failed = [row.key for row in rows if row.failed]
    verdict = f"FAILED: {', '.join(failed)}" if failed else f"passed: {len(rows)} checks"
    return buffer.getvalue() + verdict + "\n"


def number(value: float | None) -> str:
    """A score with four decimals, or a dash."""
    return "–" if value is None else f"{value:.4f}"
