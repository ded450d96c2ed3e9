"""Synthetic CloudTrail bucket with known suspicious activity, for demos, tests and benchmarks.

Why: the pipeline has to be shown and measured without AWS access, on data whose answers are
known. The generator writes what a real CloudTrail bucket holds - standalone and organisation
trail layouts, ~5-minute deliveries whose records may predate the delivery day, duplicate
records, AWS-service callers without an ARN, IPv6 callers and hourly digest files - for a small
company (three accounts, three regions, a few dozen identities), and injects activity whose
labels go to ``ground_truth.json``:

* ``suspicious``: credentials used from a network that neither the identity nor anyone else
  used before (stolen access keys, replayed SSO sessions, exfiltrated instance credentials, a
  hijacked CI role), with reconnaissance bursts and persistence writes; all after a warm-up of
  about two thirds of the days, so a model trained on the earlier days can catch them.
* ``benign_novelties``: a never-seen address inside a network the identity already used (new
  home address from the ISP, new office NAT address, new IPv6 privacy address, new CI runner):
  what a good model must not flag.
* ``travel``: rare, genuine logins from hotel networks; unlabelled by design (real data has
  them), listed so that an evaluation can explain them.

Everything comes from ``numpy.random.Generator`` streams derived from the seed (and names from
seeded hashes), so the same seed gives the same bytes, gzip headers included; ``scale``
multiplies the event volume without changing the identities or the injected activity.
"""

import calendar
import datetime as dt
import gzip
import hashlib
import ipaddress
import json
import os
import re
import shutil
import string
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

REGIONS: tuple[str, ...] = ("us-east-1", "eu-west-1", "ap-southeast-2")
HOME_REGION = "us-east-1"
BUCKET = "example-org-cloudtrail-logs"
DEFAULT_START = dt.date(2025, 3, 3)
GROUND_TRUTH = "ground_truth.json"

_DAY = 86_400
_SLOT = 300
_GZIP_LEVEL = 6
_DUPLICATE_RATE = 0.002
_LATE_RATE = 0.01
_EVENT_VERSION = "1.09"
_B32 = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"
_ALNUM = string.ascii_letters + string.digits
_LOWER_ALNUM = string.ascii_lowercase + string.digits
_HEX = "0123456789abcdef"
_MARK = "@@value@@"

# First octets for "somebody's public network" (homes, offices, carriers, hotels, attackers):
# global unicast, none of the cloud blocks (the AWS ones are used below for EC2 and Lambda),
# none of the reserved, private, shared, test or multicast ranges, no well-known resolver
# blocks, and none of the legacy /8s held by government or single companies.
_CLOUD_FIRST = (3, 13, 18, 44, 52, 54)
_LEGACY_FIRST = {6, 7, 11, 12, 15, 16, 17, 19, 21, 22, 25, 26, 28, 29, 30, 33, 48, 51, 53, 55, 56, 57, 214, 215}
_EXCLUDED_FIRST = {0, 1, 8, 9, 10, 20, 34, 35, 40, 100, 127, 169, 172, 192, 198, 203, *_CLOUD_FIRST, *_LEGACY_FIRST}
_PUBLIC_FIRST = tuple(o for o in range(2, 224) if o not in _EXCLUDED_FIRST)
_V6_FIRST = (0x2A01, 0x2A02, 0x2A04, 0x2A0A, 0x2600, 0x2601, 0x2603, 0x2605, 0x2804, 0x2405, 0x2409, 0x2A00)
_V6_ATTACK_FIRST = (0x2A05, 0x2A06, 0x2A0B, 0x2A0C, 0x2602, 0x2604, 0x2606, 0x2001)


# --------------------------------------------------------------------------------------------
# Public result


@dataclass(frozen=True)
class SampleSummary:
    """What was written, so the CLI, demo and benchmarks can report it without re-reading."""

    out_dir: Path
    start: dt.date
    days: int
    seed: int
    scale: float
    log_files: int
    digest_files: int
    events: int
    duplicates: int
    service_events: int
    identities: int
    accounts: tuple[str, ...]
    regions: tuple[str, ...]
    org_id: str
    suspicious: int
    benign_novelties: int
    ground_truth: Path
    seconds: float

    @property
    def files(self) -> int:
        """Log and digest files together (every object written under ``AWSLogs/``)."""
        return self.log_files + self.digest_files

    def __str__(self) -> str:
        return (
            f"{self.days} days from {self.start} (seed {self.seed}, scale {self.scale:g}): "
            f"{self.log_files} log files + {self.digest_files} digests, {self.events} events "
            f"({self.duplicates} duplicates, {self.service_events} from AWS services), "
            f"{self.identities} identities, {len(self.accounts)} accounts, {len(self.regions)} regions; "
            f"ground truth: {self.suspicious} suspicious, {self.benign_novelties} benign novelties"
        )


# --------------------------------------------------------------------------------------------
# Deterministic helpers


def _rng(seed: int, *stream: int) -> np.random.Generator:
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence([int(seed) & 0xFFFFFFFF, *stream])))


class _Names:
    """Identifiers derived by hashing, so they do not depend on the order of random draws."""

    def __init__(self, seed: int) -> None:
        self.seed = seed

    def _stream(self, n: int, parts: tuple[Any, ...]) -> bytes:
        text = "|".join(str(p) for p in (self.seed, *parts)).encode()
        out = b""
        counter = 0
        while len(out) < n:
            out += hashlib.blake2b(text + b"#%d" % counter, digest_size=64).digest()
            counter += 1
        return out[:n]

    def chars(self, alphabet: str, n: int, *parts: Any) -> str:
        size = len(alphabet)
        return "".join(alphabet[b % size] for b in self._stream(n, parts))

    def hex(self, n: int, *parts: Any) -> str:
        return self._stream((n + 1) // 2, parts).hex()[:n]


def _day_start(start: dt.date, day: int) -> int:
    return calendar.timegm(start.timetuple()) + day * _DAY


def _iso(epoch: int) -> str:
    return dt.datetime.fromtimestamp(epoch, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _action(name: str) -> str:
    return re.sub(r"\d{8}(v\d)?$", "", name)


# --------------------------------------------------------------------------------------------
# Event catalogue: (service, eventName, readOnly, requestParameters, logged in us-east-1 only)

_P_DESCRIBE = {"filterSet": {}}
_EVENT_TABLE: tuple[tuple[str, str, bool, dict | None, bool], ...] = (
    ("sts", "GetCallerIdentity", True, None, False),
    ("s3", "ListBuckets", True, {"Host": "s3.amazonaws.com"}, False),
    (
        "s3",
        "GetBucketLocation",
        True,
        {"bucketName": "acme-app-artifacts", "Host": "s3.amazonaws.com", "location": ""},
        False,
    ),
    (
        "s3",
        "GetBucketPolicy",
        True,
        {"bucketName": "acme-app-artifacts", "Host": "s3.amazonaws.com", "policy": ""},
        False,
    ),
    ("s3", "GetBucketAcl", True, {"bucketName": BUCKET, "Host": f"{BUCKET}.s3.amazonaws.com", "acl": ""}, False),
    ("ec2", "DescribeInstances", True, {"instancesSet": {}, "filterSet": {}}, False),
    ("ec2", "DescribeSecurityGroups", True, {"securityGroupSet": {}, "securityGroupIdSet": {}, "filterSet": {}}, False),
    ("ec2", "DescribeVpcs", True, {"vpcSet": {}, "filterSet": {}}, False),
    ("ec2", "DescribeSubnets", True, {"subnetSet": {}, "filterSet": {}}, False),
    ("ec2", "DescribeRegions", True, {"regionSet": {}, "allRegions": True}, False),
    (
        "ec2",
        "DescribeSnapshots",
        True,
        {"snapshotSet": {}, "ownersSet": {"items": [{"owner": "self"}]}, "filterSet": {}},
        False,
    ),
    ("ec2", "DescribeTags", True, _P_DESCRIBE, False),
    ("ec2", "DescribeAccountAttributes", True, {"accountAttributeNameSet": {}, "filterSet": {}}, False),
    ("ec2", "CreateSnapshot", False, {"volumeId": "vol-0b1c2d3e4f5a6b7c8", "description": "nightly backup"}, False),
    ("ec2", "DeleteSnapshot", False, {"snapshotId": "snap-0a9b8c7d6e5f4a3b2"}, False),
    ("ec2", "StartInstances", False, {"instancesSet": {"items": [{"instanceId": "i-0d4c3b2a1f0e9d8c7"}]}}, False),
    (
        "ec2",
        "StopInstances",
        False,
        {"instancesSet": {"items": [{"instanceId": "i-0d4c3b2a1f0e9d8c7"}]}, "force": False},
        False,
    ),
    ("iam", "ListRoles", True, None, True),
    ("iam", "GetRole", True, {"roleName": "app-server-role"}, True),
    ("iam", "ListPolicies", True, {"scope": "Local", "onlyAttached": False}, True),
    ("iam", "GetAccountSummary", True, None, True),
    ("iam", "ListUsers", True, None, True),
    ("iam", "ListGroups", True, None, True),
    ("iam", "GetUser", True, None, True),
    ("iam", "ListAccessKeys", True, None, True),
    ("iam", "ListAttachedUserPolicies", True, {"userName": "deploy-bot"}, True),
    ("iam", "GetAccountAuthorizationDetails", True, {"filter": ["User", "Role", "Group", "LocalManagedPolicy"]}, True),
    ("iam", "CreateUser", False, {"userName": "svc-maintenance"}, True),
    ("iam", "CreateLoginProfile", False, {"userName": "svc-maintenance", "passwordResetRequired": False}, True),
    ("iam", "CreateAccessKey", False, {"userName": "svc-maintenance"}, True),
    (
        "iam",
        "AttachUserPolicy",
        False,
        {"userName": "svc-maintenance", "policyArn": "arn:aws:iam::aws:policy/AdministratorAccess"},
        True,
    ),
    ("iam", "PutRolePolicy", False, {"roleName": "app-server-role", "policyName": "maintenance"}, True),
    ("cloudformation", "DescribeStacks", True, None, False),
    ("cloudformation", "ListStacks", True, {"stackStatusFilter": ["CREATE_COMPLETE", "UPDATE_COMPLETE"]}, False),
    ("cloudformation", "GetTemplate", True, {"stackName": "app-service"}, False),
    ("cloudformation", "CreateChangeSet", False, {"stackName": "app-service", "changeSetType": "UPDATE"}, False),
    ("cloudformation", "DescribeChangeSet", True, {"stackName": "app-service"}, False),
    ("cloudformation", "ExecuteChangeSet", False, {"stackName": "app-service"}, False),
    ("logs", "DescribeLogGroups", True, {"limit": 50}, False),
    ("logs", "FilterLogEvents", True, {"logGroupName": "/aws/lambda/nightly-report", "limit": 100}, False),
    ("logs", "CreateLogStream", False, {"logGroupName": "/app/server"}, False),
    ("lambda", "ListFunctions20150331", True, None, False),
    ("lambda", "GetFunction20150331v2", True, {"functionName": "nightly-report"}, False),
    ("lambda", "UpdateFunctionCode20150331v2", False, {"functionName": "s3-object-tagger", "publish": True}, False),
    ("ssm", "GetParameter", True, {"name": "/app/config/db-host"}, False),
    ("ssm", "GetParameters", True, {"names": ["/app/config/db-host", "/app/config/db-port"]}, False),
    ("ssm", "DescribeParameters", True, None, False),
    ("ssm", "UpdateInstanceInformation", False, {"agentName": "amazon-ssm-agent", "agentVersion": "3.3.1142.0"}, False),
    ("ssm", "StartSession", False, {"target": "i-0d4c3b2a1f0e9d8c7"}, False),
    ("kms", "Decrypt", True, {"encryptionAlgorithm": "SYMMETRIC_DEFAULT"}, False),
    ("kms", "GenerateDataKey", True, {"keySpec": "AES_256"}, False),
    ("kms", "ListAliases", True, None, False),
    ("kms", "ListKeys", True, None, False),
    ("secretsmanager", "GetSecretValue", True, {"secretId": "prod/app/db"}, False),
    ("secretsmanager", "ListSecrets", True, None, False),
    ("dynamodb", "DescribeTable", True, {"tableName": "orders"}, False),
    ("rds", "DescribeDBInstances", True, None, False),
    ("ecr", "GetAuthorizationToken", True, None, False),
    ("ecr", "DescribeRepositories", True, None, False),
    ("ecr", "PutImage", False, {"repositoryName": "app-service", "imageTag": "latest"}, False),
    ("cloudwatch", "DescribeAlarms", True, {"maxRecords": 100}, False),
    ("guardduty", "ListDetectors", True, None, False),
    ("cloudtrail", "DescribeTrails", True, {"includeShadowTrails": True}, False),
    ("organizations", "DescribeOrganization", True, None, True),
    ("health", "DescribeEventAggregates", True, {"aggregateField": "eventTypeCategory"}, True),
    ("sts", "AssumeRole", True, None, False),
    ("sts", "AssumeRoleWithWebIdentity", True, None, False),
)

_EVENTS: tuple[tuple[str, str, bool, dict | None, bool], ...] = tuple(
    (f"{svc}.amazonaws.com", name, ro, params, glob) for svc, name, ro, params, glob in _EVENT_TABLE
)
_EV = {name: i for i, (_, name, _, _, _) in enumerate(_EVENTS)}
_GLOBAL = np.array([e[4] for e in _EVENTS], dtype=bool)


def _catalog(*pairs: tuple[str, float]) -> tuple[np.ndarray, np.ndarray]:
    idx = np.array([_EV[name] for name, _ in pairs], dtype=np.int64)
    weights = np.array([w for _, w in pairs], dtype=float)
    return idx, np.cumsum(weights / weights.sum())


_CATALOGS = {
    "human": _catalog(
        ("GetCallerIdentity", 6),
        ("ListBuckets", 6),
        ("GetBucketPolicy", 2),
        ("DescribeInstances", 10),
        ("DescribeSecurityGroups", 5),
        ("DescribeVpcs", 3),
        ("DescribeSubnets", 2),
        ("StartInstances", 0.6),
        ("StopInstances", 0.6),
        ("ListRoles", 3),
        ("GetRole", 2),
        ("ListPolicies", 1),
        ("DescribeStacks", 5),
        ("ListStacks", 2),
        ("DescribeLogGroups", 4),
        ("FilterLogEvents", 3),
        ("ListFunctions20150331", 3),
        ("GetFunction20150331v2", 2),
        ("GetParameter", 2),
        ("StartSession", 0.7),
        ("ListAliases", 1),
        ("ListSecrets", 1),
        ("DescribeAlarms", 2),
        ("DescribeRepositories", 1),
        ("DescribeTable", 2),
        ("DescribeDBInstances", 2),
        ("DescribeEventAggregates", 1.5),
    ),
    "internal": _catalog(
        ("DescribeAccountAttributes", 3), ("ListAliases", 2), ("GetAccountSummary", 2), ("GetBucketLocation", 2)
    ),
    "backup": _catalog(
        ("ListBuckets", 2),
        ("GetBucketLocation", 3),
        ("DescribeSnapshots", 4),
        ("CreateSnapshot", 3),
        ("DeleteSnapshot", 2),
    ),
    "instance": _catalog(
        ("UpdateInstanceInformation", 8),
        ("Decrypt", 6),
        ("GetSecretValue", 3),
        ("DescribeTags", 3),
        ("CreateLogStream", 2),
        ("GetCallerIdentity", 1),
        ("GetParameters", 2),
        ("GetAuthorizationToken", 1),
    ),
    "lambda": _catalog(
        ("DescribeTable", 3), ("Decrypt", 4), ("GetSecretValue", 2), ("GetParameter", 3), ("GetBucketLocation", 1)
    ),
    "cicd": _catalog(
        ("GetCallerIdentity", 2),
        ("DescribeStacks", 6),
        ("GetTemplate", 2),
        ("CreateChangeSet", 2),
        ("DescribeChangeSet", 4),
        ("ExecuteChangeSet", 1),
        ("GetAuthorizationToken", 2),
        ("PutImage", 1),
        ("UpdateFunctionCode20150331v2", 1),
        ("GetBucketLocation", 1),
    ),
    "config": _catalog(
        ("DescribeInstances", 4),
        ("DescribeSecurityGroups", 4),
        ("DescribeVpcs", 2),
        ("DescribeSubnets", 2),
        ("ListRoles", 1),
        ("GetBucketAcl", 1),
        ("DescribeDBInstances", 1),
    ),
    "autoscaling": _catalog(("DescribeInstances", 3), ("DescribeAccountAttributes", 1), ("DescribeSubnets", 1)),
    "cloudtrail": _catalog(("GetBucketAcl", 1)),
}

_RECON = (
    "ListBuckets",
    "DescribeInstances",
    "DescribeRegions",
    "ListUsers",
    "ListRoles",
    "ListPolicies",
    "GetAccountAuthorizationDetails",
    "ListAccessKeys",
    "ListAttachedUserPolicies",
    "ListSecrets",
    "DescribeSnapshots",
    "ListFunctions20150331",
    "DescribeDBInstances",
    "ListDetectors",
    "DescribeTrails",
    "DescribeOrganization",
    "ListKeys",
    "DescribeParameters",
    "ListGroups",
    "GetUser",
    "DescribeSecurityGroups",
)

# --------------------------------------------------------------------------------------------
# User agents

_UA_BROWSER = (
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/131.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:133.0) Gecko/20100101 Firefox/133.0",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/18.1 Safari/605.1.15",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/131.0.0.0 Safari/537.36 Edg/131.0.0.0",
)
_UA_CLI = (
    "aws-cli/2.22.4 md/awscrt#0.22.0 ua/2.0 os/macos#24.1.0 md/arch#arm64 lang/python#3.12.6 md/pyimpl#CPython "
    "cfg/retry-mode#standard md/installer#exe md/prompt#off",
    "aws-cli/2.19.1 md/awscrt#0.22.0 ua/2.0 os/linux#6.8.0-49-generic md/arch#x86_64 lang/python#3.12.6 "
    "md/pyimpl#CPython cfg/retry-mode#standard md/installer#exe md/distrib#ubuntu.24 md/prompt#off",
    "Boto3/1.35.76 md/Botocore#1.35.76 ua/2.0 os/macos#24.1.0 md/arch#arm64 lang/python#3.12.7 md/pyimpl#CPython "
    "cfg/retry-mode#legacy Botocore/1.35.76",
    "APN/1.0 HashiCorp/1.0 Terraform/1.10.1 (+https://www.terraform.io) terraform-provider-aws/5.80.0 "
    "(+https://registry.terraform.io/providers/hashicorp/aws) aws-sdk-go-v2/1.32.6 ua/2.1 os/macos lang/go#1.23.3 "
    "md/GOOS#darwin md/GOARCH#arm64 api/ec2#1.196.0",
)
_UA_INSTANCE = (
    "aws-sdk-go/1.55.5 (go1.22.7; linux; amd64) amazon-ssm-agent/3.3.1142.0",
    "Boto3/1.34.162 md/Botocore#1.34.162 ua/2.0 os/linux#6.1.115-126.197.amzn2023.x86_64 md/arch#x86_64 "
    "lang/python#3.9.20 md/pyimpl#CPython cfg/retry-mode#legacy Botocore/1.34.162",
    "aws-sdk-java/2.25.60 Linux/6.1.115-126.197.amzn2023.x86_64 OpenJDK_64-Bit_Server_VM/21.0.5+11-LTS Java/21.0.5 "
    "vendor/Amazon.com_Inc. io/sync http/Apache cfg/retry-mode/legacy",
)
_UA_LAMBDA = (
    "Boto3/1.35.36 md/Botocore#1.35.36 ua/2.0 os/linux#5.10.227-239.884.amzn2.x86_64 md/arch#x86_64 "
    "lang/python#3.12.7 md/pyimpl#CPython exec-env/AWS_Lambda_python3.12 cfg/retry-mode#legacy Botocore/1.35.36"
)
_UA_CI = (
    "aws-cli/2.22.2 md/awscrt#0.22.0 ua/2.0 os/linux#6.5.0-1025-azure md/arch#x86_64 lang/python#3.12.6 "
    "md/pyimpl#CPython exec-env/GitHubActions cfg/retry-mode#standard md/installer#exe md/distrib#ubuntu.22 "
    "md/prompt#off md/command#cloudformation.deploy"
)
_UA_BACKUP = (
    "aws-sdk-java/1.12.780 Linux/5.15.0-126-generic OpenJDK_64-Bit_Server_VM/17.0.13+11 java/17.0.13 vendor/Ubuntu"
)
_UA_ATTACK = (
    "aws-cli/1.22.34 Python/3.11.8 Linux/6.6.15-amd64 botocore/1.23.34",
    "Boto3/1.34.14 md/Botocore#1.34.14 ua/2.0 os/linux#6.6.9-amd64 md/arch#x86_64 lang/python#3.11.8 "
    "md/pyimpl#CPython cfg/retry-mode#legacy Botocore/1.34.14 Resource",
    "aws-sdk-go/1.50.8 (go1.21.6; linux; amd64)",
)

# --------------------------------------------------------------------------------------------
# The world: accounts, networks, identities


@dataclass
class _Account:
    name: str
    id: str
    org_id: str | None
    trail: str
    index: int

    @property
    def root(self) -> str:
        return f"AWSLogs/{self.org_id}/{self.id}/" if self.org_id else f"AWSLogs/{self.id}/"


@dataclass
class _Net:
    """A /24 (or IPv6 /64) with the addresses in use, each valid on days [since, until)."""

    network: ipaddress.IPv4Network | ipaddress.IPv6Network
    hosts: list[tuple[str, int, int]] = field(default_factory=list)

    def ips(self, day: int) -> list[str]:
        return [ip for ip, since, until in self.hosts if since <= day < until]

    def host(self, number: int) -> str:
        return str(self.network.network_address + number)


@dataclass
class _Identity:
    kind: str  # iam_user | sso | instance | cicd | lambda | service_role
    account: _Account
    arn: str
    name: str  # IAM user name or role session name
    principal: str  # AIDA... (user) or AROA... (role)
    catalog: str
    region_w: np.ndarray
    role: str = ""
    role_path: str = "/"
    access_key: str = ""
    human: "_Human | None" = None
    net: _Net | None = None
    fixed_ip: str = ""
    vpce: str = ""
    ua: str = ""
    region: int = 0
    params: dict = field(default_factory=dict)
    extra: dict = field(default_factory=dict)

    @property
    def role_arn(self) -> str:
        return f"arn:aws:iam::{self.account.id}:role{self.role_path}{self.role}"


@dataclass
class _Human:
    name: str
    tz: int
    office: _Net
    home: _Net
    home6: _Net | None
    mobile: _Net | None
    p_office: float
    intensity: float
    region_w: np.ndarray
    cli_ua: str
    browser_ua: str
    entities: list[_Identity] = field(default_factory=list)
    weights: np.ndarray = field(default_factory=lambda: np.ones(1))


@dataclass
class _World:
    accounts: list[_Account]
    org_id: str
    humans: list[_Human]
    identities: list[_Identity]
    travel: list[_Net]
    offsets: np.ndarray  # delivery offset per (account, region), seconds
    digest_offsets: np.ndarray
    legit_first_v4: set[int]
    nets: "_NetFactory"


class _NetFactory:
    """Draws public networks from the seeded generator, never two in the same /16 (or IPv6 /32)."""

    def __init__(self, rng: np.random.Generator) -> None:
        self.rng = rng
        self.used16: set[tuple[int, int]] = set()
        self.used32: set[tuple[int, int]] = set()

    def v4(self, firsts: tuple[int, ...] = _PUBLIC_FIRST, avoid_first: set[int] | None = None) -> _Net:
        while True:
            first = int(self.rng.choice(firsts))
            second, third = (int(x) for x in self.rng.integers(0, 256, 2))
            if (avoid_first and first in avoid_first) or (first, second) in self.used16:
                continue
            net = ipaddress.IPv4Network(f"{first}.{second}.{third}.0/24")
            if not net.is_global:
                continue
            self.used16.add((first, second))
            return _Net(net)

    def v6(self, firsts: tuple[int, ...] = _V6_FIRST) -> _Net:
        while True:
            words = [int(self.rng.choice(firsts)), *(int(x) for x in self.rng.integers(0, 0x10000, 3))]
            if (words[0], words[1]) in self.used32 or (words[0] == 0x2001 and words[1] < 0x1000):
                continue
            net = ipaddress.IPv6Network(("{:x}:{:x}:{:x}:{:x}::".format(*words), 64))
            if not net.is_global:
                continue
            self.used32.add((words[0], words[1]))
            return _Net(net)

    def hosts(self, net: _Net, count: int, since: int = 0, until: int = 1 << 30) -> list[str]:
        numbers = self.rng.choice(np.arange(2, 255), size=count, replace=False)
        ips = [net.host(int(n)) for n in numbers]
        net.hosts.extend((ip, since, until) for ip in ips)
        return ips


_PEOPLE = (
    "alice.nguyen",
    "bruno.costa",
    "chen.wei",
    "dana.kowalski",
    "eitan.levy",
    "fatima.rahman",
    "georg.muller",
    "hana.sato",
    "ivan.petrov",
    "julia.santos",
    "kofi.mensah",
    "lena.fischer",
    "mateo.garcia",
    "nora.lindqvist",
    "omar.haddad",
    "priya.iyer",
)
# office index per person: 0 New York (UTC-5), 1 London (UTC+0), 2 Sydney (UTC+10)
_PERSON_OFFICE = (0, 1, 0, 2, 1, 0, 1, 2, 0, 1, 0, 1, 0, 2, 1, 0)
_OPS = {0, 1, 7, 8, 13}
_SECURITY = {5, 11}
_IAM_USERS = {2: "dev", 4: "prod", 9: "dev", 12: "prod", 14: "dev"}
_IPV6_HOMES = {3, 6, 10}
_OFFICE_TZ = (-5, 0, 10)
_OFFICE_REGIONS = ((0.8, 0.15, 0.05), (0.35, 0.6, 0.05), (0.3, 0.1, 0.6))


def _build_world(seed: int, names: _Names) -> _World:
    rng = _rng(seed, 1)
    nets = _NetFactory(rng)
    ids: set[int] = set()
    while len(ids) < 3:
        ids.add(int(rng.integers(10**11, 10**12)))
    acct_ids = sorted(ids, key=lambda _: rng.random())
    org_id = "o-" + "".join(rng.choice(list(_LOWER_ALNUM), 10))
    accounts = [
        _Account("prod", str(acct_ids[0]), None, "management-events", 0),
        _Account("dev", str(acct_ids[1]), None, "management-events", 1),
        _Account("shared-services", str(acct_ids[2]), org_id, "org-trail", 2),
    ]
    by_name = {a.name: a for a in accounts}
    offices = []
    for _ in range(3):
        office = nets.v4()
        nets.hosts(office, int(rng.integers(3, 5)))
        offices.append(office)
    carriers = []
    for _ in range(4):
        carrier = nets.v4()
        nets.hosts(carrier, 4)
        carriers.append(carrier)
    travel = [nets.v4() for _ in range(10)]
    identities: list[_Identity] = []

    def role_ident(
        kind: str,
        account: _Account,
        role: str,
        session: str,
        catalog: str,
        region_w: Any,
        role_path: str = "/",
        **kw: Any,
    ) -> _Identity:
        ident = _Identity(
            kind=kind,
            account=account,
            name=session,
            role=role,
            role_path=role_path,
            catalog=catalog,
            arn=f"arn:aws:sts::{account.id}:assumed-role/{role}/{session}",
            principal="AROA" + names.chars(_B32, 17, "aroa", account.id, role),
            region_w=np.asarray(region_w, dtype=float),
            **kw,
        )
        identities.append(ident)
        return ident

    sso_roles: dict[tuple[str, str], str] = {}

    def sso(human: _Human, account: _Account, permset: str) -> _Identity:
        role = sso_roles.setdefault(
            (account.id, permset), f"AWSReservedSSO_{permset}_{names.hex(16, 'sso', account.id, permset)}"
        )
        return role_ident(
            "sso",
            account,
            role,
            f"{human.name}@example.com",
            "human",
            human.region_w,
            role_path="/aws-reserved/sso.amazonaws.com/",
            human=human,
        )

    humans = []
    for i, person in enumerate(_PEOPLE):
        office_i = _PERSON_OFFICE[i]
        home = nets.v4()
        nets.hosts(home, int(rng.integers(1, 3)))
        home6 = nets.v6() if i in _IPV6_HOMES else None
        human = _Human(
            name=person,
            tz=_OFFICE_TZ[office_i],
            office=offices[office_i],
            home=home,
            home6=home6,
            mobile=carriers[int(rng.integers(0, 4))] if rng.random() < 0.45 else None,
            p_office=float(rng.uniform(0.35, 0.85)),
            intensity=float(rng.uniform(10, 30)),
            region_w=np.array(_OFFICE_REGIONS[office_i]),
            cli_ua=_UA_CLI[int(rng.integers(0, len(_UA_CLI)))],
            browser_ua=_UA_BROWSER[int(rng.integers(0, len(_UA_BROWSER)))],
        )
        if i in _OPS:
            primary = [sso(human, by_name["prod"], "AdministratorAccess")]
            others = [
                sso(human, by_name["dev"], "AdministratorAccess"),
                sso(human, by_name["shared-services"], "AdministratorAccess"),
            ]
        elif i in _SECURITY:
            primary = [sso(human, by_name["shared-services"], "SecurityAudit")]
            others = [sso(human, by_name["prod"], "ReadOnlyAccess"), sso(human, by_name["dev"], "ReadOnlyAccess")]
        else:
            primary = [sso(human, by_name["dev"], "PowerUserAccess")]
            others = [sso(human, by_name["prod"], "ReadOnlyAccess")] if rng.random() < 0.5 else []
        if i in _IAM_USERS:
            account = by_name[_IAM_USERS[i]]
            user = _Identity(
                kind="iam_user",
                account=account,
                arn=f"arn:aws:iam::{account.id}:user/{person}",
                name=person,
                principal="AIDA" + names.chars(_B32, 17, "aida", account.id, person),
                catalog="human",
                region_w=human.region_w,
                access_key="AKIA" + names.chars(_B32, 16, "akia", account.id, person),
                human=human,
                ua=human.cli_ua,
            )
            identities.append(user)
            others.append(user)
        human.entities = primary + others
        weights = np.array([0.55] + [0.45 / max(1, len(others))] * len(others))
        human.weights = np.cumsum(weights / weights.sum())
        humans.append(human)

    # Non-human identities
    prod, dev, shared = by_name["prod"], by_name["dev"], by_name["shared-services"]
    datacenter = nets.v4()
    nets.hosts(datacenter, 2)
    identities.append(
        _Identity(
            kind="iam_user",
            account=prod,
            arn=f"arn:aws:iam::{prod.id}:user/backup-agent",
            name="backup-agent",
            principal="AIDA" + names.chars(_B32, 17, "aida", prod.id, "backup-agent"),
            catalog="backup",
            region_w=np.array([0.7, 0.3, 0.0]),
            access_key="AKIA" + names.chars(_B32, 16, "akia", prod.id, "backup"),
            net=datacenter,
            ua=_UA_BACKUP,
        )
    )
    runners = nets.v4()
    nets.hosts(runners, 5)
    for account, region in ((prod, 0), (dev, 1)):
        role_ident(
            "cicd",
            account,
            "github-actions-deploy",
            "GitHubActions",
            "cicd",
            np.eye(3)[region],
            net=runners,
            ua=_UA_CI,
            region=region,
        )
    instances = (
        (prod, "app-server-role", 0, "public"),
        (prod, "app-server-role", 0, "public"),
        (prod, "batch-worker-role", 0, "vpce"),
        (prod, "app-server-role", 1, "public"),
        (dev, "dev-box-role", 1, "public"),
        (shared, "bastion-role", 0, "public"),
        (shared, "monitoring-role", 2, "vpce"),
    )
    for n, (account, role, region, access) in enumerate(instances):
        iid = "i-0" + names.hex(16, "instance", account.id, n)
        weights = np.full(3, 0.01)
        weights[region] = 0.98
        if access == "vpce":  # an interface endpoint only serves its own region
            weights = np.eye(3)[region]
        if access == "public":
            ip = nets.hosts(nets.v4(_CLOUD_FIRST), 1)[0]
            vpce = ""
        else:
            ip = f"10.{int(rng.integers(0, 64))}.{int(rng.integers(0, 256))}.{int(rng.integers(4, 250))}"
            vpce = "vpce-0" + names.hex(16, "vpce", account.id, region)
        ident = role_ident(
            "instance",
            account,
            role,
            iid,
            "instance",
            weights,
            fixed_ip=ip,
            vpce=vpce,
            ua=_UA_INSTANCE[n % len(_UA_INSTANCE)],
            region=region,
            params={"UpdateInstanceInformation": {**_EVENTS[_EV["UpdateInstanceInformation"]][3], "instanceId": iid}},
        )
        ident.extra["rotate_offset"] = int(rng.integers(1, 6 * 3600))
        ident.extra["burst_offset"] = int(rng.integers(0, 3 * 3600 - 120))
    nat = nets.hosts(nets.v4(_CLOUD_FIRST), 1)[0]
    role_ident(
        "lambda",
        prod,
        "nightly-report-role-" + names.chars(_LOWER_ALNUM, 8, "lambda", 1),
        "nightly-report",
        "lambda",
        np.eye(3)[0],
        fixed_ip=nat,
        ua=_UA_LAMBDA,
        extra={"schedule": "hourly"},
    )
    lambda_net = nets.v4(_CLOUD_FIRST)
    nets.hosts(lambda_net, 6)
    role_ident(
        "lambda",
        prod,
        "s3-object-tagger-role-" + names.chars(_LOWER_ALNUM, 8, "lambda", 2),
        "s3-object-tagger",
        "lambda",
        np.eye(3)[0],
        net=lambda_net,
        ua=_UA_LAMBDA,
        extra={"schedule": "busy"},
    )
    notifier_net = nets.v4(_CLOUD_FIRST)
    nets.hosts(notifier_net, 3)
    role_ident(
        "lambda",
        dev,
        "cost-notifier-role-" + names.chars(_LOWER_ALNUM, 8, "lambda", 3),
        "cost-notifier",
        "lambda",
        np.eye(3)[1],
        net=notifier_net,
        ua=_UA_LAMBDA,
        extra={"schedule": "daily"},
    )
    for account in accounts:
        role_ident(
            "service_role",
            account,
            "AWSServiceRoleForConfig",
            "AWSConfig-Describe",
            "config",
            np.full(3, 1 / 3),
            role_path="/aws-service-role/config.amazonaws.com/",
            fixed_ip="config.amazonaws.com",
            ua="config.amazonaws.com",
        )
    role_ident(
        "service_role",
        prod,
        "AWSServiceRoleForAutoScaling",
        "AutoScaling",
        "autoscaling",
        np.eye(3)[0],
        role_path="/aws-service-role/autoscaling.amazonaws.com/",
        fixed_ip="autoscaling.amazonaws.com",
        ua="autoscaling.amazonaws.com",
    )

    legit_first = {first for first, _ in nets.used16}
    return _World(
        accounts=accounts,
        org_id=org_id,
        humans=humans,
        identities=identities,
        travel=travel,
        offsets=rng.integers(0, 5, size=(3, 3)) * 60 + rng.integers(0, 55, size=(3, 3)),
        digest_offsets=rng.integers(60, 3540, size=(3, 3)),
        legit_first_v4=legit_first,
        nets=nets,
    )


# --------------------------------------------------------------------------------------------
# Sessions: one caller with one set of credentials from one source address for a while


@dataclass
class _Session:
    account: _Account
    ui: dict
    arn: str | None
    ip: str
    ua: str
    start: int
    end: int
    n: int = 0
    catalog: str = ""
    region_w: np.ndarray | None = None
    err_rate: float = 0.0
    vpce: str = ""
    console: bool = False
    params: dict | None = None
    events: list[int] | None = None
    regions: list[int] | None = None
    errors: list[bool] | None = None
    gap: tuple[int, int] = (2, 40)
    travel: bool = False

    @property
    def from_ip(self) -> bool:
        return self.ip != "AWS Internal" and not self.ip.endswith(".amazonaws.com")


def _ui_user(ident: _Identity) -> dict:
    return {
        "type": "IAMUser",
        "principalId": ident.principal,
        "arn": ident.arn,
        "accountId": ident.account.id,
        "accessKeyId": ident.access_key,
        "userName": ident.name,
    }


def _ui_role(ident: _Identity, key: str, created: int, invoked_by: str = "") -> dict:
    context: dict[str, Any] = {
        "sessionIssuer": {
            "type": "Role",
            "principalId": ident.principal,
            "arn": ident.role_arn,
            "accountId": ident.account.id,
            "userName": ident.role,
        },
        "webIdFederationData": {},
        "attributes": {"creationDate": _iso(created), "mfaAuthenticated": "false"},
    }
    if ident.kind == "instance":
        context["ec2RoleDelivery"] = "2.0"
    ui = {
        "type": "AssumedRole",
        "principalId": f"{ident.principal}:{ident.name}",
        "arn": ident.arn,
        "accountId": ident.account.id,
        "accessKeyId": key,
        "sessionContext": context,
    }
    if invoked_by:
        ui["invokedBy"] = invoked_by
    return ui


def _error(source: str, name: str, arn: str | None, region: str, account: str) -> tuple[str, str]:
    service = source.split(".", 1)[0]
    action = _action(name)
    if service == "s3":
        return "AccessDenied", "Access Denied"
    detail = f"User: {arn} is not authorized to perform: {service}:{action}"
    if service == "ec2":
        return (
            "Client.UnauthorizedOperation",
            f"You are not authorized to perform this operation. {detail} because no identity-based policy "
            f"allows the {service}:{action} action",
        )
    return (
        "AccessDenied",
        f"{detail} on resource: arn:aws:{service}:{region}:{account}:* because no identity-based "
        f"policy allows the {service}:{action} action",
    )


def _uuids(rng: np.random.Generator, n: int) -> str:
    """``n`` random version-4 UUIDs concatenated (36 characters each), built in one vectorised pass."""
    nibbles = rng.integers(0, 16, size=(n, 32), dtype=np.uint8)
    nibbles[:, 12] = 4
    nibbles[:, 16] = 8 + (nibbles[:, 16] & 3)
    chars = np.frombuffer(_HEX.encode(), dtype=np.uint8)[nibbles]
    out = np.full((n, 36), ord("-"), dtype=np.uint8)
    out[:, 0:8] = chars[:, 0:8]
    out[:, 9:13] = chars[:, 8:12]
    out[:, 14:18] = chars[:, 12:16]
    out[:, 19:23] = chars[:, 16:20]
    out[:, 24:36] = chars[:, 20:32]
    return out.tobytes().decode("ascii")


@dataclass
class _Truth:
    label: str
    day: int
    arn: str
    ip: str
    kind: str
    description: str


_INCIDENTS = (
    "stolen_access_key",
    "session_replay",
    "recon_burst",
    "persistence",
    "instance_credential_exfiltration",
    "stolen_access_key_ipv6",
    "cicd_role_abuse",
    "session_replay",
    "persistence",
    "recon_burst",
    "stolen_access_key",
    "instance_credential_exfiltration",
)


class _Generator:
    """Builds each day's sessions (background, forced warm-ups and injections) from the world."""

    def __init__(self, world: _World, names: _Names, start: dt.date, days: int, seed: int, scale: float) -> None:
        self.world = world
        self.names = names
        self.start = start
        self.days = days
        self.seed = seed
        self.scale = scale
        self.forced: dict[int, list[_Session]] = {}
        self.truth: list[_Truth] = []
        self.first_incident_day = max(1, round(days * 2 / 3))

    # ---- small helpers

    def _key(self, *parts: Any) -> str:
        return "ASIA" + self.names.chars(_B32, 16, "asia", *parts)

    def _v6_of_day(self, human: _Human, day: int) -> str:
        assert human.home6 is not None
        return human.home6.host(int(self.names.hex(16, "v6", human.name, day), 16) | 0x0200_0000_0000_0000)

    def _human_ip(self, human: _Human, day: int, at_office: bool, rng: np.random.Generator) -> str:
        if human.mobile is not None and rng.random() < 0.04:
            return str(rng.choice(human.mobile.ips(day)))
        if at_office:
            return str(rng.choice(human.office.ips(day)))
        if human.home6 is not None and rng.random() < 0.8:
            return self._v6_of_day(human, day)
        return str(rng.choice(human.home.ips(day)))

    def _human_session(
        self,
        ident: _Identity,
        day: int,
        start: int,
        duration: int,
        n: int,
        ip: str,
        rng: np.random.Generator,
        console: bool | None = None,
        travel: bool = False,
    ) -> list[_Session]:
        human = ident.human
        assert human is not None
        day_end = _day_start(self.start, day) + _DAY
        end = min(start + duration, day_end - 1)
        start = min(start, end - 30)
        common = {
            "account": ident.account,
            "arn": ident.arn,
            "ip": ip,
            "start": start,
            "end": end,
            "n": n,
            "catalog": "human",
            "region_w": ident.region_w,
            "err_rate": 0.02,
            "travel": travel,
        }
        # a fixed number of draws whatever the scale, so the plan (drawn from its own stream) does not move
        console_draw, companion_draw, companion_events = rng.random(), rng.random(), int(rng.poisson(2))
        if ident.kind == "iam_user":
            return [_Session(ui=_ui_user(ident), ua=ident.ua, **common)]
        if console is None:
            console = bool(console_draw < 0.6)
        ui = _ui_role(ident, self._key(ident.arn, day, start), start - 20)
        sessions = [_Session(ui=ui, ua=human.browser_ua if console else human.cli_ua, console=console, **common)]
        if console and companion_draw < 0.35:
            internal = dict(
                common, ip="AWS Internal", n=1 + round(companion_events * self.scale), catalog="internal", err_rate=0.0
            )
            sessions.append(_Session(ui=ui, ua="AWS Internal", console=True, **internal))
        return sessions

    def _instance_window(self, ident: _Identity, when: int) -> tuple[int, int, int]:
        period = 6 * 3600
        offset = ident.extra["rotate_offset"]
        k = (when - offset) // period
        return k, k * period + offset, (k + 1) * period + offset

    def _ci_run(
        self, ident: _Identity, day: int, start: int, n: int, ip: str, rng: np.random.Generator, duration: int = 400
    ) -> list[_Session]:
        account = ident.account
        ui = _ui_role(ident, self._key(ident.arn, day, start), start)
        provider = f"arn:aws:iam::{account.id}:oidc-provider/token.actions.githubusercontent.com"
        subject = "repo:acme/app-service:ref:refs/heads/main"
        web = {
            "type": "WebIdentityUser",
            "principalId": f"{provider}:sts.amazonaws.com:{subject}",
            "userName": subject,
            "identityProvider": provider,
        }
        params = {
            "AssumeRoleWithWebIdentity": {
                "roleArn": ident.role_arn,
                "roleSessionName": ident.name,
                "durationSeconds": 3600,
            }
        }
        return [
            _Session(
                account=account,
                ui=web,
                arn=None,
                ip=ip,
                ua=_UA_CI,
                start=start - 3,
                end=start,
                events=[_EV["AssumeRoleWithWebIdentity"]],
                regions=[ident.region],
                errors=[False],
                params=params,
            ),
            _Session(
                account=account,
                ui=ui,
                arn=ident.arn,
                ip=ip,
                ua=ident.ua,
                start=start,
                end=start + duration,
                n=n,
                catalog="cicd",
                region_w=ident.region_w,
                err_rate=0.01,
            ),
        ]

    # ---- background activity

    def day_sessions(self, day: int, rng: np.random.Generator) -> list[_Session]:
        """Everything that happens on ``day``: people, machines, AWS services, and the plan's additions."""
        ds = _day_start(self.start, day)
        de = ds + _DAY
        weekday = (self.start + dt.timedelta(days=day)).weekday() < 5
        scale = self.scale
        sessions: list[_Session] = []
        for human in self.world.humans:
            if not rng.random() < (0.9 if weekday else 0.12):
                continue
            at_office = weekday and bool(rng.random() < human.p_office)
            travel_ip = ""
            if rng.random() < 0.012:
                net = self.world.travel[int(rng.integers(0, len(self.world.travel)))]
                travel_ip = net.host(int(rng.integers(2, 255)))
            for _ in range(1 + int(rng.poisson(1.6))):
                ident = human.entities[int(np.searchsorted(human.weights, rng.random()))]
                evening = not at_office and rng.random() < 0.2
                hour = rng.uniform(19, 23.5) if evening else rng.uniform(7.5, 18.5)
                start = ds + int(((hour - human.tz) % 24) * 3600)
                ip = travel_ip or self._human_ip(human, day, at_office, rng)
                n = 1 + int(rng.poisson(human.intensity * scale))
                sessions += self._human_session(
                    ident, day, start, int(rng.integers(120, 1800)), n, ip, rng, travel=bool(travel_ip)
                )
        for ident in self.world.identities:
            kind = ident.kind
            if kind == "instance":
                sessions += self._instance_day(ident, ds, de, rng)
            elif kind == "lambda":
                sessions += self._lambda_day(ident, day, ds, rng)
            elif kind == "cicd":
                for _ in range(int(rng.poisson(3.5 if weekday else 0.3))):
                    start = ds + int(rng.uniform(12, 22) * 3600)
                    ip = str(rng.choice(ident.net.ips(day)))
                    n = 8 + int(rng.poisson(20 * scale))
                    sessions += self._ci_run(ident, day, start, n, ip, rng, int(rng.integers(180, 720)))
            elif kind == "iam_user" and ident.human is None:
                sessions += self._backup_day(ident, day, ds, rng)
            elif kind == "service_role":
                # periodic sweeps by a service-linked role (AWS Config snapshots, Auto Scaling checks)
                ui = _ui_role(ident, self._key(ident.arn, day), ds - 600, invoked_by=ident.fixed_ip)
                for region in np.flatnonzero(ident.region_w > 0):
                    for _ in range(3 if ident.catalog == "config" else 2):
                        start = ds + int(rng.integers(0, _DAY - 300))
                        sessions.append(
                            _Session(
                                account=ident.account,
                                ui=ui,
                                arn=ident.arn,
                                ip=ident.fixed_ip,
                                ua=ident.ua,
                                start=start,
                                end=start + 120,
                                n=int(rng.poisson(4 * scale)),
                                catalog=ident.catalog,
                                region_w=np.eye(3)[region],
                            )
                        )
        shared = self.world.accounts[2]
        for block in range(6):  # CloudTrail checking its bucket's ACL, no ARN
            start = ds + block * 4 * 3600 + int(rng.integers(0, 4 * 3600 - 60))
            sessions.append(
                _Session(
                    account=shared,
                    ui={"type": "AWSService", "invokedBy": "cloudtrail.amazonaws.com"},
                    arn=None,
                    ip="cloudtrail.amazonaws.com",
                    ua="cloudtrail.amazonaws.com",
                    start=start,
                    end=start + 30,
                    n=1 + int(rng.poisson(3 * scale)),
                    catalog="cloudtrail",
                    region_w=np.eye(3)[0],
                )
            )
        return sessions + self.forced.get(day, [])

    def _instance_day(self, ident: _Identity, ds: int, de: int, rng: np.random.Generator) -> list[_Session]:
        """Cron-like bursts every three hours, with credentials rotated by EC2 every six hours."""
        sessions = []
        for when in range(ds + ident.extra["burst_offset"], de - 120, 3 * 3600):
            k, ws, _ = self._instance_window(ident, when)
            ui = _ui_role(ident, self._key(ident.arn, k), ws)
            sessions.append(
                _Session(
                    account=ident.account,
                    ui=ui,
                    arn=ident.arn,
                    ip=ident.fixed_ip,
                    ua=ident.ua,
                    start=when,
                    end=when + 90,
                    n=int(rng.poisson(18 * self.scale)),
                    catalog="instance",
                    region_w=ident.region_w,
                    err_rate=0.003,
                    vpce=ident.vpce,
                    params=ident.params,
                )
            )
        period = 6 * 3600
        offset = ident.extra["rotate_offset"]
        for k in range((ds - offset) // period + 1, (de - offset) // period + 1):
            if ds <= k * period + offset < de:
                sessions.append(self._service_assume(ident, "ec2.amazonaws.com", k * period + offset - 1))
        return sessions

    def _service_assume(self, ident: _Identity, service: str, when: int) -> _Session:
        params = {"AssumeRole": {"roleArn": ident.role_arn, "roleSessionName": ident.name}}
        return _Session(
            account=ident.account,
            ui={"type": "AWSService", "invokedBy": service},
            arn=None,
            ip=service,
            ua=service,
            start=when,
            end=when + 1,
            events=[_EV["AssumeRole"]],
            regions=[ident.region],
            errors=[False],
            params=params,
        )

    def _lambda_day(self, ident: _Identity, day: int, ds: int, rng: np.random.Generator) -> list[_Session]:
        schedule = ident.extra["schedule"]
        if schedule == "hourly":
            starts = [ds + h * 3600 + 31 for h in range(24)]
            mean = 4
        elif schedule == "busy":
            starts = sorted(int(x) for x in rng.integers(ds, ds + _DAY - 120, int(rng.poisson(20))))
            mean = 3
        else:
            starts = [ds + 8 * 3600 + 12]
            mean = 6
        sessions = []
        for start in starts:
            block = (start - ds) // (4 * 3600)
            ui = _ui_role(ident, self._key(ident.arn, day, block), ds + block * 4 * 3600)
            ip = ident.fixed_ip or str(rng.choice(ident.net.ips(day)))
            if rng.random() < 0.15:
                sessions.append(self._service_assume(ident, "lambda.amazonaws.com", start - 1))
            sessions.append(
                _Session(
                    account=ident.account,
                    ui=ui,
                    arn=ident.arn,
                    ip=ip,
                    ua=ident.ua,
                    start=start,
                    end=start + 90,
                    n=1 + int(rng.poisson(mean * self.scale)),
                    catalog="lambda",
                    region_w=ident.region_w,
                    err_rate=0.002,
                )
            )
        return sessions

    def _backup_day(self, ident: _Identity, day: int, ds: int, rng: np.random.Generator) -> list[_Session]:
        ui = _ui_user(ident)
        sessions = [
            _Session(
                account=ident.account,
                ui=ui,
                arn=ident.arn,
                ip=str(rng.choice(ident.net.ips(day))),
                ua=ident.ua,
                start=ds + 3600,
                end=ds + 3 * 3600,
                n=5 + int(rng.poisson(30 * self.scale)),
                catalog="backup",
                region_w=ident.region_w,
                err_rate=0.005,
            )
        ]
        # health checks every three hours, the last one at 23:59:55, so its records always arrive in a file of the
        # next day (delivery offsets stay below 4m55s past each 5-minute mark)
        for start in [ds + hour * 3600 + 1500 for hour in range(0, 24, 3)] + [ds + _DAY - 5]:
            sessions.append(
                _Session(
                    account=ident.account,
                    ui=ui,
                    arn=ident.arn,
                    ip=str(rng.choice(ident.net.ips(day))),
                    ua=ident.ua,
                    start=start,
                    end=min(start + 60, ds + _DAY - 1),
                    n=1 + int(rng.poisson(self.scale)),
                    catalog="backup",
                    region_w=ident.region_w,
                )
            )
        return sessions

    # ---- the plan: injected suspicious activity, benign novelties and the warm-ups they need

    def plan(self) -> None:
        """Decide the injected activity before any day is generated (from its own random stream)."""
        if self.first_incident_day >= self.days:
            return
        rng = _rng(self.seed, 2)
        nets = self.world.nets
        nets.rng = rng
        window = list(range(self.first_incident_day, self.days))
        count = min(12, max(6, len(window) + 2))
        incident_days = [window[i % len(window)] for i in range(count)]
        rng.shuffle(incident_days)
        used: set[str] = set()
        for kind, day in zip(_INCIDENTS[:count], incident_days, strict=True):
            self._incident(kind, day, rng, used)
        self._benign(window, rng)

    def _pick(self, candidates: list[_Identity], rng: np.random.Generator, used: set[str]) -> _Identity:
        fresh = [c for c in candidates if c.arn not in used] or candidates
        choice = fresh[int(rng.integers(0, len(fresh)))]
        used.add(choice.arn)
        return choice

    def _force(self, day: int, sessions: list[_Session]) -> None:
        self.forced.setdefault(day, []).extend(sessions)

    def _warm_up(self, ident: _Identity, rng: np.random.Generator, place: str = "") -> None:
        """Normal activity on two earlier days, so the identity (and its usual network) is known."""
        days = sorted({int(d) for d in rng.integers(0, self.first_incident_day, 2)})
        for day in days:
            ds = _day_start(self.start, day)
            start = ds + int(rng.uniform(1, 21) * 3600)
            if ident.kind == "cicd":
                self._force(day, self._ci_run(ident, day, start, 12, str(rng.choice(ident.net.ips(day))), rng))
                continue
            human = ident.human
            if human is None:
                continue
            if place == "home6":
                ip = self._v6_of_day(human, day)
            elif place == "home":
                ip = str(rng.choice(human.home.ips(day)))
            else:
                ip = str(rng.choice(human.office.ips(day)))
            self._force(day, self._human_session(ident, day, start, 1800, 8 + int(rng.integers(0, 10)), ip, rng))

    def _attack_ips(self, rng: np.random.Generator, count: int, ipv6: bool = False) -> list[str]:
        if ipv6:
            net = self.world.nets.v6(_V6_ATTACK_FIRST)
            return [net.host(int(rng.integers(1, 1 << 62))) for _ in range(count)]
        net = self.world.nets.v4(avoid_first=self.world.legit_first_v4)
        numbers = rng.choice(np.arange(2, 255), size=count, replace=False)
        return [net.host(int(n)) for n in numbers]

    def _incident(self, kind: str, day: int, rng: np.random.Generator, used: set[str]) -> None:
        world = self.world
        ds = _day_start(self.start, day)
        t0 = ds + int(rng.uniform(0.35, 23.2) * 3600)
        humans_iam = [i for i in world.identities if i.kind == "iam_user" and i.human is not None]
        sso_primary = [h.entities[0] for h in world.humans]
        ua = _UA_ATTACK[int(rng.integers(0, len(_UA_ATTACK)))]
        ipv6 = kind.endswith("_ipv6")
        kind = kind.removesuffix("_ipv6")
        console = False
        params: dict[str, dict] = {}
        gap = (2, 45)
        err_rate = 0.2
        if kind == "stolen_access_key":
            victim = self._pick(humans_iam, rng, used)
            ui = _ui_user(victim)
            recon = list(rng.choice(_RECON, int(rng.integers(6, 16))))
            phases = [["GetCallerIdentity", "ListBuckets", *recon, "ListSecrets", "GetSecretValue"]]
            what = f"IAM access key {victim.access_key} of {victim.name} used"
        elif kind == "session_replay":
            victim = self._pick(sso_primary, rng, used)
            human = victim.human
            assert human is not None
            legit_start = max(ds + 600, t0 - int(rng.integers(3600, 3 * 3600)))
            legit_ip = str(rng.choice(human.office.ips(day)))
            legit = self._human_session(victim, day, legit_start, 2400, 15, legit_ip, rng, console=True)
            self._force(day, legit)
            ui = legit[0].ui
            ua = _UA_BROWSER[(_UA_BROWSER.index(human.browser_ua) + 1) % len(_UA_BROWSER)]
            console = True
            recon = list(rng.choice(_RECON, int(rng.integers(5, 12))))
            phases = [[*recon, "ListSecrets", "GetSecretValue", "GetSecretValue"]]
            what = f"SSO console session of {human.name} (key {ui['accessKeyId']}) replayed"
            err_rate = 0.1
        elif kind == "instance_credential_exfiltration":
            victim = self._pick([i for i in world.identities if i.kind == "instance"], rng, used)
            k, ws, _ = self._instance_window(victim, t0)
            ui = _ui_role(victim, self._key(victim.arn, k), ws)
            recon = list(rng.choice(_RECON, int(rng.integers(3, 9))))
            phases = [
                ["GetCallerIdentity", "ListBuckets", "DescribeInstances", *recon, "ListSecrets", "GetSecretValue"]
            ]
            what = f"credentials of instance {victim.name} ({victim.role}) used outside AWS"
            err_rate = 0.3
        elif kind == "recon_burst":
            victim = self._pick(humans_iam + sso_primary, rng, used)
            if victim.kind == "iam_user":
                ui = _ui_user(victim)
            else:
                ui = _ui_role(victim, self._key(victim.arn, day, "stolen"), t0 - 900)
            phases = [["GetCallerIdentity", *rng.choice(_RECON, int(rng.integers(40, 110)))]]
            gap = (1, 3)
            err_rate = 0.4
            what = f"reconnaissance burst (List*/Describe*) with the credentials of {victim.name}"
        elif kind == "persistence":
            admins = [i for i in world.identities if i.kind == "sso" and "_AdministratorAccess_" in i.arn]
            victim = self._pick(admins + humans_iam, rng, used)
            if victim.kind == "iam_user":
                ui = _ui_user(victim)
            else:
                ui = _ui_role(victim, self._key(victim.arn, day, "stolen"), t0 - 900)
            backdoor = f"svc-{rng.choice(['backup', 'monitor', 'support', 'maint'])}-{self.names.hex(4, 'bd', day)}"
            policy = '{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"*","Resource":"*"}]}'
            params = {
                "CreateUser": {"userName": backdoor},
                "CreateLoginProfile": {"userName": backdoor, "passwordResetRequired": False},
                "CreateAccessKey": {"userName": backdoor},
                "AttachUserPolicy": {"userName": backdoor, "policyArn": "arn:aws:iam::aws:policy/AdministratorAccess"},
                "PutRolePolicy": {
                    "roleName": "app-server-role",
                    "policyName": "ops-maintenance",
                    "policyDocument": policy,
                },
                "ListAttachedUserPolicies": {"userName": backdoor},
            }
            phases = [
                ["GetCallerIdentity", "ListUsers", "ListRoles", "GetAccountAuthorizationDetails"],
                [
                    "CreateUser",
                    "CreateLoginProfile",
                    "CreateAccessKey",
                    "AttachUserPolicy",
                    "PutRolePolicy",
                    "ListAttachedUserPolicies",
                ],
            ]
            err_rate = 0.0
            what = f"persistence (backdoor user {backdoor} with AdministratorAccess) created by {victim.name}"
        elif kind == "cicd_role_abuse":
            victim = self._pick([i for i in world.identities if i.kind == "cicd"], rng, used)
            ui = _ui_role(victim, self._key(victim.arn, day, "abuse"), t0 - 60)
            phases = [
                [
                    "GetCallerIdentity",
                    "ListSecrets",
                    "GetSecretValue",
                    "GetSecretValue",
                    "GetSecretValue",
                    "DescribeInstances",
                    "ListBuckets",
                    "ListUsers",
                ]
            ]
            what = f"CI/CD deploy role session of {victim.account.name} assumed outside the runner network"
            err_rate = 0.15
        else:  # pragma: no cover - the table above is fixed
            raise ValueError(kind)
        self._warm_up(victim, rng)
        n_ips = len(phases) if kind == "persistence" else (2 if rng.random() < 0.3 else 1)
        ips = self._attack_ips(rng, n_ips, ipv6)
        if len(phases) < n_ips:
            half = len(phases[0]) // 2
            phases = [phases[0][:half], phases[0][half:]]
        when = t0
        for phase, ip in zip(phases, ips, strict=True):
            events = [_EV[str(name)] for name in phase]
            regions = [0 if _GLOBAL[e] else int(rng.integers(0, 3)) for e in events]
            errors = [bool(i > 0 and rng.random() < err_rate) for i in range(len(events))]
            session = _Session(
                account=victim.account,
                ui=ui,
                arn=victim.arn,
                ip=ip,
                ua=ua,
                start=when,
                end=when + 1500,
                events=events,
                regions=regions,
                errors=errors,
                gap=gap,
                console=console,
                params=params,
            )
            self._force(day, [session])
            description = f"{what} from {ip}, a network never used before by this or any identity"
            self.truth.append(_Truth("suspicious", day, victim.arn, ip, kind, description))
            when += int(gap[1] * len(events)) + int(rng.integers(60, 600))

    def _benign(self, window: list[int], rng: np.random.Generator) -> None:
        world = self.world
        nets = world.nets
        days = [int(d) for d in rng.choice(window, size=5, replace=len(window) < 5)]
        v4_humans = [h for h in world.humans if h.home6 is None]
        order = rng.permutation(len(v4_humans))
        # 1. and 2. the ISP gives a home a new address in the same /24 (one person's SSO, one IAM user)
        first = v4_humans[int(order[0])]
        iam_people = [h for h in v4_humans if h is not first and any(e.kind == "iam_user" for e in h.entities)]
        for n, human in enumerate([first, iam_people[int(rng.integers(0, len(iam_people)))]]):
            ident = human.entities[0] if n == 0 else next(e for e in human.entities if e.kind == "iam_user")
            day = days[n]
            self._warm_up(ident, rng, place="home")
            old = human.home.hosts
            human.home.hosts = [(ip, since, min(until, day)) for ip, since, until in old]
            new_ip = nets.hosts(human.home, 1, since=day)[0]
            self._benign_session(
                ident,
                day,
                new_ip,
                rng,
                "new_home_ip",
                f"{human.name}'s home connection got a new address {new_ip} inside the usual {human.home.network}",
            )
        # 3. the office adds a NAT address; two people use it on its first day
        office = world.humans[int(order[1])].office
        staff = [h for h in world.humans if h.office is office]
        day = days[2]
        new_ip = nets.hosts(office, 1, since=day)[0]
        for i in rng.choice(len(staff), size=min(2, len(staff)), replace=False):
            ident = staff[int(i)].entities[0]
            self._warm_up(ident, rng, place="office")
            self._benign_session(
                ident,
                day,
                new_ip,
                rng,
                "new_office_ip",
                f"new office NAT address {new_ip} inside the office network {office.network}",
            )
        # 4. a new IPv6 privacy address in a known /64
        v6_humans = [h for h in world.humans if h.home6 is not None]
        human = v6_humans[int(rng.integers(0, len(v6_humans)))]
        ident = human.entities[0]
        self._warm_up(ident, rng, place="home6")
        assert human.home6 is not None
        new_ip = human.home6.host(int(rng.integers(1, 1 << 62)) | (1 << 62))
        self._benign_session(
            ident,
            days[3],
            new_ip,
            rng,
            "new_ipv6_address",
            f"new IPv6 privacy address {new_ip} inside {human.name}'s home prefix {human.home6.network}",
        )
        # 5. a new CI runner inside the runner network
        ci = next(i for i in world.identities if i.kind == "cicd")
        self._warm_up(ci, rng)
        day = days[4]
        new_ip = nets.hosts(ci.net, 1, since=day)[0]
        start = _day_start(self.start, day) + int(rng.uniform(12, 20) * 3600)
        run = self._ci_run(ci, day, start, 15, new_ip, rng)
        self._force(day, run)
        self.truth.append(
            _Truth(
                "benign_novelty",
                day,
                ci.arn,
                new_ip,
                "new_ci_runner",
                f"new CI runner {new_ip} inside the runner network {ci.net.network}",
            )
        )

    def _benign_session(
        self, ident: _Identity, day: int, ip: str, rng: np.random.Generator, kind: str, description: str
    ) -> None:
        start = _day_start(self.start, day) + int(rng.uniform(1, 21) * 3600)
        self._force(
            day, self._human_session(ident, day, start, 1800, 10 + int(rng.integers(0, 10)), ip, rng, console=False)
        )
        self.truth.append(_Truth("benign_novelty", day, ident.arn, ip, kind, description))


# --------------------------------------------------------------------------------------------
# Writing: events to ~5-minute log files, then hourly digests


def _store(path: Path, payload: bytes) -> str:
    """Gzip (mtime 0, so bytes are reproducible) and write one object; return the SHA-256 CloudTrail records."""
    digest = hashlib.sha256(payload).hexdigest()
    path.write_bytes(gzip.compress(payload, compresslevel=_GZIP_LEVEL, mtime=0))
    return digest


def _stamp(epoch: int, fmt: str) -> str:
    return dt.datetime.fromtimestamp(epoch, dt.UTC).strftime(fmt)


@dataclass
class _Batch:
    """Serialised records bound for one log file, with their time range."""

    records: list[str]
    oldest: str
    newest: str

    def then(self, later: "_Batch") -> "_Batch":
        return _Batch(self.records + later.records, min(self.oldest, later.oldest), max(self.newest, later.newest))


@dataclass
class _LogFile:
    account: int
    region: int
    delivered: int
    key: str
    digest: "Future[str] | str"
    oldest: str
    newest: str


class _Emitter:
    """Turns sessions into records, groups them by delivery file, and writes files in worker threads."""

    def __init__(
        self,
        out: Path,
        world: _World,
        names: _Names,
        pool: ThreadPoolExecutor,
        workers: int,
        watch: dict[tuple[int, str, str], set[str]],
    ) -> None:
        self.out = out
        self.world = world
        self.names = names
        self.pool = pool
        self.workers = workers
        self.watch = watch
        self.inflight: list[Future[str]] = []
        self.folders: set[Path] = set()
        self.logs: list[_LogFile] = []
        self.digest_files = 0
        self.stash: dict[tuple[int, int, int], _Batch] = {}
        self.events = 0
        self.duplicates = 0
        self.service_events = 0
        self.pairs: set[tuple[int, str, str]] = set()
        self.arns: set[str] = set()
        self.travel: set[tuple[int, str, str]] = set()

    def _submit(self, key: str, payload: bytes) -> "Future[str]":
        path = self.out / key
        if path.parent not in self.folders:
            path.parent.mkdir(parents=True, exist_ok=True)
            self.folders.add(path.parent)
        future = self.pool.submit(_store, path, payload)
        self.inflight.append(future)
        if len(self.inflight) > 3 * self.workers:
            for done in self.inflight[: self.workers]:
                done.result()
            del self.inflight[: self.workers]
        return future

    def finish(self) -> None:
        for future in self.inflight:
            future.result()
        self.inflight.clear()

    @staticmethod
    def _arrays(s: _Session, rng: np.random.Generator) -> tuple[np.ndarray, ...]:
        if s.events is not None:
            n = len(s.events)
            gaps = rng.integers(s.gap[0], s.gap[1] + 1, n)
            gaps[0] = 0
            t = np.minimum(s.start + np.cumsum(gaps), max(s.start, s.end - 1))
            assert s.regions is not None and s.errors is not None
            return (
                t,
                np.array(s.events, dtype=np.int64),
                np.array(s.regions, dtype=np.int64),
                np.array(s.errors, dtype=bool),
            )
        n = s.n
        if n <= 0:
            empty = np.zeros(0, dtype=np.int64)
            return empty, empty, empty, np.zeros(0, dtype=bool)
        t = np.sort(rng.integers(s.start, max(s.start + 1, s.end), n))
        idx, cum = _CATALOGS[s.catalog]
        ev = idx[np.minimum(np.searchsorted(cum, rng.random(n), side="right"), len(idx) - 1)]
        assert s.region_w is not None
        rcum = np.cumsum(s.region_w / s.region_w.sum())
        reg = np.minimum(np.searchsorted(rcum, rng.random(n), side="right"), len(REGIONS) - 1)
        reg[_GLOBAL[ev]] = 0
        err = rng.random(n) < s.err_rate if s.err_rate else np.zeros(n, dtype=bool)
        return t, ev, reg, err

    def _template(self, s: _Session, ev: int, reg: int, err: bool) -> tuple[str, str, str, str]:
        """The record as JSON, cut where eventTime, requestID and eventID go.

        Serialising each distinct record shape once and pasting the three varying values in is
        byte-identical to ``json.dumps`` of the full dict and several times faster.
        """
        source, name, read_only, params, _ = _EVENTS[ev]
        region = REGIONS[reg]
        account = s.account.id
        rec: dict[str, Any] = {
            "eventVersion": _EVENT_VERSION,
            "userIdentity": s.ui,
            "eventTime": _MARK,
            "eventSource": source,
            "eventName": name,
            "awsRegion": region,
            "sourceIPAddress": s.ip,
            "userAgent": s.ua,
        }
        if err:
            rec["errorCode"], rec["errorMessage"] = _error(source, name, s.arn, region, account)
        if s.params and name in s.params:
            params = s.params[name]
        rec["requestParameters"] = params
        rec["responseElements"] = None
        rec["requestID"] = _MARK
        rec["eventID"] = _MARK
        rec["readOnly"] = read_only
        rec["eventType"] = "AwsApiCall"
        rec["managementEvent"] = True
        rec["recipientAccountId"] = account
        if s.vpce:
            rec["vpcEndpointId"] = s.vpce
            rec["vpcEndpointAccountId"] = account
        rec["eventCategory"] = "Management"
        if s.from_ip:
            service = source.split(".", 1)[0]
            host = f"{service}.amazonaws.com" if _GLOBAL[ev] else f"{service}.{region}.amazonaws.com"
            rec["tlsDetails"] = {
                "tlsVersion": "TLSv1.3",
                "cipherSuite": "TLS_AES_128_GCM_SHA256",
                "clientProvidedHostHeader": host,
            }
        if s.console:
            rec["sessionCredentialFromConsole"] = "true"
        head, after_time, after_request, tail = json.dumps(rec, separators=(",", ":")).split(_MARK)
        return head, after_time, after_request, tail

    def day(self, day: int, sessions: list[_Session], rng: np.random.Generator, day_end: int, final: bool) -> None:
        """Write the files delivered on ``day``; files delivered after midnight wait for the next day."""
        parts: list[tuple[np.ndarray, ...]] = []
        sids: list[np.ndarray] = []
        for sid, s in enumerate(sessions):
            arrays = self._arrays(s, rng)
            if len(arrays[0]) == 0:
                continue
            parts.append(arrays)
            sids.append(np.full(len(arrays[0]), sid, dtype=np.int64))
            if s.arn and s.from_ip:
                self.pairs.add((day, s.arn, s.ip))
                self.arns.add(s.arn)
                if s.travel:
                    self.travel.add((day, s.arn, s.ip))
                names = self.watch.get((day, s.arn, s.ip))
                if names is not None:
                    names.update(_EVENTS[e][1] for e in set(arrays[1].tolist()))
        if not parts:
            self._flush(self.stash)
            self.stash = {}
            return
        t = np.concatenate([p[0] for p in parts])
        ev = np.concatenate([p[1] for p in parts])
        reg = np.concatenate([p[2] for p in parts])
        err = np.concatenate([p[3] for p in parts])
        sid = np.concatenate(sids)
        n = len(t)
        dup = rng.random(n) < _DUPLICATE_RATE
        late = rng.random(n) < _LATE_RATE
        acct = np.array([s.account.index for s in sessions], dtype=np.int64)[sid]
        service = np.array([not s.from_ip for s in sessions], dtype=bool)[sid]
        self.service_events += int(service.sum() + (service & dup).sum())
        offset = self.world.offsets[acct, reg]
        delivered = offset + ((t - offset) // _SLOT + 1 + late) * _SLOT
        group = (acct * len(REGIONS) + reg) * (1 << 36) + delivered
        order = np.lexsort((t, group))
        group = group[order]
        bounds = np.concatenate(([0], np.flatnonzero(np.diff(group)) + 1, [n])).tolist()
        code = ((((sid * len(_EVENTS) + ev) * len(REGIONS) + reg) * 2) + err)[order].tolist()
        dups = dup[order].tolist()
        times = [x + "Z" for x in np.datetime_as_string(t[order].astype("datetime64[s]"), unit="s").tolist()]
        ids = _uuids(rng, 2 * n)
        group_l = group[bounds[:-1]].tolist()
        templates: dict[int, tuple[str, str, str, str]] = {}
        previous, self.stash = self.stash, {}
        for g, gkey in enumerate(group_l):
            records: list[str] = []
            repeated: list[str] = []
            lo, hi = bounds[g], bounds[g + 1]
            for j in range(lo, hi):
                c = code[j]
                template = templates.get(c)
                if template is None:
                    rest, e = divmod(c, 2)
                    rest, r = divmod(rest, len(REGIONS))
                    s, v = divmod(rest, len(_EVENTS))
                    template = templates[c] = self._template(sessions[s], v, r, bool(e))
                base = 72 * j
                record = (
                    f"{template[0]}{times[j]}{template[1]}{ids[base : base + 36]}{template[2]}"
                    f"{ids[base + 36 : base + 72]}{template[3]}"
                )
                records.append(record)
                if dups[j]:
                    repeated.append(record)
            self.duplicates += len(repeated)
            file_key = (gkey >> 36) // len(REGIONS), (gkey >> 36) % len(REGIONS), gkey & ((1 << 36) - 1)
            batch = _Batch(records + repeated, times[lo], times[hi - 1])
            if file_key[2] >= day_end and not final:
                self.stash[file_key] = batch
                continue
            earlier = previous.pop(file_key, None)
            self._write_log(file_key, earlier.then(batch) if earlier else batch)
        self._flush(previous)
        if final:
            self._flush(self.stash)
            self.stash = {}

    def _flush(self, stash: "dict[tuple[int, int, int], _Batch]") -> None:
        for file_key in sorted(stash):
            self._write_log(file_key, stash[file_key])

    def _write_log(self, file_key: tuple[int, int, int], batch: "_Batch") -> None:
        a, r, delivered = file_key
        account = self.world.accounts[a]
        region = REGIONS[r]
        unique = self.names.chars(_ALNUM, 16, "log", account.id, region, delivered)
        key = (
            f"{account.root}CloudTrail/{region}/{_stamp(delivered, '%Y/%m/%d')}/"
            f"{account.id}_CloudTrail_{region}_{_stamp(delivered, '%Y%m%dT%H%MZ')}_{unique}.json.gz"
        )
        payload = ('{"Records":[' + ",".join(batch.records) + "]}").encode()
        self.logs.append(_LogFile(a, r, delivered, key, self._submit(key, payload), batch.oldest, batch.newest))
        self.events += len(batch.records)

    def digests(self, start: int, days: int) -> None:
        """One digest per account, region and hour (also when no log file was delivered), chained."""
        by_trail: dict[tuple[int, int], list[_LogFile]] = {}
        for log in self.logs:
            by_trail.setdefault((log.account, log.region), []).append(log)
        for a, account in enumerate(self.world.accounts):
            for r, region in enumerate(REGIONS):
                logs = sorted(by_trail.get((a, r), []), key=lambda f: f.delivered)
                last = logs[-1].delivered if logs else start
                offset = int(self.world.digest_offsets[a, r])
                fingerprint = self.names.hex(32, "fingerprint", region)
                previous: tuple[str, str, str] | None = None
                lo, j, i = start, 1, 0
                while True:
                    hi = start + j * 3600 + offset
                    files = []
                    while i < len(logs) and logs[i].delivered < hi:
                        files.append(logs[i])
                        i += 1
                    key = (
                        f"{account.root}CloudTrail-Digest/{region}/{_stamp(hi, '%Y/%m/%d')}/"
                        f"{account.id}_CloudTrail-Digest_{region}_{account.trail}_{HOME_REGION}_"
                        f"{_stamp(hi, '%Y%m%dT%H%M%SZ')}.json.gz"
                    )
                    doc = {
                        "awsAccountId": account.id,
                        "digestStartTime": _iso(lo),
                        "digestEndTime": _iso(hi),
                        "digestS3Bucket": BUCKET,
                        "digestS3Object": key,
                        "digestPublicKeyFingerprint": fingerprint,
                        "digestSignatureAlgorithm": "SHA256withRSA",
                        "newestEventTime": max(f.newest for f in files) if files else None,
                        "oldestEventTime": min(f.oldest for f in files) if files else None,
                        "previousDigestS3Bucket": BUCKET if previous else None,
                        "previousDigestS3Object": previous[0] if previous else None,
                        "previousDigestHashValue": previous[1] if previous else None,
                        "previousDigestHashAlgorithm": "SHA-256" if previous else None,
                        "previousDigestSignature": previous[2] if previous else None,
                        "logFiles": [
                            {
                                "s3Bucket": BUCKET,
                                "s3Object": f.key,
                                "hashValue": _result(f.digest),
                                "hashAlgorithm": "SHA-256",
                                "newestEventTime": f.newest,
                                "oldestEventTime": f.oldest,
                            }
                            for f in files
                        ],
                    }
                    payload = json.dumps(doc, separators=(",", ":")).encode()
                    self._submit(key, payload)
                    self.digest_files += 1
                    previous = (key, hashlib.sha256(payload).hexdigest(), self.names.hex(512, "signature", key))
                    lo = hi
                    j += 1
                    if j > days * 24 and lo > last:
                        break


def _result(value: "Future[str] | str") -> str:
    return value.result() if isinstance(value, Future) else value


# --------------------------------------------------------------------------------------------
# Entry point


def _prepare(out: Path) -> None:
    logs = out / "AWSLogs"
    if logs.exists() and any(logs.iterdir()):
        if not (out / GROUND_TRUTH).exists():
            raise FileExistsError(f"{logs} holds logs that this generator did not write; choose an empty folder")
        shutil.rmtree(logs)
    out.mkdir(parents=True, exist_ok=True)


def generate_sample(out_dir: Path, start: dt.date, days: int = 21, seed: int = 7, scale: float = 1.0) -> SampleSummary:
    """Write a synthetic CloudTrail bucket and its ``ground_truth.json`` under ``out_dir``.

    Same arguments, same bytes. A previous sample in ``out_dir`` (recognised by its
    ``ground_truth.json``) is replaced; any other ``AWSLogs`` folder is refused, never deleted.
    """
    if days < 1:
        raise ValueError("days must be at least 1")
    if not scale > 0:
        raise ValueError("scale must be positive")
    if isinstance(start, dt.datetime):  # days are UTC calendar days, whatever the time of day given
        start = start.date()
    began = dt.datetime.now(dt.UTC)
    out = Path(out_dir)
    _prepare(out)
    names = _Names(seed)
    world = _build_world(seed, names)
    generator = _Generator(world, names, start, days, seed, scale)
    generator.plan()
    watch: dict[tuple[int, str, str], set[str]] = {(t.day, t.arn, t.ip): set() for t in generator.truth}
    workers = min(4, (os.cpu_count() or 1) + 2)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        emitter = _Emitter(out, world, names, pool, workers, watch)
        for day in range(days):
            rng = _rng(seed, 3, day)
            sessions = generator.day_sessions(day, rng)
            emitter.day(day, sessions, rng, _day_start(start, day + 1), final=day == days - 1)
        emitter.digests(_day_start(start, 0), days)
        emitter.finish()
    missing = [t for t in generator.truth if (t.day, t.arn, t.ip) not in emitter.pairs]
    if missing:  # pragma: no cover - an internal invariant of the plan
        raise RuntimeError(f"injected activity missing from the logs: {missing}")

    def entries(label: str) -> list[dict]:
        rows = {}
        for t in generator.truth:
            if t.label == label:
                rows.setdefault((t.day, t.arn, t.ip), t)
        return [_entry(start, t.day, t.arn, t.ip, t.kind, t.description, watch[key]) for key, t in sorted(rows.items())]

    travel = [
        _entry(start, day, arn, ip, "travel", "a real person working from a hotel or airport network", set())
        for day, arn, ip in sorted(emitter.travel)
    ]
    suspicious = entries("suspicious")
    benign = entries("benign_novelty")
    truth = {
        "seed": seed,
        "start": start.isoformat(),
        "days": days,
        "scale": scale,
        "accounts": [a.id for a in world.accounts],
        "account_names": {a.id: a.name for a in world.accounts},
        "regions": list(REGIONS),
        "org_id": world.org_id,
        "org_accounts": [a.id for a in world.accounts if a.org_id],
        "bucket": BUCKET,
        "first_incident_day": (start + dt.timedelta(days=generator.first_incident_day)).isoformat(),
        "suspicious": suspicious,
        "benign_novelties": benign,
        "travel": travel,
    }
    truth_path = out / GROUND_TRUTH
    truth_path.write_text(json.dumps(truth, indent=2) + "\n")
    return SampleSummary(
        out_dir=out,
        start=start,
        days=days,
        seed=seed,
        scale=scale,
        log_files=len(emitter.logs),
        digest_files=emitter.digest_files,
        events=emitter.events,
        duplicates=emitter.duplicates,
        service_events=emitter.service_events,
        identities=len(emitter.arns),
        accounts=tuple(a.id for a in world.accounts),
        regions=REGIONS,
        org_id=world.org_id,
        suspicious=len(suspicious),
        benign_novelties=len(benign),
        ground_truth=truth_path,
        seconds=(dt.datetime.now(dt.UTC) - began).total_seconds(),
    )


def _entry(start: dt.date, day: int, arn: str, ip: str, kind: str, description: str, events: set[str]) -> dict:
    return {
        "day": (start + dt.timedelta(days=day)).isoformat(),
        "entity": arn,
        "source_ip": ip,
        "kind": kind,
        "description": description,
        "event_names": sorted(events),
    }
