"""Small helpers that turn tables and lists into Dagster metadata the UI renders well, and safely.

Cells come from logs (ARNs, event names, object keys): Markdown previews encode every value with
``escaping.markdown_text`` (it shows as text, never as a link, image or HTML), and log lines with
``escaping.one_line`` (one line each, no link). Dagster renders a Markdown entry inline only when it
is shorter than 1,000 characters (longer ones sit behind "[Show Markdown]"); a table entry
(``MetadataValue.table``) always renders inline, as plain text.
"""

from typing import Any

import pyarrow as pa
from dagster import MetadataValue, TableColumn, TableRecord, TableSchema

from proactive_assets.core.escaping import markdown_text, one_line
from proactive_assets.core.events import EventTally

PREVIEW_ROWS = 10

#: Longest value shown in a preview cell (the table has the whole value).
CELL_CHARS = 120


def _cell(value: Any) -> str:
    if isinstance(value, list):
        value = ", ".join(map(str, value[:5])) + (" …" if len(value) > 5 else "")
    text = "" if value is None else str(value)
    return markdown_text(text[:CELL_CHARS])


def table_preview(table: pa.Table, columns: list[str] | None = None, rows: int = PREVIEW_ROWS) -> MetadataValue:
    """The first rows as a Markdown table (no extra dependency), every cell encoded as inert text."""
    table = table.select(columns) if columns else table
    head = table.slice(0, rows).to_pylist()
    names = table.column_names
    lines = ["| " + " | ".join(markdown_text(n) for n in names) + " |", "|" + "---|" * len(names)]
    lines += ["| " + " | ".join(_cell(row[n]) for n in names) + " |" for row in head]
    if table.num_rows > rows:
        lines.append(f"\n… {table.num_rows - rows} more rows")
    return MetadataValue.md("\n".join(lines))


def text_list(values: list[str], limit: int = 50) -> MetadataValue:
    """A bullet list of values (object keys...), each encoded as inert text."""
    shown = sorted(values)[:limit]
    more = f"\n… and {len(values) - limit} more" if len(values) > limit else ""
    return MetadataValue.md("\n".join(f"- {markdown_text(v)}" for v in shown) + more if shown else "(none)")


def record_preview(
    records: list[dict[str, Any]], fields: list[tuple[str, str]], title_field: str, rows: int = PREVIEW_ROWS
) -> MetadataValue:
    """Records one below the other as a two-column table (field, value): long values wrap, nothing scrolls.

    ``fields`` is ``(key, label)`` in display order; each record starts with a row
    ``(#n, record[title_field])``. Shown as plain text by the UI (a table entry is never Markdown).
    """
    out: list[TableRecord] = []
    for number, record in enumerate(records[:rows], 1):
        out.append(TableRecord({"field": f"#{number}", "value": one_line(record.get(title_field))}))
        for key, label in fields:
            value = record.get(key)
            if isinstance(value, list):
                value = ", ".join(map(str, value))
            if value is None or value == "":
                continue
            if isinstance(value, float):
                value = f"{value:.4f}"
            out.append(TableRecord({"field": label, "value": one_line(value)}))
    if len(records) > rows:
        out.append(TableRecord({"field": "…", "value": f"{len(records) - rows} more (see the table)"}))
    schema = TableSchema(columns=[TableColumn("field", "string"), TableColumn("value", "string")])
    return MetadataValue.table(out, schema=schema)


def event_metadata(tally: EventTally, quarantine: pa.Table, objects: int, listing_problems: int = 0) -> dict[str, Any]:
    """What every event table's materialisation reports: counts, the quarantine and a preview."""
    parsed = objects - len(tally.quarantined)
    metadata: dict[str, Any] = {
        "objects": objects,
        "objects_parsed": parsed,
        "events": tally.events,
        "pair_events": tally.pair_events,
        "rejected_records": tally.rejected_records,
        "rejected_reasons": MetadataValue.json(dict(tally.rejected_reasons)),
        "quarantined_objects": len(tally.quarantined) + listing_problems,
        "parse_ratio": float(parsed / objects) if objects else 1.0,
        "quarantine": table_preview(quarantine, rows=20) if quarantine.num_rows else MetadataValue.md("(none)"),
        "accounts": sorted(tally.accounts),
        "regions": sorted(tally.regions),
        "preview": table_preview(
            tally.head, ["event_time", "event_name", "identity_arn", "source_ip", "source_kind", "account", "region"]
        ),
    }
    if tally.by_label:
        metadata["sources"] = MetadataValue.json({k: dict(v) for k, v in sorted(tally.by_label.items())})
    return metadata


def log_quarantined(context: Any, tally: EventTally) -> None:
    """One warning per object that could not be read, with its reason (one line each, whatever the key says)."""
    for problem in tally.problems:
        if problem.record_index < 0:
            context.log.warning(f"quarantined {problem.message()}")
