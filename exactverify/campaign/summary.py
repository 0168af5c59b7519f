"""Summaries of campaign records: counts by status and time per group."""

from __future__ import annotations

import statistics
from collections import Counter
from collections.abc import Iterable, Sequence


def field(record: dict, key: str):
    """``key`` of a record: a top-level field (id, status, seconds, ...), else a query
    parameter, else a result field; None when absent."""
    if key in record:
        return record[key]
    for part in ("query", "result"):
        values = record.get(part) or {}
        if key in values:
            return values[key]
    return None


def _sort_key(values: tuple) -> tuple:
    return tuple((value is None, str(type(value)), value if isinstance(value, (int, float, str)) else str(value))
                 for value in values)


def results_table(records: Iterable[dict], by: Sequence[str] = ()) -> list[dict]:
    """One row per group of ``by`` values (see :func:`field`): the group values, ``count``,
    ``n_<status>`` for every status seen, and ``mean_seconds`` / ``median_seconds``."""
    if isinstance(by, str):
        by = (by,)
    records = list(records)
    statuses = sorted({str(record.get("status")) for record in records})
    groups: dict[tuple, list[dict]] = {}
    for record in records:
        values = tuple(field(record, key) for key in by)
        groups.setdefault(tuple(v if isinstance(v, (int, float, str, type(None))) else str(v) for v in values),
                          []).append(record)
    rows = []
    for values in sorted(groups, key=_sort_key):
        members = groups[values]
        seconds = [float(r["seconds"]) for r in members if isinstance(r.get("seconds"), (int, float))]
        counts = Counter(str(r.get("status")) for r in members)
        row = dict(zip(by, values, strict=True))
        row["count"] = len(members)
        row.update({f"n_{status}": counts[status] for status in statuses})
        row["mean_seconds"] = statistics.fmean(seconds) if seconds else None
        row["median_seconds"] = statistics.median(seconds) if seconds else None
        rows.append(row)
    return rows


def format_table(rows: Sequence[dict]) -> str:
    """The rows as an aligned plain-text table (floats with 4 significant digits)."""
    if not rows:
        return "(no records)"
    columns = list(dict.fromkeys(key for row in rows for key in row))
    cell = (lambda v: "" if v is None else f"{v:.4g}" if isinstance(v, float) else str(v))  # noqa: E731
    table = [columns] + [[cell(row.get(c)) for c in columns] for row in rows]
    widths = [max(len(line[i]) for line in table) for i in range(len(columns))]
    return "\n".join("  ".join(text.rjust(width) for text, width in zip(line, widths, strict=True))
                     for line in table)
