"""Security Lake OCSF Parquet objects against an independent reader, and a day of them through the asset.

CloudTrail rows are one event each; VPC Flow and Route 53 rows become (resource, remote endpoint)
pairs with their counts, and the rows that make none are counted by reason, never quarantined.

Corpora:

* ``data/ocsf``: the suite's own OCSF records (see ``data/PROVENANCE.md``), each written here as one
  Parquet object; always present.
* every folder named in ``PROACTIVE_REAL_SECURITY_LAKE`` (``os.pathsep``-separated): real Security
  Lake Parquet a developer keeps outside the repository (e.g. AWS's OCSF validation samples). The
  source comes from the path (``VPC_FLOW``, ``ROUTE53``, ``CLOUD_TRAIL``), the source version from
  the rows' ``metadata.version`` (OCSF 1.0.0-rc.2 is version 1.0, OCSF 1.1.0 is 2.0); other sources,
  and ``inputs/`` folders of raw logs, are not ours and are left out. Nothing outside the
  repository is read unless named there.

The reference reads each object with ``pyarrow.parquet`` into Python dicts and says, from the OCSF
field names alone, what each row means; ``read_ocsf_parquet`` must agree row by row (pair by pair).
"""

import io
import json
import os
import re
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from dagster import DagsterInstance, materialize

from proactive_assets.core.sources.ocsf import CLOUD_TRAIL_MGMT, ROUTE53, VPC_FLOW
from proactive_assets.core.sources.security_lake import read_ocsf_parquet
from proactive_assets.core.storage import LocalStore
from proactive_assets_tests.conftest import SAMPLES, project_assets, project_resource

DAY = date(2024, 3, 5)
KEY_ACCOUNT = "999988887777"
KEY_REGION = "us-east-1"
OCSF_VERSIONS = {"1.0.0-rc.2": "1.0", "1.1.0": "2.0"}
SOURCE_NAMES = {"CLOUD_TRAIL": CLOUD_TRAIL_MGMT, "CLOUD_TRAIL_MGMT": CLOUD_TRAIL_MGMT, "VPC_FLOW": VPC_FLOW}
SOURCE_NAMES["ROUTE53"] = ROUTE53
FILE_SOURCES = {"cloudtrail": CLOUD_TRAIL_MGMT, "vpcflow": VPC_FLOW, "route53": ROUTE53}
# What each source is made of, from the design: identities from CloudTrail, instances from the others.
CLASSES = {
    (CLOUD_TRAIL_MGMT, "1.0"): {3005, 3001, 3002},
    (CLOUD_TRAIL_MGMT, "2.0"): {6003, 3001, 3002},
    (VPC_FLOW, "1.0"): {4001},
    (VPC_FLOW, "2.0"): {4001},
    (ROUTE53, "1.0"): {4003},
    (ROUTE53, "2.0"): {4003},
}
NETWORK_EVENT_SOURCES = {VPC_FLOW: "vpc-flow-logs", ROUTE53: "route53-resolver"}


@dataclass(frozen=True)
class LakeObject:
    """One Parquet object: where it came from, its source and version, and its bytes."""

    label: str
    source: str
    version: str
    data: bytes

    def key(self, index: int, day: date = DAY) -> str:
        return (
            f"aws/{self.source}/{self.version}/region={KEY_REGION}/accountId={KEY_ACCOUNT}/"
            f"eventDay={day:%Y%m%d}/sample{index:04d}.gz.parquet"
        )


def without_empty_structs(obj: Any) -> Any:
    """Parquet cannot store a struct without fields; Security Lake writes full schemas instead."""
    if isinstance(obj, dict):
        return {k: without_empty_structs(v) for k, v in obj.items() if v != {}}
    if isinstance(obj, list):
        return [without_empty_structs(v) for v in obj]
    return obj


def parquet_bytes(table: pa.Table) -> bytes:
    sink = io.BytesIO()
    pq.write_table(table, sink, compression="gzip")
    return sink.getvalue()


def own_objects() -> list[LakeObject]:
    """data/ocsf/ocsf-<OCSF version>_<source>_..._<class>.json, one record each, as Parquet."""
    objects = []
    for path in sorted((SAMPLES / "ocsf").glob("ocsf-*.json")):
        match = re.match(r"ocsf-(?P<ocsf>[0-9a-z.-]+?)_(?P<kind>cloudtrail|vpcflow|route53)_", path.name)
        assert match, f"{path.name}: expected ocsf-<version>_<cloudtrail|vpcflow|route53>_..."
        record = without_empty_structs(json.loads(path.read_text()))
        data = parquet_bytes(pa.Table.from_pylist([record]))
        source, version = FILE_SOURCES[match["kind"]], OCSF_VERSIONS[match["ocsf"]]
        objects.append(LakeObject(f"data/ocsf/{path.name}", source, version, data))
    return objects


def folder_objects(folder: Path) -> list[LakeObject]:
    objects = []
    for path in sorted(folder.rglob("*.parquet")):
        parts = path.relative_to(folder).parts
        source = next((SOURCE_NAMES[p] for p in parts if p in SOURCE_NAMES), None)
        if source is None or "inputs" in parts:
            continue  # another source (Security Hub, EKS...) or raw input logs
        versions = {row["metadata"]["version"] for row in pq.read_table(path, columns=["metadata"]).to_pylist()}
        assert len(versions) == 1 and versions <= set(OCSF_VERSIONS), f"{path}: OCSF versions {versions}"
        label = f"env/{folder.name}/{path.relative_to(folder)}"
        objects.append(LakeObject(label, source, OCSF_VERSIONS[versions.pop()], path.read_bytes()))
    return objects


def corpora() -> list[tuple[str, list[LakeObject]]]:
    found = [("data/ocsf", own_objects())]
    for entry in filter(None, os.environ.get("PROACTIVE_REAL_SECURITY_LAKE", "").split(os.pathsep)):
        folder = Path(entry).expanduser()
        assert folder.is_dir(), f"PROACTIVE_REAL_SECURITY_LAKE: {folder} is not a folder"
        found.append((f"env/{folder.name}", folder_objects(folder)))
    return found


def all_objects() -> list[LakeObject]:
    return [obj for _, objects in corpora() for obj in objects]


# ----------------------------------------------------------------------- reference reader


def dig(row: dict[str, Any], path: str) -> Any:
    value: Any = row
    for part in path.split("."):
        if not isinstance(value, dict):
            return None
        value = value.get(part)
    return value


def present(value: Any) -> Any:
    """Security Lake writes "-" (and sometimes "") where a log had no value."""
    return None if value in (None, "", "-") else value


def reference_ip(value: str | None) -> tuple[str | None, str | None]:
    import ipaddress

    if value is None:
        return None, None
    lowered = value.strip().lower()
    if lowered.endswith(".amazonaws.com"):
        return "aws_service", value
    if lowered == "aws internal":
        return "aws_internal", value
    try:
        if ":" in value:
            address = ipaddress.IPv6Address(value.strip())
            return "ip", str(address.ipv4_mapped or address)
        octets = value.strip().split(".")
        if len(octets) == 4 and all(o.isdigit() and len(o) <= 3 for o in octets):
            return "ip", str(ipaddress.IPv4Address(".".join(str(int(o)) for o in octets)))
    except ValueError:
        pass
    return "invalid", value


PROTOCOLS = {1: "icmp", 6: "tcp", 17: "udp", 47: "gre", 50: "esp", 58: "icmpv6", 132: "sctp"}


def flow_pairs(row: dict[str, Any]) -> tuple[list[dict[str, Any]], str | None]:
    """A VPC Flow row's pair, from the field names: the resource on the side the direction names
    (else the only side with one), the *other* end's address; or why there is none."""
    src, dst = row.get("src_endpoint") or {}, row.get("dst_endpoint") or {}
    src_ip, dst_ip = present(src.get("ip")), present(dst.get("ip"))
    if src_ip is None and dst_ip is None:
        return [], "no addresses (NODATA or SKIPDATA record)"
    sides = {}
    for name, end in (("src", src), ("dst", dst)):
        if present(end.get("instance_uid")):
            sides[name] = (end["instance_uid"], "Instance")
        elif present(end.get("interface_uid")):
            sides[name] = (end["interface_uid"], "NetworkInterface")
    if not sides:
        return [], "no instance or network interface on either end"
    direction = dig(row, "connection_info.direction_id")
    if "src" in sides and (direction == 2 or "dst" not in sides):
        own, remote, own_ip = "src", dst_ip, src_ip
    elif "dst" in sides and (direction == 1 or "src" not in sides):
        own, remote, own_ip = "dst", src_ip, dst_ip
    else:
        return [], "both ends are resources and the direction is unknown"
    if remote is None:
        return [], "no remote address"
    if remote.strip() == (own_ip or "").strip():
        return [], "remote address is the resource's own"
    number = dig(row, "connection_info.protocol_num")
    protocol = "ip" if number is None else PROTOCOLS.get(number, f"proto-{number}")
    ports = [p for p in (src.get("port"), dst.get("port")) if p is not None and p > 0]
    name = f"{protocol}/{min(ports)}" if protocol in ("tcp", "udp", "sctp") and ports else protocol
    entity, kind = sides[own]
    error = "Blocked" if row.get("disposition_id") == 2 else None
    return [
        {"identity_arn": entity, "identity_type": kind, "raw_ip": remote, "event_name": name, "error_code": error}
    ], None


def dns_pairs(row: dict[str, Any]) -> tuple[list[dict[str, Any]], str | None]:
    """A Route 53 query's pairs: the querying instance (else its client address in its VPC) with
    every A/AAAA answer."""
    src = row.get("src_endpoint") or {}
    if present(src.get("instance_uid")):
        entity, kind = src["instance_uid"], "Instance"
    elif present(src.get("vpc_uid")) and present(src.get("ip")):
        entity, kind = f"{src['vpc_uid']}/{src['ip']}", "ResolverClient"
    else:
        return [], "no querying instance or client address"
    addresses = [
        a["rdata"]
        for a in row.get("answers") or []
        if (a.get("type") or "").strip().upper() in ("A", "AAAA") and present((a.get("rdata") or "").strip())
    ]
    if not addresses:
        return [], "no A or AAAA answer"
    query = row.get("query") or {}
    name = f"DNS {query.get('type') or '?'} {query.get('hostname') or '?'}"
    rcode = row.get("rcode")
    error = None if rcode in (None, "NoError", "", "-") else rcode
    return [
        {"identity_arn": entity, "identity_type": kind, "raw_ip": ip, "event_name": name, "error_code": error}
        for ip in addresses
    ], None


@dataclass
class Expected:
    """What an object gives: its rows (CloudTrail events; network pairs with their counts), and the
    rows rejected (unreadable) or unpaired (ordinary traffic without a pair), by reason."""

    rows: list[dict[str, Any]]
    rejected: int
    unpaired: dict[str, int]


def reference(obj: LakeObject) -> Expected:
    """What the object gives, read with pyarrow.parquet and plain dicts."""
    rows, rejected, unpaired = [], 0, {}
    pairs: dict[tuple, dict[str, Any]] = {}
    v1 = obj.version == "1.0"
    for row in pq.read_table(io.BytesIO(obj.data)).to_pylist():
        if row.get("time") is None or row.get("class_uid") not in CLASSES[(obj.source, obj.version)]:
            rejected += 1
            continue
        cloud_account = dig(row, "cloud.account_uid" if v1 else "cloud.account.uid")
        time = datetime.fromtimestamp(row["time"] / 1000, UTC)
        common = {"account": cloud_account or KEY_ACCOUNT, "region": dig(row, "cloud.region") or KEY_REGION}
        if obj.source == CLOUD_TRAIL_MGMT:
            entity = present(dig(row, "actor.user.uuid" if v1 else "actor.user.uid"))
            kind, ip = reference_ip(present(dig(row, "src_endpoint.ip")) or present(dig(row, "src_endpoint.domain")))
            rows.append(
                {
                    **common,
                    "event_time": time,
                    "event_name": dig(row, "api.operation"),
                    "event_source": dig(row, "api.service.name"),
                    "identity_type": dig(row, "actor.user.type"),
                    "user_agent": dig(row, "http_request.user_agent"),
                    "error_code": dig(row, "api.response.error"),
                    "identity_arn": entity,
                    "source_ip": ip,
                    "source_kind": kind,
                    "is_pair": kind == "ip" and entity is not None,
                    "event_id": dig(row, "metadata.uid"),
                    "event_count": 1,
                }
            )
            continue
        found, why = (flow_pairs if obj.source == VPC_FLOW else dns_pairs)(row)
        if why:
            unpaired[why] = unpaired.get(why, 0) + 1
        for pair in found:
            kind, ip = reference_ip(pair.pop("raw_ip"))
            if kind != "ip":
                unpaired["remote is not an IP address"] = unpaired.get("remote is not an IP address", 0) + 1
                continue
            key = (
                pair["identity_arn"],
                pair["identity_type"],
                ip,
                pair["event_name"],
                pair["error_code"],
                common["account"],
                common["region"],
            )
            seen = pairs.setdefault(
                key,
                {
                    **pair,
                    **common,
                    "source_ip": ip,
                    "source_kind": "ip",
                    "is_pair": True,
                    "event_source": NETWORK_EVENT_SOURCES[obj.source],
                    "user_agent": None,
                    "event_id": None,
                    "event_count": 0,
                    "event_time": time,
                    "last_event_time": time,
                },
            )
            seen["event_count"] += 1
            seen["event_time"] = min(seen["event_time"], time)
            seen["last_event_time"] = max(seen["last_event_time"], time)
    rows += [pairs[key] for key in sorted(pairs, key=repr)]
    return Expected(rows, rejected, unpaired)


# ---------------------------------------------------------------------------------- tests


def test_every_corpus_has_objects() -> None:
    for label, objects in corpora():
        assert objects, f"{label}: no Security Lake Parquet objects of a supported source"


@pytest.mark.parametrize("obj", [pytest.param(o, id=o.label) for o in all_objects()])
def test_rows_match_the_reference_reader(obj: LakeObject) -> None:
    key = obj.key(0)
    activity = read_ocsf_parquet(obj.data, key)
    want = reference(obj)
    got = activity.table.to_pylist()
    if obj.source != CLOUD_TRAIL_MGMT:
        got.sort(
            key=lambda r: repr(
                (
                    r["identity_arn"],
                    r["identity_type"],
                    r["source_ip"],
                    r["event_name"],
                    r["error_code"],
                    r["account"],
                    r["region"],
                )
            )
        )
    assert (len(got), activity.rejected_count, activity.unpaired) == (len(want.rows), want.rejected, want.unpaired)
    assert [{name: row[name] for name in want_row} for row, want_row in zip(got, want.rows, strict=True)] == want.rows
    assert all(row["source_file"] == key for row in got)


def test_network_rows_never_pair_a_resource_with_its_own_address() -> None:
    """The issue's finding: the old rule paired src_endpoint.instance_uid with src_endpoint.ip, the
    instance's own address on every outbound flow. No pair may hold an address its row gave the resource."""
    for obj in all_objects():
        if obj.source != VPC_FLOW:
            continue
        own = set()
        for row in pq.read_table(io.BytesIO(obj.data)).to_pylist():
            for side in ("src_endpoint", "dst_endpoint"):
                end = row.get(side) or {}
                if present(end.get("instance_uid")) or present(end.get("interface_uid")):
                    own.add((present(end.get("instance_uid")) or end.get("interface_uid"), end.get("ip")))
        pairs = read_ocsf_parquet(obj.data, obj.key(0)).table
        assert not own & set(
            zip(pairs.column("identity_arn").to_pylist(), pairs.column("source_ip").to_pylist(), strict=True)
        )


def metadata(result, asset: str) -> dict:
    mat = result.asset_materializations_for_node(asset)[-1]
    return {k: getattr(v, "value", v) for k, v in mat.metadata.items()}


@pytest.mark.parametrize("corpus", [pytest.param(c, id=c[0]) for c in corpora()])
def test_a_day_of_them_runs_through_the_asset(corpus: tuple[str, list[LakeObject]], tmp_path: Path) -> None:
    """Every object of the corpus under one day of the lake layout: no failed step, nothing
    quarantined, and the pair count the reference expects."""
    label, objects = corpus
    store = LocalStore(tmp_path / "lake")
    for index, obj in enumerate(objects):
        store.put(obj.key(index), obj.data)
    res = project_resource(tmp_path, cloudtrail_uri=str(tmp_path / "cloudtrail"), security_lake_uri=store.uri)
    result = materialize(
        project_assets(res, "security_lake_activity"),
        partition_key=DAY.isoformat(),
        resources={"proactive": res},
        instance=DagsterInstance.ephemeral(),
        raise_on_error=False,
    )
    failures = [e.step_failure_data.error.message.strip() for e in result.all_events if e.is_step_failure]
    assert result.success and not failures, f"{label}: failed step(s):\n" + "\n".join(failures)
    meta = metadata(result, "security_lake_activity")
    expected = [reference(obj) for obj in objects]
    rows = [row for e in expected for row in e.rows]
    assert (meta["objects"], meta["quarantined_objects"]) == (len(objects), 0)
    assert meta["pair_events"] == sum(row["is_pair"] for row in rows)
    assert meta["events_read"] == sum(row["event_count"] for row in rows)
    unpaired: dict[str, int] = {}
    for e in expected:
        for reason, count in e.unpaired.items():
            unpaired[reason] = unpaired.get(reason, 0) + count
    assert meta["unpaired_reasons"] == dict(sorted(unpaired.items()))
    table = res.warehouse().read_table("security_lake_activity", DAY)
    got = zip(table.column("identity_arn").to_pylist(), table.column("source_ip").to_pylist(), strict=True)
    assert sorted(got, key=repr) == sorted(((row["identity_arn"], row["source_ip"]) for row in rows), key=repr)
