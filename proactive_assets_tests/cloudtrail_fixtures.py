"""Builders for CloudTrail objects in the real bucket layout (local folder or S3)."""

import gzip
import json
from datetime import date
from typing import Any

from proactive_assets.core.storage import ObjectStore

ACCOUNT = "111122223333"
ORG_ACCOUNT = "444455556666"
ORG_ID = "o-abcdef1234"


def record(
    arn: str | None = "arn:aws:iam::111122223333:user/alice",
    ip: str | None = "203.0.113.10",
    name: str = "DescribeInstances",
    time: str = "2024-03-05T10:00:00Z",
    event_id: str | None = None,
    **extra: Any,
) -> dict:
    identity: dict[str, Any] = {"type": "IAMUser", "accountId": ACCOUNT}
    if arn is not None:
        identity["arn"] = arn
    rec: dict[str, Any] = {
        "eventVersion": "1.09",
        "userIdentity": identity,
        "eventTime": time,
        "eventSource": "ec2.amazonaws.com",
        "eventName": name,
        "awsRegion": "us-east-1",
        "userAgent": "aws-cli/2.15",
        "requestParameters": {"filterSet": {}, "instancesSet": {"items": [{"instanceId": "i-1"}]}},
        "responseElements": None,
        "eventID": event_id or f"{arn}-{ip}-{name}-{time}",
        "readOnly": True,
        "recipientAccountId": ACCOUNT,
    }
    if ip is not None:
        rec["sourceIPAddress"] = ip
    rec.update(extra)
    return rec


def log_key(
    day: date,
    account: str = ACCOUNT,
    region: str = "us-east-1",
    minute: int = 0,
    org_id: str | None = None,
    uid: str = "AbCdEfGh12345678",
) -> str:
    root = f"AWSLogs/{org_id}/{account}" if org_id else f"AWSLogs/{account}"
    stamp = f"{day:%Y%m%d}T{minute // 60:02d}{minute % 60:02d}Z"
    return f"{root}/CloudTrail/{region}/{day:%Y/%m/%d}/{account}_CloudTrail_{region}_{stamp}_{uid}.json.gz"


def put_log(store: ObjectStore, key: str, records: list[dict]) -> None:
    store.put(key, gzip.compress(json.dumps({"Records": records}).encode(), mtime=0))


def put_digest(store: ObjectStore, day: date, account: str = ACCOUNT, region: str = "us-east-1") -> None:
    key = (
        f"AWSLogs/{account}/CloudTrail-Digest/{region}/{day:%Y/%m/%d}/"
        f"{account}_CloudTrail-Digest_{region}_main_{region}_{day:%Y%m%d}T010000Z.json.gz"
    )
    store.put(key, gzip.compress(json.dumps({"awsAccountId": account, "logFiles": []}).encode()))


def write_history(store: ObjectStore, start: date, days: int, users: int = 12, seed: int = 0) -> list[str]:
    """Users who each call from a few hosts of their own /24, one log object per day; returns their ARNs."""
    import random
    from datetime import timedelta

    rng = random.Random(seed)
    arns = [f"arn:aws:iam::{ACCOUNT}:user/user{u:02d}" for u in range(users)]
    nets = [f"{rng.randint(11, 99)}.{rng.randint(0, 255)}.{u}" for u in range(users)]
    for d in range(days):
        day = start + timedelta(days=d)
        recs = []
        for arn, net in zip(arns, nets, strict=True):
            for i in range(rng.randint(15, 30)):
                recs.append(
                    record(
                        arn=arn,
                        ip=f"{net}.{rng.randint(1, 6)}",
                        name="ListBuckets",
                        time=f"{day}T{i % 24:02d}:{rng.randint(0, 59):02d}:00Z",
                    )
                )
        put_log(store, log_key(day, minute=30, uid=f"History{d:09d}"), recs)
    return arns
