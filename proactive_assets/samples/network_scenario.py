"""A realistic Security Lake network scenario: instances with stable destinations, two attacks.

One VPC (10.20.0.0/16) of an account in us-east-1, written as Security Lake source version 2.0
(VPC Flow and Route 53, OCSF 1.1.0) under the lake layout, with a ``ground_truth.json``:

* **web** servers: requests in from the load balancer's nodes; out to the database and cache,
  S3 and STS endpoints (addresses drawn each day from AWS's S3 and EC2 ranges: they change all
  the time) and a partner's payment API (two fixed addresses);
* **workers**: S3, SQS, the database and two partner APIs;
* **build** hosts: package mirrors (PyPI on Fastly, npm on Cloudflare, GitHub), S3;
* a **bastion**: SSH in from the office, SSH out to a dozen internal hosts a day (lateral, and benign);
* churn: every day one web server and one worker are replaced by new instances (autoscaling),
  flows run in both directions (a reply is an inbound record of the same pair), some are blocked,
  and the package mirror moves to a new /24 of its provider once (every build host at once).

Attacks, from the first test day: a worker starts talking to a new host on the internet (a
command-and-control server at a hosting provider, found through DNS), and a web server starts
scanning internal addresses (SSH, SMB, RDP; mostly blocked). ``ground_truth.json`` lists every
attack pair and benign novelty by day and category.
"""

import hashlib
import ipaddress
import json
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from proactive_assets.core.sources.ocsf import ROUTE53, VPC_FLOW
from proactive_assets.core.sources.security_lake import security_lake_key

ACCOUNT = "111122223333"
REGION = "us-east-1"
VPC = "vpc-0a1b2c3d4e5f60718"
#: AWS-owned prefixes (AWS's ip-ranges.json): S3 in us-east-1, and EC2 ranges where STS/SQS endpoints answer.
AWS_S3 = ("52.216.0.0/15", "54.231.0.0/16", "3.5.0.0/19")
AWS_ENDPOINTS = ("3.80.0.0/12", "44.192.0.0/11", "52.0.0.0/15")
#: Package mirrors: PyPI on Fastly, npm on Cloudflare, GitHub; the later PyPI /24 is where it moves.
PYPI = ("151.101.0.0/24", "151.101.64.0/24")
NPM = ("104.16.0.0/24",)
GITHUB = ("140.82.112.0/24",)
#: Partners' APIs and the office: fixed addresses outside any cloud.
PARTNERS = {"payments": ("62.4.17.10", "62.4.17.11"), "shipping": ("77.66.5.20",), "tax": ("193.0.14.129",)}
OFFICE = ("81.2.69.142", "81.2.69.160")
#: The attacker's host (a hosting provider's range) and the scanned ports.
C2 = "159.65.120.44"
SCAN_PORTS = (22, 445, 3389)
INTERNAL = {"db": ("10.20.5.10", 5432), "cache": ("10.20.5.20", 6379), "alb": ("10.20.0.", 443)}
SCHEMA_VERSION = "2.0"
ATTACK_NEW_HOST, ATTACK_SCAN = "new_internet_host", "internal_scan"


@dataclass
class Instance:
    id: str
    role: str
    ip: str
    eni: str
    since: int = 0  # first day it runs
    until: int = 10_000  # first day it no longer runs


@dataclass
class Day:
    """One day's rows, as OCSF dicts, and the truth about its pairs."""

    flows: list[dict] = field(default_factory=list)
    queries: list[dict] = field(default_factory=list)


def _hosts(prefix: str, rng: np.random.Generator, n: int) -> list[str]:
    network = ipaddress.ip_network(prefix)
    picks = rng.integers(1, network.num_addresses - 1, n)
    return [str(network.network_address + int(p)) for p in picks]


class NetworkScenario:
    """The organisation's instances and the pools their destinations come from (fixed by the seed)."""

    def __init__(self, seed: int, days: int, history: int) -> None:
        self.rng = np.random.default_rng(seed)
        self.days, self.history = days, history
        self.instances: list[Instance] = []
        self.s3 = [ip for prefix in AWS_S3 for ip in _hosts(prefix, self.rng, 120)]
        self.endpoints = [ip for prefix in AWS_ENDPOINTS for ip in _hosts(prefix, self.rng, 60)]
        self.pypi = [_hosts(prefix, self.rng, 6) for prefix in PYPI]
        self.npm = _hosts(NPM[0], self.rng, 6)
        self.github = _hosts(GITHUB[0], self.rng, 4)
        self.internal_hosts = [f"10.20.{a}.{b}" for a, b in self.rng.integers(1, 250, (40, 2))]
        self.mirror_move = history + max(1, (days - history) // 2)  # the day PyPI's /24 changes
        for role, count in (("web", 8), ("worker", 8), ("build", 4), ("bastion", 1)):
            for _ in range(count):
                self._launch(role, 0)
        # The attacked instances are long-lived ones (the first web server and worker); others churn.
        self.scanner = next(i for i in self.instances if i.role == "web")
        self.beacon = next(i for i in self.instances if i.role == "worker")
        for day in range(1, days):  # autoscaling: one web server and one worker replaced a day
            for role in ("web", "worker"):
                old = [
                    i
                    for i in self.instances
                    if i.role == role and i.since <= day < i.until and i not in (self.scanner, self.beacon)
                ]
                old[int(self.rng.integers(0, len(old)))].until = day
                self._launch(role, day)
        first_test = history
        self.attack_days = {ATTACK_NEW_HOST: first_test, ATTACK_SCAN: first_test + 1}

    def _launch(self, role: str, day: int) -> Instance:
        n = len(self.instances)
        digest = hashlib.sha256(f"{role}/{n}/{day}".encode()).hexdigest()
        subnet = {"web": 1, "worker": 2, "build": 3, "bastion": 0}[role]
        instance = Instance(f"i-{digest[:17]}", role, f"10.20.{subnet}.{10 + n % 240}", f"eni-{digest[17:34]}", day)
        self.instances.append(instance)
        return instance

    def running(self, day: int) -> list[Instance]:
        return [i for i in self.instances if i.since <= day < i.until]

    def destinations(self, instance: Instance, day: int) -> list[tuple[str, int, str | None, bool]]:
        """(remote address, service port, DNS name or None, instance starts it) the instance talks to today."""
        rng = self.rng
        out: list[tuple[str, int, str | None, bool]] = []

        def some(pool: list[str], k: int) -> list[str]:
            return [pool[int(j)] for j in rng.choice(len(pool), size=min(k, len(pool)), replace=False)]

        s3 = [(ip, 443, "s3.us-east-1.amazonaws.com.", True) for ip in some(self.s3, int(rng.integers(2, 6)))]
        if instance.role == "web":
            out += [(INTERNAL["db"][0], 5432, None, True), (INTERNAL["cache"][0], 6379, None, True)]
            out += [(f"{INTERNAL['alb'][0]}{n}", 443, None, False) for n in (11, 12, 13)]
            out += s3[:2] + [(ip, 443, "sts.amazonaws.com.", True) for ip in some(self.endpoints, 1)]
            out += [(ip, 443, "api.payments.example.", True) for ip in PARTNERS["payments"]]
        elif instance.role == "worker":
            out += [(INTERNAL["db"][0], 5432, None, True), *s3]
            out += [(ip, 443, "sqs.us-east-1.amazonaws.com.", True) for ip in some(self.endpoints, 2)]
            out += [(PARTNERS["shipping"][0], 443, "api.shipping.example.", True)]
            out += [(PARTNERS["tax"][0], 443, "api.tax.example.", True)]
        elif instance.role == "build":
            pypi = self.pypi[1 if day >= self.mirror_move else 0]
            out += [(ip, 443, "pypi.org.", True) for ip in some(pypi, 2)]
            out += [(ip, 443, "registry.npmjs.org.", True) for ip in some(self.npm, 2)]
            out += [(ip, 443, "github.com.", True) for ip in some(self.github, 1)] + s3[:2]
        else:  # bastion: SSH in from the office, out to internal hosts
            out += [(ip, 22, None, False) for ip in OFFICE]
            out += [(ip, 22, None, True) for ip in some(self.internal_hosts, 12)]
        return out

    def attacks(self, instance: Instance, day: int) -> list[tuple[str, int, str | None, str]]:
        """(remote, port, DNS name, attack class) of the attacks this instance makes today."""
        out: list[tuple[str, int, str | None, str]] = []
        if instance is self.beacon and day >= self.attack_days[ATTACK_NEW_HOST]:
            out.append((C2, 443, "update-check.cdn-metrics.example.", ATTACK_NEW_HOST))
        if instance is self.scanner and day >= self.attack_days[ATTACK_SCAN]:
            for a, b in self.rng.integers(1, 255, (60, 2)):
                out.append((f"10.20.{a}.{b}", int(self.rng.choice(SCAN_PORTS)), None, ATTACK_SCAN))
        return out


def _flow(instance: Instance, remote: str, port: int, outbound: bool, time: int, blocked: bool) -> dict:
    """One VPC Flow record on the instance's ENI, in Security Lake 2.0's shape."""
    own = {
        "instance_uid": instance.id,
        "interface_uid": instance.eni,
        "ip": instance.ip,
        "port": 40_000 + time % 20_000,
        "vpc_uid": VPC,
        "subnet_uid": "subnet-0" + instance.eni[4:20],
    }
    other = {"ip": remote, "port": port}
    src, dst = (own, other) if outbound else (other, own)
    if not outbound:  # a reply or an inbound request: the service port is on the instance or the remote
        src["port"], dst["port"] = port, own["port"]
    return {
        "class_uid": 4001,
        "activity_id": 5 if blocked else 6,
        "activity_name": "Refuse" if blocked else "Traffic",
        "time": time,
        "cloud": {"provider": "AWS", "region": REGION, "account": {"uid": ACCOUNT}},
        "src_endpoint": src,
        "dst_endpoint": dst,
        "connection_info": {
            "direction": "Outbound" if outbound else "Inbound",
            "direction_id": 2 if outbound else 1,
            "protocol_num": 6,
            "boundary_id": 99,
        },
        "disposition": "Blocked" if blocked else "Allowed",
        "disposition_id": 2 if blocked else 1,
        "traffic": {"bytes": 40 + time % 90_000, "packets": 1 + time % 90},
        "status_code": "OK",
        "metadata": {"version": "1.1.0", "product": {"name": "Amazon VPC", "vendor_name": "AWS"}},
    }


def _query(instance: Instance, name: str, address: str, time: int) -> dict:
    return {
        "class_uid": 4003,
        "activity_id": 6,
        "activity_name": "Traffic",
        "time": time,
        "cloud": {"provider": "AWS", "region": REGION, "account": {"uid": ACCOUNT}},
        "src_endpoint": {"instance_uid": instance.id, "ip": instance.ip, "port": 53_000, "vpc_uid": VPC},
        "query": {"hostname": name, "type": "A", "class": "IN"},
        "answers": [{"type": "A", "rdata": address, "class": "IN"}],
        "rcode": "NoError",
        "metadata": {"version": "1.1.0", "product": {"name": "Route 53", "vendor_name": "AWS"}},
    }


@dataclass
class NetworkSample:
    lake: Path
    ground_truth: Path
    instances: int
    flows: int


def generate_network_sample(
    out_dir: str | Path, start: date, days: int = 21, seed: int = 3, history: int = 14
) -> NetworkSample:
    """Write the scenario's Security Lake objects (one VPC Flow and one Route 53 object a day) and
    ``ground_truth.json`` under ``out_dir``; reproducible from ``seed``."""
    if days <= history:
        raise ValueError(f"days ({days}) must exceed the history ({history}) for test days to exist")
    out = Path(out_dir)
    scenario = NetworkScenario(seed, days, history)
    truth: dict[str, list] = {"attacks": [], "benign_novelties": []}
    seen: set[tuple[str, str]] = set()
    total = 0
    for day in range(days):
        when = start + timedelta(days=day)
        midnight = int(datetime(when.year, when.month, when.day, tzinfo=UTC).timestamp() * 1000)
        rows = Day()
        for instance in scenario.running(day):
            for remote, port, name, starts in scenario.destinations(instance, day):
                for _ in range(int(scenario.rng.integers(1, 6))):
                    t = midnight + int(scenario.rng.integers(0, 86_400_000))
                    rows.flows.append(_flow(instance, remote, port, starts, t, False))
                    rows.flows.append(_flow(instance, remote, port, not starts, t + 20, False))  # the other way
                if name:
                    rows.queries.append(
                        _query(instance, name, remote, midnight + int(scenario.rng.integers(0, 86_400_000)))
                    )
                key = (instance.id, remote)
                if key not in seen and day >= history:
                    category = (
                        "new_instance" if instance.since == day else "mirror_moved" if name == "pypi.org." else None
                    )
                    if category:
                        truth["benign_novelties"].append(
                            {"day": when.isoformat(), "entity": instance.id, "source_ip": remote, "category": category}
                        )
                seen.add(key)
            for remote, port, name, attack in scenario.attacks(instance, day):
                t = midnight + int(scenario.rng.integers(0, 86_400_000))
                blocked = attack == ATTACK_SCAN and scenario.rng.random() < 0.8
                rows.flows.append(_flow(instance, remote, port, True, t, blocked))
                if name:
                    rows.queries.append(_query(instance, name, remote, t - 50))
                truth["attacks"].append(
                    {"day": when.isoformat(), "entity": instance.id, "source_ip": remote, "category": attack}
                )
        total += len(rows.flows)
        for source, records in ((VPC_FLOW, rows.flows), (ROUTE53, rows.queries)):
            digest = hashlib.sha256(f"{seed}/{source}/{when}".encode()).hexdigest()[:32]
            key = security_lake_key(source, SCHEMA_VERSION, REGION, ACCOUNT, when, f"{digest}.gz.parquet")
            path = out / "lake" / key
            path.parent.mkdir(parents=True, exist_ok=True)
            records.sort(key=lambda r: r["time"])
            pq.write_table(pa.Table.from_pylist(records), path, compression="gzip")
    truth["test_days"] = [(start + timedelta(days=d)).isoformat() for d in range(history, days)]
    truth["scenario"] = {"seed": seed, "days": days, "history": history, "start": start.isoformat()}
    path = out / "ground_truth.json"
    path.write_text(json.dumps(truth, indent=1) + "\n")
    return NetworkSample(out / "lake", path, len(scenario.instances), total)
