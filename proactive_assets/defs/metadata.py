"""Small helpers that turn tables and lists into Dagster metadata the UI renders well."""

from typing import Any

import pyarrow as pa
from dagster import MetadataValue

PREVIEW_ROWS = 10


def _cell(value: Any) -> str:
    if isinstance(value, list):
        value = ", ".join(map(str, value[:5])) + (" …" if len(value) > 5 else "")
    text = "" if value is None else str(value)
    return text.replace("|", "\\|").replace("\n", " ")[:120]


def table_preview(table: pa.Table, columns: list[str] | None = None, rows: int = PREVIEW_ROWS) -> MetadataValue:
    """The first rows as a Markdown table (no extra dependency)."""
    table = table.select(columns) if columns else table
    head = table.slice(0, rows).to_pylist()
    names = table.column_names
    lines = ["| " + " | ".join(names) + " |", "|" + "---|" * len(names)]
    lines += ["| " + " | ".join(_cell(row[n]) for n in names) + " |" for row in head]
    if table.num_rows > rows:
        lines.append(f"\n… {table.num_rows - rows} more rows")
    return MetadataValue.md("\n".join(lines))


def text_list(values: list[str], limit: int = 50) -> MetadataValue:
    shown = sorted(values)[:limit]
    more = f"\n… and {len(values) - limit} more" if len(values) > limit else ""
    return MetadataValue.md("\n".join(f"- `{v}`" for v in shown) + more if shown else "(none)")
