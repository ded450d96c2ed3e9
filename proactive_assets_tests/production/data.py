"""CloudTrail data for the production tests: the project's own sample, packed into few objects.

``proactive-assets sample`` writes CloudTrail as the service delivers it, a small object every
few minutes per account and region (about 400 a day). Through moto each object is a request, so
the tests pack each account/region/day folder into one object with all of its records (a
CloudTrail log file holds any number of records): the same events, a tenth of the requests.
"""

import gzip
import json
import subprocess
import sys
from collections import defaultdict
from collections.abc import Iterable, Mapping
from datetime import date
from pathlib import Path
from typing import Any

BIN = Path(sys.executable).parent
#: A documentation network (RFC 5737): never used by the sample, so never seen for any identity.
SUSPICIOUS_IP = "203.0.113.66"


def make_sample(out: Path, start: date, days: int, seed: int = 7) -> Path:
    """``proactive-assets sample`` (the console script a user runs) into ``out``."""
    subprocess.run(
        [str(BIN / "proactive-assets"), "sample", str(out), "--start", start.isoformat(), "--days", str(days),
         "--seed", str(seed)],
        check=True, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    return out


def _day_of(parts: tuple[str, ...]) -> date:
    return date(int(parts[-4]), int(parts[-3]), int(parts[-2]))


def packed_day(sample: Path, day: date) -> dict[str, bytes]:
    """The day's log objects packed one per account/region folder: ``{key: gzip bytes}``.

    Each packed object keeps the name of the folder's first object, so keys still follow the
    CloudTrail layout (organisation trails included); digests are left out.
    """
    folders: dict[Path, list[Path]] = defaultdict(list)
    for path in sorted((sample / "AWSLogs").rglob("*.json.gz")):
        relative = path.relative_to(sample).parts
        if "CloudTrail" not in relative or _day_of(relative) != day:
            continue
        folders[path.parent].append(path)
    objects: dict[str, bytes] = {}
    for _, files in sorted(folders.items()):
        records: list[Any] = []
        for path in files:
            records.extend(json.loads(gzip.decompress(path.read_bytes()))["Records"])
        key = files[0].relative_to(sample).as_posix()
        objects[key] = gzip.compress(json.dumps({"Records": records}).encode(), mtime=0)
    if not objects:
        raise ValueError(f"the sample in {sample} has no CloudTrail objects for {day}")
    return objects


def records(objects: Mapping[str, bytes]) -> list[dict[str, Any]]:
    return [r for body in objects.values() for r in json.loads(gzip.decompress(body))["Records"]]


def busiest_user(history: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """A record of the IAM user with the most events from IP addresses: the identity to impersonate."""
    counts: dict[str, int] = defaultdict(int)
    example: dict[str, dict[str, Any]] = {}
    for record in history:
        identity = record.get("userIdentity") or {}
        source = str(record.get("sourceIPAddress", ""))
        if identity.get("type") != "IAMUser" or not source[:1].isdigit():
            continue
        counts[identity["arn"]] += 1
        example.setdefault(identity["arn"], record)
    if not counts:
        raise ValueError("no IAM user calls from an IP address in the history")
    return example[max(counts, key=lambda arn: (counts[arn], arn))]


def suspicious_object(
    template: Mapping[str, Any], day: date, ip: str = SUSPICIOUS_IP, uid: str = "Injected0001"
) -> tuple[str, bytes]:
    """A CloudTrail object for ``day``: the template's identity reading secrets from ``ip``.

    The key is a valid log object key in the template's account and region; the records are the
    template with a new source IP, time, event id and event names (what a stolen access key does).
    """
    account = template["recipientAccountId"]
    region = template["awsRegion"]
    stamp = f"{day:%Y%m%d}T2355Z"
    key = f"AWSLogs/{account}/CloudTrail/{region}/{day:%Y/%m/%d}/{account}_CloudTrail_{region}_{stamp}_{uid}.json.gz"
    names = [("ListSecrets", "secretsmanager"), ("GetSecretValue", "secretsmanager"), ("ListUsers", "iam"),
             ("CreateAccessKey", "iam")]  # fmt: skip
    injected = []
    for i, (name, service) in enumerate(names):
        record = json.loads(json.dumps(template))
        record.update(
            eventTime=f"{day.isoformat()}T23:5{i}:00Z",
            eventName=name,
            eventSource=f"{service}.amazonaws.com",
            sourceIPAddress=ip,
            eventID=f"00000000-0000-4000-8000-00000000000{i}",
            userAgent="python-requests/2.31.0",
        )
        record.pop("errorCode", None)
        record.pop("errorMessage", None)
        injected.append(record)
    return key, gzip.compress(json.dumps({"Records": injected}).encode(), mtime=0)


def upload(s3: Any, bucket: str, objects: Mapping[str, bytes]) -> None:
    for key, body in objects.items():
        s3.put_object(Bucket=bucket, Key=key, Body=body)
