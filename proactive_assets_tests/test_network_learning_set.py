"""The learning set of network pairs: counts carried by activity rows, the address scope, and learning.csv."""

from datetime import UTC, datetime

import pyarrow as pa

from proactive_assets.core import pairs
from proactive_assets.core.events import EVENTS_SCHEMA
from proactive_assets.core.sources.ocsf import ACTIVITY_SCHEMA

T0 = datetime(2024, 3, 5, 8, tzinfo=UTC)
T1 = datetime(2024, 3, 5, 17, tzinfo=UTC)


def activity(*rows: dict) -> pa.Table:
    base = {name: None for name in ACTIVITY_SCHEMA.names}
    base.update(event_time=T0, is_pair=True, source_kind="ip", source="security_lake:VPC_FLOW", event_name="tcp/443")
    return pa.Table.from_pylist([{**base, **row} for row in rows], schema=ACTIVITY_SCHEMA)


def test_a_network_row_counts_its_events_and_its_last_time() -> None:
    table, stats = pairs.build_learning_set(
        activity(
            {"identity_arn": "i-1", "source_ip": "203.0.113.5", "event_count": 500_000, "last_event_time": T1},
            {"identity_arn": "i-1", "source_ip": "203.0.113.5", "event_count": 3, "error_code": "Blocked"},
        )
    )
    [row] = table.to_pylist()
    assert (row["event_count"], row["error_count"], row["first_seen"], row["last_seen"]) == (500_003, 3, T0, T1)
    assert stats["pairs"] == 1


def test_an_event_table_without_counts_is_one_event_a_row() -> None:
    events = pa.Table.from_pylist(
        [
            {
                "event_time": T0,
                "identity_arn": "arn:aws:iam::111122223333:user/a",
                "source_ip": "198.51.100.1",
                "is_pair": True,
                "event_name": "ListBuckets",
                "source": "cloudtrail",
            },
            {
                "event_time": T1,
                "identity_arn": "arn:aws:iam::111122223333:user/a",
                "source_ip": "198.51.100.1",
                "is_pair": True,
                "event_name": "ListBuckets",
                "source": "cloudtrail",
            },
        ],
        schema=EVENTS_SCHEMA,
    )
    [row] = pairs.build_learning_set(events)[0].to_pylist()
    assert (row["event_count"], row["first_seen"], row["last_seen"]) == (2, T0, T1)


def test_address_scope_says_private_aws_or_public() -> None:
    table, _ = pairs.build_learning_set(
        activity(
            {"identity_arn": "i-1", "source_ip": "10.20.5.10", "event_count": 1},
            {"identity_arn": "i-1", "source_ip": "100.64.0.7", "event_count": 1},
            {"identity_arn": "i-1", "source_ip": "52.216.8.35", "event_count": 1},  # S3, us-east-1
            {"identity_arn": "i-1", "source_ip": "203.0.113.5", "event_count": 1},
            {"identity_arn": "i-1", "source_ip": "fd00::1", "event_count": 1},
        )
    )
    scopes = dict(zip(table.column("source_ip").to_pylist(), table.column("address_scope").to_pylist(), strict=True))
    assert scopes == {
        "10.20.5.10": "private",
        "100.64.0.7": "private",
        "52.216.8.35": "aws",
        "203.0.113.5": "public",
        "fd00::1": "private",
    }


def test_learning_csv_is_one_line_per_pair_ipv4_only() -> None:
    """The issue's 1M-flow object: one pair of 500,000 events was 500,000 identical lines."""
    table, _ = pairs.build_learning_set(
        activity(
            {"identity_arn": "i-1", "source_ip": "203.0.113.5", "event_count": 500_000},
            {"identity_arn": "i-1", "source_ip": "2001:db8::5", "event_count": 7},
            {"identity_arn": "vpc-1/10.0.0.1", "source_ip": "198.51.100.7", "event_count": 2},
            {"identity_arn": "role,with,commas", "source_ip": "::ffff:198.51.100.8", "event_count": 1},
        )
    )
    csv = pairs.sagemaker_csv(table)
    assert csv.data.decode().splitlines() == [
        "i-1,203.0.113.5",
        "role%2Cwith%2Ccommas,198.51.100.8",
        "vpc-1/10.0.0.1,198.51.100.7",
    ]
    assert (csv.lines, csv.skipped_ipv6, csv.skipped_invalid) == (3, 1, 0)
    assert len(csv.data) < 100
