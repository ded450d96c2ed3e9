"""The simulated company: three accounts, their networks and the people and machines that call AWS.

Drawn once per seed from random stream 1, before any day is generated.
"""

import ipaddress
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from proactive_assets.samples.cloudtrail.catalog import (
    EVENT_INDEX,
    EVENTS,
    UA_BACKUP,
    UA_BROWSER,
    UA_CI,
    UA_CLI,
    UA_INSTANCE,
    UA_LAMBDA,
)
from proactive_assets.samples.cloudtrail.seeded import BASE32, LOWER_ALNUM, HashedNames, random_stream

# First octets for "somebody's public network" (homes, offices, carriers, hotels, attackers):
# global unicast, none of the cloud blocks (the AWS ones are used below for EC2 and Lambda),
# none of the reserved, private, shared, test or multicast ranges, no well-known resolver
# blocks, and none of the legacy /8s held by government or single companies.
_CLOUD_FIRST = (3, 13, 18, 44, 52, 54)
_LEGACY_FIRST = {6, 7, 11, 12, 15, 16, 17, 19, 21, 22, 25, 26, 28, 29, 30, 33, 48, 51, 53, 55, 56, 57, 214, 215}
_EXCLUDED_FIRST = {0, 1, 8, 9, 10, 20, 34, 35, 40, 100, 127, 169, 172, 192, 198, 203, *_CLOUD_FIRST, *_LEGACY_FIRST}
_PUBLIC_FIRST = tuple(o for o in range(2, 224) if o not in _EXCLUDED_FIRST)
_V6_FIRST = (0x2A01, 0x2A02, 0x2A04, 0x2A0A, 0x2600, 0x2601, 0x2603, 0x2605, 0x2804, 0x2405, 0x2409, 0x2A00)


@dataclass
class Account:
    """One AWS account and where its trail delivers (under the organisation's folder for an org trail)."""

    name: str
    id: str
    org_id: str | None
    trail: str
    index: int

    @property
    def root(self) -> str:
        """The account's key prefix in the bucket."""
        return f"AWSLogs/{self.org_id}/{self.id}/" if self.org_id else f"AWSLogs/{self.id}/"


@dataclass
class Network:
    """A /24 (or IPv6 /64) with the addresses in use, each valid on days [since, until)."""

    network: ipaddress.IPv4Network | ipaddress.IPv6Network
    hosts: list[tuple[str, int, int]] = field(default_factory=list)

    def ips(self, day: int) -> list[str]:
        """The addresses in use on ``day``."""
        return [ip for ip, since, until in self.hosts if since <= day < until]

    def host(self, number: int) -> str:
        """The address ``number`` places into the network."""
        return str(self.network.network_address + number)


@dataclass
class Identity:
    """One caller's credentials: an IAM user, or a role assumed by a person, machine or service."""

    kind: str  # iam_user | sso | instance | cicd | lambda | service_role
    account: Account
    arn: str
    name: str  # IAM user name or role session name
    principal: str  # AIDA... (user) or AROA... (role)
    catalog: str
    region_w: np.ndarray
    role: str = ""
    role_path: str = "/"
    access_key: str = ""
    human: "Human | None" = None
    net: Network | None = None
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
class Human:
    """A person: their networks, habits and the identities they use (``weights``: cumulative odds)."""

    name: str
    tz: int
    office: Network
    home: Network
    home6: Network | None
    mobile: Network | None
    p_office: float
    intensity: float
    region_w: np.ndarray
    cli_ua: str
    browser_ua: str
    entities: list[Identity] = field(default_factory=list)
    weights: np.ndarray = field(default_factory=lambda: np.ones(1))


@dataclass
class World:
    """Everything drawn once per seed; ``nets`` keeps drawing new networks for the plan."""

    accounts: list[Account]
    org_id: str
    humans: list[Human]
    identities: list[Identity]
    travel: list[Network]
    offsets: np.ndarray  # delivery offset per (account, region), seconds
    digest_offsets: np.ndarray
    legit_first_v4: set[int]
    nets: "NetworkFactory"


class NetworkFactory:
    """Draws public networks from the seeded generator, never two in the same /16 (or IPv6 /32)."""

    def __init__(self, rng: np.random.Generator) -> None:
        self.rng = rng
        self.used16: set[tuple[int, int]] = set()
        self.used32: set[tuple[int, int]] = set()

    def v4(self, firsts: tuple[int, ...] = _PUBLIC_FIRST, avoid_first: set[int] | None = None) -> Network:
        while True:
            first = int(self.rng.choice(firsts))
            second, third = (int(x) for x in self.rng.integers(0, 256, 2))
            if (avoid_first and first in avoid_first) or (first, second) in self.used16:
                continue
            net = ipaddress.IPv4Network(f"{first}.{second}.{third}.0/24")
            if not net.is_global:
                continue
            self.used16.add((first, second))
            return Network(net)

    def v6(self, firsts: tuple[int, ...] = _V6_FIRST) -> Network:
        while True:
            words = [int(self.rng.choice(firsts)), *(int(x) for x in self.rng.integers(0, 0x10000, 3))]
            if (words[0], words[1]) in self.used32 or (words[0] == 0x2001 and words[1] < 0x1000):
                continue
            net = ipaddress.IPv6Network(("{:x}:{:x}:{:x}:{:x}::".format(*words), 64))
            if not net.is_global:
                continue
            self.used32.add((words[0], words[1]))
            return Network(net)

    def hosts(self, net: Network, count: int, since: int = 0, until: int = 1 << 30) -> list[str]:
        """Put ``count`` new addresses of ``net`` in use on days [since, until) and return them."""
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


def build_world(seed: int, names: HashedNames) -> World:
    """The accounts, offices, homes, people, machines and service roles of ``seed``."""
    rng = random_stream(seed, 1)
    nets = NetworkFactory(rng)
    accounts, org_id = _accounts(rng)
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
    directory = _Directory(names)
    by_name = {a.name: a for a in accounts}
    humans = [_person(i, directory, by_name, offices, carriers, nets, rng) for i in range(len(_PEOPLE))]
    _machines(directory, accounts, nets, rng)
    legit_first = {first for first, _ in nets.used16}
    return World(
        accounts=accounts,
        org_id=org_id,
        humans=humans,
        identities=directory.identities,
        travel=travel,
        offsets=rng.integers(0, 5, size=(3, 3)) * 60 + rng.integers(0, 55, size=(3, 3)),
        digest_offsets=rng.integers(60, 3540, size=(3, 3)),
        legit_first_v4=legit_first,
        nets=nets,
    )


def _accounts(rng: np.random.Generator) -> tuple[list[Account], str]:
    """Two standalone accounts and one in the organisation, with random ids; and the organisation id."""
    ids: set[int] = set()
    while len(ids) < 3:
        ids.add(int(rng.integers(10**11, 10**12)))
    acct_ids = sorted(ids, key=lambda _: rng.random())
    org_id = "o-" + "".join(rng.choice(list(LOWER_ALNUM), 10))
    accounts = [
        Account("prod", str(acct_ids[0]), None, "management-events", 0),
        Account("dev", str(acct_ids[1]), None, "management-events", 1),
        Account("shared-services", str(acct_ids[2]), org_id, "org-trail", 2),
    ]
    return accounts, org_id


class _Directory:
    """The identities in the order they are made; principal ids and SSO role names are hashes."""

    def __init__(self, names: HashedNames) -> None:
        self.names = names
        self.identities: list[Identity] = []
        self._sso_roles: dict[tuple[str, str], str] = {}

    def user(
        self, account: Account, name: str, key_name: str, catalog: str, region_w: np.ndarray, **kw: Any
    ) -> Identity:
        """An IAM user with one access key (named by ``key_name``)."""
        ident = Identity(
            kind="iam_user",
            account=account,
            arn=f"arn:aws:iam::{account.id}:user/{name}",
            name=name,
            principal="AIDA" + self.names.chars(BASE32, 17, "aida", account.id, name),
            catalog=catalog,
            region_w=region_w,
            access_key="AKIA" + self.names.chars(BASE32, 16, "akia", account.id, key_name),
            **kw,
        )
        self.identities.append(ident)
        return ident

    def role(
        self,
        kind: str,
        account: Account,
        role: str,
        session: str,
        catalog: str,
        region_w: Any,
        role_path: str = "/",
        **kw: Any,
    ) -> Identity:
        """A session ``session`` of the role ``role``."""
        ident = Identity(
            kind=kind,
            account=account,
            name=session,
            role=role,
            role_path=role_path,
            catalog=catalog,
            arn=f"arn:aws:sts::{account.id}:assumed-role/{role}/{session}",
            principal="AROA" + self.names.chars(BASE32, 17, "aroa", account.id, role),
            region_w=np.asarray(region_w, dtype=float),
            **kw,
        )
        self.identities.append(ident)
        return ident

    def sso(self, human: Human, account: Account, permset: str) -> Identity:
        """``human``'s session of the SSO role of permission set ``permset`` in ``account``."""
        role = self._sso_roles.setdefault(
            (account.id, permset), f"AWSReservedSSO_{permset}_{self.names.hex(16, 'sso', account.id, permset)}"
        )
        return self.role(
            "sso",
            account,
            role,
            f"{human.name}@example.com",
            "human",
            human.region_w,
            role_path="/aws-reserved/sso.amazonaws.com/",
            human=human,
        )


def _person(
    i: int,
    directory: _Directory,
    by_name: dict[str, Account],
    offices: list[Network],
    carriers: list[Network],
    nets: NetworkFactory,
    rng: np.random.Generator,
) -> Human:
    """Person ``i``: a home network, habits, and SSO roles (and maybe an IAM user) by team."""
    person = _PEOPLE[i]
    office_i = _PERSON_OFFICE[i]
    home = nets.v4()
    nets.hosts(home, int(rng.integers(1, 3)))
    home6 = nets.v6() if i in _IPV6_HOMES else None
    human = Human(
        name=person,
        tz=_OFFICE_TZ[office_i],
        office=offices[office_i],
        home=home,
        home6=home6,
        mobile=carriers[int(rng.integers(0, 4))] if rng.random() < 0.45 else None,
        p_office=float(rng.uniform(0.35, 0.85)),
        intensity=float(rng.uniform(10, 30)),
        region_w=np.array(_OFFICE_REGIONS[office_i]),
        cli_ua=UA_CLI[int(rng.integers(0, len(UA_CLI)))],
        browser_ua=UA_BROWSER[int(rng.integers(0, len(UA_BROWSER)))],
    )
    if i in _OPS:
        primary = [directory.sso(human, by_name["prod"], "AdministratorAccess")]
        others = [
            directory.sso(human, by_name["dev"], "AdministratorAccess"),
            directory.sso(human, by_name["shared-services"], "AdministratorAccess"),
        ]
    elif i in _SECURITY:
        primary = [directory.sso(human, by_name["shared-services"], "SecurityAudit")]
        others = [
            directory.sso(human, by_name["prod"], "ReadOnlyAccess"),
            directory.sso(human, by_name["dev"], "ReadOnlyAccess"),
        ]
    else:
        primary = [directory.sso(human, by_name["dev"], "PowerUserAccess")]
        others = [directory.sso(human, by_name["prod"], "ReadOnlyAccess")] if rng.random() < 0.5 else []
    if i in _IAM_USERS:
        others.append(
            directory.user(
                by_name[_IAM_USERS[i]], person, person, "human", human.region_w, human=human, ua=human.cli_ua
            )
        )
    human.entities = primary + others
    weights = np.array([0.55] + [0.45 / max(1, len(others))] * len(others))
    human.weights = np.cumsum(weights / weights.sum())
    return human


def _machines(directory: _Directory, accounts: list[Account], nets: NetworkFactory, rng: np.random.Generator) -> None:
    """The backup agent, the CI/CD deploy role, EC2 instances, Lambda functions and service-linked roles."""
    prod, dev, shared = accounts
    names = directory.names
    datacenter = nets.v4()
    nets.hosts(datacenter, 2)
    directory.user(prod, "backup-agent", "backup", "backup", np.array([0.7, 0.3, 0.0]), net=datacenter, ua=UA_BACKUP)
    runners = nets.v4()
    nets.hosts(runners, 5)
    for account, region in ((prod, 0), (dev, 1)):
        directory.role(
            "cicd",
            account,
            "github-actions-deploy",
            "GitHubActions",
            "cicd",
            np.eye(3)[region],
            net=runners,
            ua=UA_CI,
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
        ident = directory.role(
            "instance",
            account,
            role,
            iid,
            "instance",
            weights,
            fixed_ip=ip,
            vpce=vpce,
            ua=UA_INSTANCE[n % len(UA_INSTANCE)],
            region=region,
            params={
                "UpdateInstanceInformation": {**EVENTS[EVENT_INDEX["UpdateInstanceInformation"]][3], "instanceId": iid}
            },
        )
        ident.extra["rotate_offset"] = int(rng.integers(1, 6 * 3600))
        ident.extra["burst_offset"] = int(rng.integers(0, 3 * 3600 - 120))
    nat = nets.hosts(nets.v4(_CLOUD_FIRST), 1)[0]
    directory.role(
        "lambda",
        prod,
        "nightly-report-role-" + names.chars(LOWER_ALNUM, 8, "lambda", 1),
        "nightly-report",
        "lambda",
        np.eye(3)[0],
        fixed_ip=nat,
        ua=UA_LAMBDA,
        extra={"schedule": "hourly"},
    )
    lambda_net = nets.v4(_CLOUD_FIRST)
    nets.hosts(lambda_net, 6)
    directory.role(
        "lambda",
        prod,
        "s3-object-tagger-role-" + names.chars(LOWER_ALNUM, 8, "lambda", 2),
        "s3-object-tagger",
        "lambda",
        np.eye(3)[0],
        net=lambda_net,
        ua=UA_LAMBDA,
        extra={"schedule": "busy"},
    )
    notifier_net = nets.v4(_CLOUD_FIRST)
    nets.hosts(notifier_net, 3)
    directory.role(
        "lambda",
        dev,
        "cost-notifier-role-" + names.chars(LOWER_ALNUM, 8, "lambda", 3),
        "cost-notifier",
        "lambda",
        np.eye(3)[1],
        net=notifier_net,
        ua=UA_LAMBDA,
        extra={"schedule": "daily"},
    )
    for account in accounts:
        directory.role(
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
    directory.role(
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
