"""Terminal output: JSON for scripts, tables for people, errors on stderr.

rich renders tables on a terminal; piped output gets plain aligned columns,
which stay fast at tens of thousands of rows and are easy to grep.
"""

from __future__ import annotations

import json
import sys
from typing import Any, Sequence

from rich.console import Console
from rich.table import Table


def emit_json(obj: Any) -> None:
    sys.stdout.write(json.dumps(obj, indent=2, default=str, ensure_ascii=False) + "\n")


def error(msg: str) -> None:
    sys.stderr.write(f"error: {msg}\n")


def info(msg: str) -> None:
    sys.stdout.write(msg + "\n")


def note(msg: str) -> None:
    """A remark beside machine-readable output: stderr, so stdout stays pure JSON."""
    sys.stderr.write(msg + "\n")


def table(rows: Sequence[Sequence[Any]], headers: Sequence[str], title: str | None = None) -> None:
    if sys.stdout.isatty() and len(rows) <= 2000:
        t = Table(title=title, header_style="bold")
        for h in headers:
            t.add_column(h)
        for r in rows:
            t.add_row(*("" if v is None else str(v) for v in r))
        Console().print(t)
        return
    cells = [[str(h) for h in headers]] + [["" if v is None else str(v) for v in r] for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    out = []
    for row in cells:
        out.append("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip())
    sys.stdout.write("\n".join(out) + "\n")
