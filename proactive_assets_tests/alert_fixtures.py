"""Upstream partitions of the ``alerts`` asset, written as their assets would, so it runs alone."""

import json
from datetime import date, timedelta

import pandas as pd
import pyarrow as pa

from proactive_assets.core.warehouse import Warehouse

ACCOUNT = "111122223333"


def plant_alert_inputs(warehouse: Warehouse, day: date, rows: list[dict[str, object]]) -> None:
    """``daily_insights`` (the given rows), ``training_set`` (alice on one address) and the model's metadata."""
    insights = pd.DataFrame(rows).assign(day=day, entity_known=False, sources=[["cloudtrail"]] * len(rows))
    insights["source_files"] = [[] for _ in rows]
    warehouse.write_tables("daily_insights", day, {"daily_insights": pa.Table.from_pandas(insights)})
    training = pa.table(
        {
            "entity": [f"arn:aws:iam::{ACCOUNT}:user/alice"],
            "source_ip": ["203.0.113.5"],
            "event_count": [3],
            "sources": [["cloudtrail"]],
            "day": [day - timedelta(days=1)],
        }
    )
    warehouse.write_tables("training_set", day, {"training_set": training})
    with warehouse.partition("ip_insights_model", day) as out:
        out.write_bytes("model.json", json.dumps({"version": "m-1", "validation_auc": 0.97}).encode())
