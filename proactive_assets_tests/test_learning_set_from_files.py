"""The learning set read from a Parquet event table (its text columns dictionary-encoded, decoded
for the kept rows only) is exactly the one built from the same events in memory."""

import gzip
import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from proactive_assets.core import pairs
from proactive_assets.core.sources import cloudtrail_records
from proactive_assets_tests.cloudtrail_fixtures import record


def test_file_and_memory_give_the_same_learning_set(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pairs, "BATCH_ROWS", 7)  # many batches, duplicates across them
    records = []
    for i in range(60):
        j = i % 45  # the last 15 are the first 15 delivered again (the first copy's other fields count)
        records.append(
            record(
                arn=f"arn:aws:iam::111122223333:user/u{j % 4}",
                ip=f"203.0.113.{j % 5}",
                name=f"Call{i % 6}",
                event_id=f"id{j}",
                time=f"2024-03-05T10:{j:02d}:00Z",
                userAgent=None if i % 7 == 0 else f"agent-{i % 3}",
                errorCode=None if i % 4 else "AccessDenied",
                readOnly=bool(i % 2),
            )
        )
    records.append(record(arn=None, event_id="no-entity"))
    records.append(record(ip="ec2.amazonaws.com", event_id="service"))
    data = gzip.compress(json.dumps({"Records": records}).encode())
    events = cloudtrail_records.parse_log_bytes(data, "s3://b/AWSLogs/o.json.gz", "111122223333", "us-east-1").events
    path = tmp_path / "events.parquet"
    pq.write_table(events, path, compression="zstd")
    from_memory, memory_stats = pairs.build_learning_set(events)
    from_file, file_stats = pairs.build_learning_set(str(path))
    assert memory_stats == file_stats and file_stats["duplicate_events"] == 15
    assert from_file.equals(from_memory)
    assert pairs.table_digest(from_file) == pairs.table_digest(from_memory)
    assert from_file.schema == pairs.LEARNING_SET_SCHEMA
