"""Synthetic Amazon Security Lake objects: OCSF rows shaped as Security Lake stores them.

For the demo, tests and benchmarks: a fixed population (identities or instances and their usual
addresses) per source and account, rows vectorised with NumPy, files byte-for-byte reproducible.
"""

import hashlib
from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from proactive_assets.core.sources.ocsf import (
    CLOUD_TRAIL_MGMT,
    ROUTE53,
    SUPPORTED_SOURCES,
    SUPPORTED_VERSIONS,
    VPC_FLOW,
    normalise_version,
)
from proactive_assets.core.sources.security_lake import security_lake_key


def _const(value: str, n: int) -> pa.Array:
    return pa.repeat(pa.scalar(value, pa.string()), n)


_CLOUDTRAIL_CALLS = (
    ("s3.amazonaws.com", "GetObject"),
    ("s3.amazonaws.com", "ListBuckets"),
    ("ec2.amazonaws.com", "DescribeInstances"),
    ("ec2.amazonaws.com", "RunInstances"),
    ("iam.amazonaws.com", "ListRoles"),
    ("iam.amazonaws.com", "CreateAccessKey"),
    ("sts.amazonaws.com", "AssumeRole"),
    ("sts.amazonaws.com", "GetCallerIdentity"),
    ("kms.amazonaws.com", "Decrypt"),
    ("secretsmanager.amazonaws.com", "GetSecretValue"),
    ("logs.amazonaws.com", "PutLogEvents"),
    ("lambda.amazonaws.com", "ListFunctions"),
)
_USER_AGENTS = (
    "Boto3/1.34.0 md/Botocore#1.34.0 ua/2.0 os/linux#6.1 lang/python#3.11.6",
    "aws-cli/2.15.0 Python/3.11.6 Linux/6.1 exe/x86_64.amzn.2",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 Chrome/120.0",
    "aws-sdk-go-v2/1.24.0 os/linux lang/go#1.21.5 md/GOOS#linux api/s3#1.47.0",
)
_SERVICE_CALLERS = (
    "lambda.amazonaws.com",
    "ec2.amazonaws.com",
    "cloudformation.amazonaws.com",
)
_ERROR_CODES = ("AccessDenied", "ThrottlingException", "NoSuchEntity")
_QUERY_NAMES = (
    "s3.us-east-1.amazonaws.com.",
    "sts.amazonaws.com.",
    "api.github.com.",
    "pypi.org.",
    "ssm.us-east-1.amazonaws.com.",
    "example.com.",
)


def make_ocsf_table(
    source: str,
    version: str,
    rows: int,
    seed: int,
    *,
    day: date = date(2024, 1, 1),
    account: str = "123456789012",
    region: str = "us-east-1",
    entities: int = 50,
    population_seed: int | None = None,
) -> pa.Table:
    """OCSF rows shaped like Security Lake stores them (nested structs, full schema).

    For tests and benchmarks. ``population_seed`` (default ``seed``) fixes who exists -
    identities or instances and their usual IPs - so several days generated with different
    ``seed`` values describe the same population. Rows are vectorised with NumPy, so
    millions of rows take seconds.
    """
    version = normalise_version(version)
    if source not in SUPPORTED_SOURCES or version not in SUPPORTED_VERSIONS:
        raise ValueError(f"no generator for {source} {version}")
    rng = np.random.default_rng(seed)
    population = _Population(source, account, entities, seed if population_seed is None else population_seed)
    day_start = int(datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp() * 1000)
    times = np.sort(day_start + rng.integers(0, 86_400_000, rows, dtype=np.int64))
    common = {
        "time": pa.array(times, pa.int64()),
        "cloud": _cloud_struct(version, account, region, rows),
        "metadata": _metadata_struct(source, version, rows),
        "severity_id": pa.array(np.ones(rows, np.int32)),
    }
    if source == CLOUD_TRAIL_MGMT:
        body = _cloudtrail_columns(version, rows, rng, population)
    else:
        body = _instance_columns(source, rows, rng, population)
    class_uid = body.pop("class_uid")
    activity_id = body.pop("activity_id")
    columns = {
        "class_uid": class_uid,
        "category_uid": pa.array((class_uid.to_numpy() // 1000).astype(np.int32)),
        "activity_id": activity_id,
        "type_uid": pa.array(class_uid.to_numpy().astype(np.int64) * 100 + activity_id.to_numpy()),
        **common,
        **body,
    }
    return pa.table(columns)


class _Population:
    """Entities of one (source family, account) and the IPs each one usually uses."""

    def __init__(self, source: str, account: str, entities: int, seed: int) -> None:
        digest = hashlib.sha256(f"{seed}/{source}/{account}".encode()).digest()
        rng = np.random.default_rng(int.from_bytes(digest[:8], "little"))
        self.count = max(1, entities)
        if source == CLOUD_TRAIL_MGMT:
            names = []
            types = []
            for index in range(self.count):
                if index % 3 == 2:
                    names.append(f"arn:aws:sts::{account}:assumed-role/Role{index % 7}/session{index}")
                    types.append("AssumedRole")
                else:
                    names.append(f"arn:aws:iam::{account}:user/user{index:04d}")
                    types.append("IAMUser")
            self.ids = pa.array(names, pa.string())
            self.types = pa.array(types, pa.string())
            # Each identity works from a few addresses in its own public /24.
            nets = rng.integers(1, 223, (self.count, 3))
            hosts = rng.integers(1, 255, (self.count, 3))
            ips = [
                f"{(n[0] % 200) + 11}.{n[1]}.{n[2] % 250}.{h}" for n, row in zip(nets, hosts, strict=True) for h in row
            ]
        else:
            self.ids = pa.array(
                [f"i-{int(v):017x}" for v in rng.integers(0, 2**63, self.count)],
                pa.string(),
            )
            self.types = pa.array(["Instance"] * self.count, pa.string())
            self.interfaces = pa.array([f"eni-{int(v):017x}" for v in rng.integers(0, 2**63, self.count)], pa.string())
            octets = rng.integers(0, 256, (self.count, 2))
            ips = [f"10.0.{a}.{max(1, int(b))}" for a, b in octets for _ in range(3)]
        self.ips = pa.array(ips, pa.string())  # three per entity, entity-major
        self.principals = pa.array(
            [f"AIDA{int(v):016X}" for v in rng.integers(0, 2**62, self.count)],
            pa.string(),
        )
        activity = 1.0 / (1.0 + rng.permutation(self.count))
        self.weights = activity / activity.sum()
        self.account = account
        public = rng.integers(1, 255, (256, 4))
        #: Internet addresses: remote ends of flows, DNS answers, strangers' API calls.
        self.public = pa.array([f"{(a % 200) + 11}.{b}.{c}.{d}" for a, b, c, d in public], pa.string())
        if source == CLOUD_TRAIL_MGMT:
            self.strangers = self.public
        else:  # an instance seen on another VPC address (a second ENI, a new lease)
            private = rng.integers(1, 255, (256, 2))
            self.strangers = pa.array([f"10.1.{a}.{b}" for a, b in private], pa.string())

    def pick(self, rng: np.random.Generator, rows: int) -> tuple[np.ndarray, pa.Array]:
        """Entity index per row (a few busy, many quiet), and that entity's usual IP.

        About 2% of rows come from a stranger's address instead.
        """
        who = rng.choice(self.count, rows, p=self.weights)
        ip_index = who * 3 + rng.integers(0, 3, rows)
        ips = self.ips.take(pa.array(ip_index))
        stranger = rng.random(rows) < 0.02
        if stranger.any():
            random_ips = self.strangers.take(pa.array(rng.integers(0, 256, rows)))
            ips = pc.if_else(pa.array(stranger), random_ips, ips)
        return who, ips


def _cloud_struct(version: str, account: str, region: str, rows: int) -> pa.StructArray:
    provider = _const("AWS", rows)
    region_array = _const(region, rows)
    account_array = _const(account, rows)
    if version == "1.0":
        return pa.StructArray.from_arrays(
            [provider, region_array, account_array],
            ["provider", "region", "account_uid"],
        )
    account_struct = pa.StructArray.from_arrays([account_array], ["uid"])
    return pa.StructArray.from_arrays([provider, region_array, account_struct], ["provider", "region", "account"])


def _metadata_struct(source: str, version: str, rows: int) -> pa.StructArray:
    product_name, feature = {
        CLOUD_TRAIL_MGMT: ("CloudTrail", "Management"),
        VPC_FLOW: ("Amazon VPC", "Flowlogs"),
        ROUTE53: ("Route 53", "Resolver Query Logs"),
    }[source]
    ocsf = "1.0.0-rc.2" if version == "1.0" else "1.1.0"

    def const(value: str) -> pa.Array:
        return _const(value, rows)

    product = pa.StructArray.from_arrays(
        [
            const(product_name),
            const("AWS"),
            pa.StructArray.from_arrays([const(feature)], ["name"]),
        ],
        ["name", "vendor_name", "feature"],
    )
    return pa.StructArray.from_arrays([const(ocsf), product], ["version", "product"])


def _null_where(array: pa.Array, mask: np.ndarray) -> pa.Array:
    return pc.if_else(pa.array(mask), pa.scalar(None, array.type), array)


def _cloudtrail_columns(
    version: str, rows: int, rng: np.random.Generator, population: _Population
) -> dict[str, pa.Array]:
    who, ips = population.pick(rng, rows)
    service_call = rng.random(rows) < 0.05  # AWSService callers: no ARN, domain not IP
    who_index = pa.array(who)
    arn = _null_where(population.ids.take(who_index), service_call)
    user_type = pc.if_else(
        pa.array(service_call),
        pa.scalar("AWSService"),
        population.types.take(who_index),
    )
    principal = _null_where(population.principals.take(who_index), service_call)
    account_uid = _null_where(_const(population.account, rows), service_call)
    callers = pa.array(_SERVICE_CALLERS).take(pa.array(rng.integers(0, len(_SERVICE_CALLERS), rows)))
    ip = _null_where(ips, service_call)
    domain = _null_where(callers, ~service_call)
    calls = rng.integers(0, len(_CLOUDTRAIL_CALLS), rows)
    services = pa.array([s for s, _ in _CLOUDTRAIL_CALLS]).take(pa.array(calls))
    operations = pa.array([o for _, o in _CLOUDTRAIL_CALLS]).take(pa.array(calls))
    failed = rng.random(rows) < 0.03
    errors = _null_where(
        pa.array(_ERROR_CODES).take(pa.array(rng.integers(0, len(_ERROR_CODES), rows))),
        ~failed,
    )
    agents = pa.array(_USER_AGENTS).take(pa.array(rng.integers(0, len(_USER_AGENTS), rows)))
    agents = pc.if_else(pa.array(service_call), callers, agents)
    request_ids = pc.cast(pa.array(rng.integers(0, 2**62, rows)), pa.string())
    if version == "1.0":
        user = pa.StructArray.from_arrays(
            [
                user_type,
                arn,
                principal,
                account_uid,
                _null_where(principal, ~service_call),
            ],
            ["type", "uuid", "uid", "account_uid", "credential_uid"],
        )
        api_class = 3005
    else:
        account_struct = pa.StructArray.from_arrays([account_uid], ["uid"])
        user = pa.StructArray.from_arrays(
            [user_type, arn, principal, account_struct],
            ["type", "uid", "uid_alt", "account"],
        )
        api_class = 6003
    actor = pa.StructArray.from_arrays([user, _null_where(callers, ~service_call)], ["user", "invoked_by"])
    response = pa.StructArray.from_arrays(
        [errors, _null_where(_const("denied", rows), ~failed)],
        ["error", "message"],
    )
    api = pa.StructArray.from_arrays(
        [
            operations,
            pa.StructArray.from_arrays([services], ["name"]),
            pa.StructArray.from_arrays([request_ids], ["uid"]),
            response,
        ],
        ["operation", "service", "request", "response"],
    )
    is_login = pc.equal(operations, "AssumeRole").to_numpy(zero_copy_only=False)
    class_uid = np.where(is_login & (rng.random(rows) < 0.3), 3002, api_class)
    activity_id = np.where(class_uid == 3002, 1, 2).astype(np.int32)
    return {
        "class_uid": pa.array(class_uid.astype(np.int32)),
        "activity_id": pa.array(activity_id),
        "actor": actor,
        "api": api,
        "src_endpoint": pa.StructArray.from_arrays([ip, domain], ["ip", "domain"]),
        "http_request": pa.StructArray.from_arrays([agents], ["user_agent"]),
        "status": pc.if_else(pa.array(failed), pa.scalar("Failure"), pa.scalar("Success")),
    }


def _endpoint(ip: pa.Array, port: pa.Array, instance: pa.Array, interface: pa.Array, vpc: pa.Array) -> pa.StructArray:
    return pa.StructArray.from_arrays(
        [ip, port, instance, interface, vpc], ["ip", "port", "instance_uid", "interface_uid", "vpc_uid"]
    )


def _instance_columns(source: str, rows: int, rng: np.random.Generator, population: _Population) -> dict[str, pa.Array]:
    """VPC Flow or Route 53 rows of the population's instances, in Security Lake's shapes.

    Flows: 60% egress (the instance and its own address on ``src_endpoint``, the remote on
    ``dst_endpoint``), the rest ingress (mirrored); 5% from a NAT gateway or endpoint ENI
    (``instance_uid`` ``'-'``, ``interface_uid`` set); 1% NODATA records (every field ``'-'``); 10%
    rejected. Queries: 90% from instances, the rest from resolver clients without one.
    """
    who, own_ips = population.pick(rng, rows)
    instance = population.ids.take(pa.array(who))
    interface = population.interfaces.take(pa.array(who))
    outsiders = population.public.take(pa.array(rng.integers(0, 256, rows)))
    ports = pa.array(rng.integers(1024, 65535, rows).astype(np.int32))
    vpc = _const("vpc-0a1b2c3d", rows)
    none = pa.scalar(None, pa.string())
    if source == VPC_FLOW:
        egress = pa.array(rng.random(rows) < 0.6)
        no_instance = pa.array(rng.random(rows) < 0.05)  # NAT gateway / endpoint ENIs: '-'
        nodata = pa.array(rng.random(rows) < 0.01)  # NODATA records: '-' addresses
        own_instance = pc.if_else(no_instance, pa.scalar("-"), instance)
        service_port = pa.array(rng.choice([443, 443, 443, 80, 53, 123], rows).astype(np.int32))
        src = _endpoint(
            pc.if_else(nodata, pa.scalar("-"), pc.if_else(egress, own_ips, outsiders)),
            pc.if_else(egress, ports, service_port),
            pc.if_else(egress, own_instance, none),
            pc.if_else(egress, interface, none),
            pc.if_else(egress, vpc, none),
        )
        dst = _endpoint(
            pc.if_else(nodata, pa.scalar("-"), pc.if_else(egress, outsiders, own_ips)),
            pc.if_else(egress, service_port, ports),
            pc.if_else(egress, none, own_instance),
            pc.if_else(egress, none, interface),
            pc.if_else(egress, none, vpc),
        )
        refused = rng.random(rows) < 0.1
        direction_id = np.where(egress.to_numpy(zero_copy_only=False), 2, 1).astype(np.int32)
        connection = pa.StructArray.from_arrays(
            [
                pa.array(np.where(direction_id == 2, "Outbound", "Inbound")),
                pa.array(direction_id),
                pa.array(np.full(rows, 6, np.int32)),
            ],
            ["direction", "direction_id", "protocol_num"],
        )
        traffic = pa.StructArray.from_arrays(
            [
                pa.array(rng.integers(40, 100_000, rows)),
                pa.array(rng.integers(1, 100, rows)),
            ],
            ["bytes", "packets"],
        )
        return {
            "class_uid": pa.array(np.full(rows, 4001, np.int32)),
            "activity_id": pa.array(np.where(refused, 5, 6).astype(np.int32)),
            "activity_name": pc.if_else(pa.array(refused), pa.scalar("Refuse"), pa.scalar("Traffic")),
            "src_endpoint": src,
            "dst_endpoint": dst,
            "connection_info": connection,
            "traffic": traffic,
            "disposition": pc.if_else(pa.array(refused), pa.scalar("Blocked"), pa.scalar("Allowed")),
            "disposition_id": pa.array(np.where(refused, 2, 1).astype(np.int32)),
            "status_code": pc.if_else(nodata, pa.scalar("NODATA"), pa.scalar("OK")),
        }
    # Route 53 resolver: most queries come from instances, some from other resources.
    from_instance = rng.random(rows) < 0.9
    src = _endpoint(own_ips, ports, _null_where(instance, ~from_instance), pa.nulls(rows, pa.string()), vpc)
    names = pa.array(_QUERY_NAMES).take(pa.array(rng.integers(0, len(_QUERY_NAMES), rows)))
    query = pa.StructArray.from_arrays([names, _const("A", rows), _const("IN", rows)], ["hostname", "type", "class"])
    answer = pa.StructArray.from_arrays([outsiders, _const("A", rows), _const("IN", rows)], ["rdata", "type", "class"])
    answers = pa.ListArray.from_arrays(pa.array(np.arange(rows + 1, dtype=np.int32)), answer)
    return {
        "class_uid": pa.array(np.full(rows, 4003, np.int32)),
        "activity_id": pa.array(np.full(rows, 6, np.int32)),
        "activity_name": _const("Traffic", rows),
        "src_endpoint": src,
        "query": query,
        "answers": answers,
        "rcode": _const("NoError", rows),
    }


def write_security_lake_sample(
    out_dir: str | Path,
    start: date,
    days: int,
    seed: int,
    *,
    accounts: Sequence[str] = ("111111111111",),
    regions: Sequence[str] = ("us-east-1",),
    sources: Sequence[str] = SUPPORTED_SOURCES,
    versions: Sequence[str] = SUPPORTED_VERSIONS,
    rows_per_file: int = 500,
    entities: int = 30,
) -> list[Path]:
    """Write synthetic Security Lake objects under ``out_dir`` in the bucket layout.

    One gzip-compressed ``<hash>.gz.parquet`` per source, version, region, account and day
    (both source versions by default, so a sample exercises both mappings). The population
    is fixed by ``seed``; each file's rows by ``seed`` and its partition, so the output is
    byte-for-byte reproducible. Returns the written paths.
    """
    out = Path(out_dir)
    written = []
    for offset in range(days):
        day = start + timedelta(days=offset)
        for source in sources:
            for version in versions:
                for region in regions:
                    for account in accounts:
                        partition = f"{seed}/{source}/{version}/{region}/{account}/{day}"
                        digest = hashlib.sha256(partition.encode()).hexdigest()
                        table = make_ocsf_table(
                            source,
                            version,
                            rows_per_file,
                            int(digest[:15], 16),
                            day=day,
                            account=account,
                            region=region,
                            entities=entities,
                            population_seed=seed,
                        )
                        key = security_lake_key(
                            source,
                            version,
                            region,
                            account,
                            day,
                            f"{digest[:32]}.gz.parquet",
                        )
                        path = out / key
                        path.parent.mkdir(parents=True, exist_ok=True)
                        pq.write_table(table, path, compression="gzip")
                        written.append(path)
    return written
