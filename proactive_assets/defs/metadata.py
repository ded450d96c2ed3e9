"""Small helpers that turn tables and lists into Dagster metadata the UI renders well."""

from typing import Any

import pyarrow as pa
from dagster import MetadataValue

from proactive_assets.core.events import EventTally

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
    """One warning per object that could not be read, with its reason."""
    for problem in tally.problems:
        if problem.record_index < 0:
            context.log.warning(f"quarantined {problem.message()}")
