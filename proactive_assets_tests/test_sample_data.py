"""The synthetic CloudTrail bucket: reproducible, laid out like the real thing, and honest labels."""

import datetime as dt
import gzip
import hashlib
import ipaddress
import json
import re
from collections import defaultdict
from pathlib import Path

import pytest

from proactive_assets.core.ipnet import KIND_AWS_INTERNAL, KIND_AWS_SERVICE, KIND_IP, classify_source
from proactive_assets.samples.cloudtrail import GROUND_TRUTH, SampleSummary, generate_sample
from proactive_assets.samples.cloudtrail.activity import DailyActivity
from proactive_assets.samples.cloudtrail.incidents import IncidentPlan
from proactive_assets.samples.cloudtrail.seeded import HashedNames
from proactive_assets.samples.cloudtrail.world import build_world

START = dt.date(2025, 3, 3)  # a Monday
DAYS = 2
SCALE = 0.3

LOG_KEY = re.compile(
    r"^AWSLogs/(?:(?P<org>o-[a-z0-9]{10})/)?(?P<account>\d{12})/CloudTrail/(?P<region>[a-z]{2}-[a-z]+-\d)/"
    r"(?P<y>\d{4})/(?P<m>\d{2})/(?P<d>\d{2})/(?P=account)_CloudTrail_(?P=region)_"
    r"(?P<stamp>\d{8}T\d{4}Z)_[A-Za-z0-9]{16}\.json\.gz$"
)
DIGEST_KEY = re.compile(
    r"^AWSLogs/(?:(?P<org>o-[a-z0-9]{10})/)?(?P<account>\d{12})/CloudTrail-Digest/(?P<region>[a-z]{2}-[a-z]+-\d)/"
    r"(?P<y>\d{4})/(?P<m>\d{2})/(?P<d>\d{2})/(?P=account)_CloudTrail-Digest_(?P=region)_[A-Za-z0-9.-]+_"
    r"[a-z]{2}-[a-z]+-\d_(?P<stamp>\d{8}T\d{6}Z)\.json\.gz$"
)
EVENT_TIME = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$")


def _tree_hash(root: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        digest.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def _keys(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in (root / "AWSLogs").rglob("*") if p.is_file())


@pytest.fixture(scope="module")
def sample(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, SampleSummary]:
    out = tmp_path_factory.mktemp("sample")
    return out, generate_sample(out, START, days=DAYS, seed=7, scale=SCALE)


@pytest.fixture(scope="module")
def logs(sample: tuple[Path, SampleSummary]) -> list[tuple[str, re.Match, list[dict]]]:
    """Every log file: key, its name match, and its records (read the way a client would)."""
    root, _ = sample
    out = []
    for key in _keys(root):
        match = LOG_KEY.match(key)
        if match is None:
            continue
        raw = gzip.decompress((root / key).read_bytes())
        assert b"\n" not in raw, "a CloudTrail log file is one line of JSON"
        document = json.loads(raw)
        assert list(document) == ["Records"] and isinstance(document["Records"], list)
        out.append((key, match, document["Records"]))
    return out


@pytest.fixture(scope="module")
def truth(sample: tuple[Path, SampleSummary]) -> dict:
    return json.loads((sample[0] / GROUND_TRUTH).read_text())


def _pairs_by_day(logs: list) -> dict[str, set[tuple[str, str]]]:
    """(arn, canonical ip) seen per eventTime day."""
    seen: dict[str, set[tuple[str, str]]] = defaultdict(set)
    for _, _, records in logs:
        for rec in records:
            kind, ip = classify_source(rec["sourceIPAddress"])
            arn = rec["userIdentity"].get("arn")
            if kind == KIND_IP and arn:
                seen[rec["eventTime"][:10]].add((arn, ip))
    return seen


def test_same_seed_same_bytes_other_seed_other_bytes(sample: tuple[Path, SampleSummary], tmp_path: Path) -> None:
    root, first = sample
    again = generate_sample(tmp_path / "again", START, days=DAYS, seed=7, scale=SCALE)
    assert _tree_hash(tmp_path / "again") == _tree_hash(root)
    assert (again.events, again.log_files, again.suspicious) == (first.events, first.log_files, first.suspicious)
    other = generate_sample(tmp_path / "other", START, days=1, seed=8, scale=SCALE)
    assert _tree_hash(tmp_path / "other") != _tree_hash(root)
    assert other.accounts != first.accounts and other.org_id != first.org_id


def test_ground_truth_does_not_depend_on_scale(sample: tuple[Path, SampleSummary], tmp_path: Path) -> None:
    _, large = sample
    small = generate_sample(tmp_path / "small", START, days=DAYS, seed=7, scale=SCALE / 4)
    assert large.events > 1.5 * small.events  # injected activity and per-session minimums do not scale
    first = json.loads(small.ground_truth.read_text())
    second = json.loads(large.ground_truth.read_text())
    for label in ("suspicious", "benign_novelties"):
        strip = [{k: v for k, v in e.items() if k != "event_names"} for e in first[label]]
        assert strip == [{k: v for k, v in e.items() if k != "event_names"} for e in second[label]]


def test_three_weeks_keep_injections_in_the_last_week() -> None:
    """The plan alone (no files): with 21 days, everything injected falls on days 14-20."""
    names = HashedNames(7)
    plan = IncidentPlan(DailyActivity(build_world(7, names), names, START, 1.0), 21, 7)
    plan.draw()
    suspicious = [t for t in plan.truth if t.label == "suspicious"]
    benign = [t for t in plan.truth if t.label == "benign_novelty"]
    assert all(14 <= t.day <= 20 for t in plan.truth)
    assert 6 <= len({(t.day, t.arn) for t in suspicious}) <= 12 and len(benign) >= 5
    assert len({t.day for t in suspicious}) == 7, "an incident every day of the last week"
    assert any(":" in t.ip for t in suspicious)
    warm_ups = {s.arn for day, sessions in plan.forced.items() if day < 14 for s in sessions}
    always_on = {i.arn for i in plan.world.identities if i.kind == "instance"}
    assert {t.arn for t in plan.truth} <= warm_ups | always_on, "every labelled identity has a history"


def test_layout_is_a_cloudtrail_bucket(sample: tuple[Path, SampleSummary], truth: dict) -> None:
    root, summary = sample
    keys = _keys(root)
    logs = [LOG_KEY.match(k) for k in keys if "/CloudTrail/" in k]
    digests = [DIGEST_KEY.match(k) for k in keys if "/CloudTrail-Digest/" in k]
    assert all(logs) and all(digests) and len(logs) + len(digests) == len(keys)
    assert len(logs) == summary.log_files and len(digests) == summary.digest_files
    # a reader that skips CloudTrail-Digest/ folders never sees a digest, and the patterns never mix
    assert not any(LOG_KEY.match(k) for k in keys if "CloudTrail-Digest" in k)
    assert not any(DIGEST_KEY.match(k) for k in keys if "/CloudTrail/" in k)
    for match in logs + digests:
        assert match["stamp"][:8] == match["y"] + match["m"] + match["d"], "folder date is the delivery date"
    # three accounts, three regions, exactly one account under the organisation trail
    assert {m["account"] for m in logs} == set(truth["accounts"]) == set(summary.accounts)
    assert {m["region"] for m in logs} == set(truth["regions"])
    org = {m["account"] for m in logs + digests if m["org"]}
    assert org == set(truth["org_accounts"]) and len(org) == 1
    assert {m["org"] for m in logs if m["org"]} == {truth["org_id"]}
    # hourly digests for every account and region, whatever the traffic
    per_trail = defaultdict(int)
    for match in digests:
        per_trail[match["account"], match["region"]] += 1
    assert len(per_trail) == 9 and min(per_trail.values()) >= DAYS * 24
    # deliveries about every five minutes: never two files for one trail in the same minute
    stamps = [(m["account"], m["region"], m["stamp"]) for m in logs]
    assert len(stamps) == len(set(stamps))


def test_digests_list_the_log_files_with_their_hashes(sample: tuple[Path, SampleSummary]) -> None:
    root, _ = sample
    listed = {}
    for key in _keys(root):
        if DIGEST_KEY.match(key):
            doc = json.loads(gzip.decompress((root / key).read_bytes()))
            assert doc["digestS3Object"] == key and doc["digestSignatureAlgorithm"] == "SHA256withRSA"
            assert doc["awsAccountId"] in key and doc["digestStartTime"] < doc["digestEndTime"]
            for entry in doc["logFiles"]:
                listed[entry["s3Object"]] = entry["hashValue"]
    logs = [k for k in _keys(root) if LOG_KEY.match(k)]
    assert set(listed) == set(logs), "every log file is in exactly the digests' lists"
    for key in logs[:: max(1, len(logs) // 50)]:
        assert hashlib.sha256(gzip.decompress((root / key).read_bytes())).hexdigest() == listed[key]


def test_records_have_cloudtrail_fields(logs: list, sample: tuple[Path, SampleSummary]) -> None:
    _, summary = sample
    total = 0
    event_ids = defaultdict(int)
    kinds = defaultdict(int)
    for _, match, records in logs:
        total += len(records)
        for rec in records:
            assert rec["eventVersion"] and EVENT_TIME.match(rec["eventTime"])
            assert rec["eventSource"].endswith(".amazonaws.com") and rec["eventName"]
            assert rec["awsRegion"] == match["region"] and rec["recipientAccountId"] == match["account"]
            assert rec["eventCategory"] == "Management" and rec["managementEvent"] is True
            assert isinstance(rec["readOnly"], bool) and rec["eventType"] == "AwsApiCall"
            assert "requestParameters" in rec and rec["responseElements"] is None
            assert re.fullmatch(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}", rec["eventID"])
            assert rec["eventTime"] <= _stamp_iso(match["stamp"]), "records predate their delivery"
            event_ids[rec["eventID"]] += 1
            kinds[rec["userIdentity"]["type"]] += 1
            identity = rec["userIdentity"]
            if identity["type"] == "AssumedRole":
                issuer = identity["sessionContext"]["sessionIssuer"]
                assert identity["arn"].startswith(
                    f"arn:aws:sts::{identity['accountId']}:assumed-role/{issuer['userName']}/"
                )
                assert identity["principalId"].startswith(issuer["principalId"] + ":")
                assert identity["accessKeyId"].startswith("ASIA")
            elif identity["type"] == "IAMUser":
                assert identity["arn"] == f"arn:aws:iam::{identity['accountId']}:user/{identity['userName']}"
                assert identity["accessKeyId"].startswith("AKIA")
            if "errorCode" in rec:
                assert rec["errorMessage"]
    assert total == summary.events
    assert sum(1 for n in event_ids.values() if n > 1) == summary.duplicates > 0, "duplicates share an eventID"
    assert {"AssumedRole", "IAMUser", "AWSService", "WebIdentityUser"} <= set(kinds)
    assert summary.identities >= 24


def _stamp_iso(stamp: str) -> str:
    return f"{stamp[:4]}-{stamp[4:6]}-{stamp[6:8]}T{stamp[9:11]}:{stamp[11:13]}:59Z"


def test_some_files_after_midnight_hold_the_previous_day(logs: list) -> None:
    assert any(rec["eventTime"][:10].replace("-", "") < match["stamp"][:8] for _, match, recs in logs for rec in recs)


def test_aws_service_callers_have_no_arn_and_no_ip(logs: list, sample: tuple[Path, SampleSummary]) -> None:
    service = internal = service_arn = 0
    for _, _, records in logs:
        for rec in records:
            kind, _ = classify_source(rec["sourceIPAddress"])
            identity = rec["userIdentity"]
            if identity["type"] == "AWSService":
                assert "arn" not in identity and identity["invokedBy"].endswith(".amazonaws.com")
                assert kind == KIND_AWS_SERVICE
            service += kind == KIND_AWS_SERVICE
            internal += kind == KIND_AWS_INTERNAL
            service_arn += kind == KIND_AWS_SERVICE and "arn" in identity
            if kind == KIND_IP:
                assert "arn" in identity or identity["type"] == "WebIdentityUser"
    assert service and internal and service_arn, "service sources both with and without an ARN, and AWS Internal"
    assert service + internal == sample[1].service_events


def test_ipv6_callers_present(logs: list, truth: dict) -> None:
    v6 = {rec["sourceIPAddress"] for _, _, recs in logs for rec in recs if ":" in rec["sourceIPAddress"]}
    assert len(v6) >= 3
    assert all(
        isinstance(ipaddress.ip_address(ip), ipaddress.IPv6Address) and ipaddress.ip_address(ip).is_global for ip in v6
    )
    assert any(":" in e["source_ip"] for e in truth["suspicious"]), "at least one IPv6 attack"
    assert any(":" in e["source_ip"] for e in truth["benign_novelties"])


def test_human_addresses_are_public_and_not_well_known(logs: list) -> None:
    for _, _, records in logs:
        for rec in records:
            kind, ip = classify_source(rec["sourceIPAddress"])
            if kind != KIND_IP or rec["userIdentity"].get("type") != "IAMUser":
                continue
            address = ipaddress.ip_address(ip)
            assert address.is_global and not address.is_multicast
            assert not any(ip.startswith(p) for p in ("8.8.", "1.1.1.", "9.9.9."))


def test_ground_truth_shape_and_window(truth: dict, sample: tuple[Path, SampleSummary]) -> None:
    _, summary = sample
    assert truth["seed"] == 7 and truth["start"] == START.isoformat() and truth["days"] == DAYS
    assert len(truth["suspicious"]) == summary.suspicious and len(truth["benign_novelties"]) == summary.benign_novelties
    assert 6 <= len({(e["day"], e["entity"]) for e in truth["suspicious"]}) <= 12
    assert len(truth["benign_novelties"]) >= 4
    warm_up_end = START + dt.timedelta(days=int(DAYS * 0.6))
    kinds = set()
    for entry in truth["suspicious"] + truth["benign_novelties"]:
        assert set(entry) == {"day", "entity", "source_ip", "kind", "description", "event_names"}
        assert dt.date.fromisoformat(entry["day"]) >= warm_up_end
        assert entry["event_names"] and entry["description"]
        assert classify_source(entry["source_ip"]) == (KIND_IP, entry["source_ip"]), "canonical address"
        kinds.add(entry["kind"])
    assert {"stolen_access_key", "session_replay", "recon_burst", "persistence"} <= kinds
    writes = {n for e in truth["suspicious"] for n in e["event_names"]}
    assert {"CreateUser", "CreateAccessKey", "AttachUserPolicy", "PutRolePolicy"} <= writes


def test_ground_truth_pairs_are_in_their_days_logs(logs: list, truth: dict) -> None:
    names: dict[tuple[str, str, str], set[str]] = defaultdict(set)
    delivered_same_day: set[tuple[str, str, str]] = set()
    for _, match, records in logs:
        folder_day = f"{match['y']}-{match['m']}-{match['d']}"
        for rec in records:
            kind, ip = classify_source(rec["sourceIPAddress"])
            arn = rec["userIdentity"].get("arn")
            if kind == KIND_IP and arn:
                key = (rec["eventTime"][:10], arn, ip)
                names[key].add(rec["eventName"])
                if folder_day == key[0]:
                    delivered_same_day.add(key)
    for entry in truth["suspicious"] + truth["benign_novelties"]:
        key = (entry["day"], entry["entity"], entry["source_ip"])
        assert key in names, entry
        assert key in delivered_same_day, f"delivered in a file of another day: {entry}"
        assert set(entry["event_names"]) == names[key]
    for entry in truth["travel"]:
        assert (entry["day"], entry["entity"], entry["source_ip"]) in names


def test_suspicious_networks_are_new_to_everyone(logs: list, truth: dict) -> None:
    seen = _pairs_by_day(logs)
    for entry in truth["suspicious"]:
        before = set().union(*(pairs for day, pairs in seen.items() if day < entry["day"]))
        assert (entry["entity"], entry["source_ip"]) not in before
        attacker = ipaddress.ip_network(
            entry["source_ip"] + ("/48" if ":" in entry["source_ip"] else "/16"), strict=False
        )
        assert not any(ipaddress.ip_address(ip) in attacker for _, ip in before), "far from any known network"
        assert any(arn == entry["entity"] for arn, _ in before), "the victim has a history to compare with"


def test_benign_novelties_are_new_hosts_in_known_networks(logs: list, truth: dict) -> None:
    seen = _pairs_by_day(logs)
    for entry in truth["benign_novelties"]:
        before = {
            ip for day, pairs in seen.items() if day < entry["day"] for arn, ip in pairs if arn == entry["entity"]
        }
        assert entry["source_ip"] not in before, "never used by this identity before"
        prefix = "/64" if ":" in entry["source_ip"] else "/24"
        network = ipaddress.ip_network(entry["source_ip"] + prefix, strict=False)
        assert any(ipaddress.ip_address(ip) in network for ip in before), f"{prefix} not used before: {entry}"


def test_refuses_a_folder_with_foreign_logs_and_replaces_its_own(tmp_path: Path) -> None:
    foreign = tmp_path / "foreign"
    (foreign / "AWSLogs" / "123456789012").mkdir(parents=True)
    with pytest.raises(FileExistsError):
        generate_sample(foreign, START, days=1, seed=1, scale=0.05)
    assert (foreign / "AWSLogs" / "123456789012").is_dir()
    own = tmp_path / "own"
    summary = generate_sample(own, START, days=1, seed=1, scale=0.05)
    first = _tree_hash(own)
    (own / "AWSLogs" / "stale.json.gz").write_bytes(b"x")
    generate_sample(own, START, days=1, seed=1, scale=0.05)
    assert _tree_hash(own) == first
    # a single day leaves no room for a warm-up, so nothing is injected
    assert summary.suspicious == summary.benign_novelties == 0 and summary.log_files > 0
    assert "1 days from 2025-03-03" in str(summary)


def test_arguments_are_checked(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        generate_sample(tmp_path / "bad", START, days=0)
    with pytest.raises(ValueError):
        generate_sample(tmp_path / "bad", START, days=1, scale=0)
