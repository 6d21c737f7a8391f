"""What a column must hold for a source to read it: one rule for `task submit` (refused there, exit 2), `label apply`
(that source's fault) and weak-label columns.

keyword/regex sources read text, threshold sources numbers, column sources class indices (integers; whole numbers
in a float column, NaN or null for abstain). A column of nulls only suits every kind: the source abstains.
"""

from __future__ import annotations

from typing import Callable

import pyarrow as pa
import pyarrow.compute as pc

#: What each source kind needs its column to hold, as the messages say it.
NEEDS = {
    "keyword": "text",
    "regex": "text",
    "threshold": "numbers",
    "column": "class indices (integers, -1 or null = abstain)",
}


def _whole_numbers(values: pa.ChunkedArray | pa.Array) -> bool:
    v = pc.drop_null(pc.if_else(pc.is_nan(values), None, values))
    return len(v) == 0 or bool(pc.all(pc.equal(pc.floor(v), v)).as_py())


def column_problem(schema: pa.Schema, column: str, kind: str,
                   values: Callable[[], pa.ChunkedArray | pa.Array] | None = None) -> str | None:
    """Why a ``kind`` source cannot read ``column`` of a table with this ``schema``, or None.

    ``values`` (called only for a float column read by a column source) gives the column's values, to refuse
    fractions; without it a float column passes. Kinds other than those in :data:`NEEDS` read any column.
    """
    if column not in schema.names:
        cols = [c for c in schema.names if c != "_row"]
        more = ", ..." if len(cols) > 12 else ""
        return f"no such column {column!r} in the dataset (columns: {', '.join(cols[:12])}{more})"
    t = schema.field(column).type
    if pa.types.is_dictionary(t):
        t = t.value_type
    if kind not in NEEDS or pa.types.is_null(t):
        return None
    if kind in ("keyword", "regex"):
        ok = pa.types.is_string(t) or pa.types.is_large_string(t) or str(t) == "string_view"
    elif kind == "threshold":
        ok = pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_decimal(t)
    else:
        ok = pa.types.is_integer(t) or (pa.types.is_floating(t) and (values is None or _whole_numbers(values())))
    if ok:
        return None
    fractions = ", not fractions" if kind == "column" and pa.types.is_floating(t) else ""
    return f"column {column!r} holds {t}: a {kind} source needs {NEEDS[kind]}{fractions}"
