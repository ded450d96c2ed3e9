"""The organisation's workloads: EC2 instances (public, behind NAT gateways, auto-scaled), Lambda
functions, CI deploy roles and keys, on-premises servers and a SaaS vendor's integration role."""

from dataclasses import dataclass

import numpy as np

from proactive_assets.samples.cloudtrail.catalog import REGIONS, UA_BACKUP, UA_CI, UA_INSTANCE, UA_LAMBDA
from proactive_assets.samples.cloudtrail.world import Account, Identity
from proactive_assets.samples.realistic.address_plan import AddressPlan, IPv4Net, aws_address, random_host
from proactive_assets.samples.realistic.naming import IdentityNames, scaled

UA_VENDOR = (
    "aws-sdk-go-v2/1.32.7 ua/2.1 os/linux lang/go#1.23.4 md/GOOS#linux md/GOARCH#amd64 api/ec2#1.198.1 "
    "posture-scanner/4.12"
)
_LAMBDA_SCHEDULES = ("5min", "15min", "hourly", "daily", "bursts")


@dataclass
class Machine:
    """A workload's identity and where its calls come from (``addresses``: fixed ones; else a pool).

    ``category`` names the kind of network it calls from; one appearing during the sample (an
    auto-scaling replacement, a new CI role) labels its first day's pairs with ``arrival``. A
    vendor announces ``spare`` egress addresses and starts using them on ``spare_from``.
    """

    ident: Identity
    kind: str  # instance | lambda | ci_role | ci_key | onprem | vendor
    category: str
    region: int
    addresses: tuple[str, ...] = ()
    first_day: int = 0
    last_day: int = 1 << 30  # exclusive
    arrival: str = ""
    schedule: str = ""
    env_hours: float = 0.0
    offset: int = 0
    spare: tuple[str, ...] = ()
    spare_from: int = 1 << 30

    def active(self, day: int) -> bool:
        return self.first_day <= day < self.last_day

    def fixed_addresses(self, day: int) -> tuple[str, ...]:
        return self.addresses + self.spare if day >= self.spare_from else self.addresses


def build_machines(
    rng: np.random.Generator,
    naming: IdentityNames,
    accounts: list[Account],
    plan: AddressPlan,
    days: int,
    test_weekdays: list[int],
    scale: float,
) -> list[Machine]:
    """Instances (public, behind NAT gateways, auto-scaled), Lambda functions, CI, on-premises servers, a vendor."""
    prod, dev, shared = accounts
    machines: list[Machine] = []
    nat_gateways: dict[tuple[str, int], tuple[str, ...]] = {}

    def gateways(account: Account, region: int) -> tuple[str, ...]:
        """The VPC's two NAT gateways' Elastic IPs (one per availability zone)."""
        key = (account.id, region)
        if key not in nat_gateways:
            nat_gateways[key] = tuple(aws_address(REGIONS[region], rng) for _ in range(2))
        return nat_gateways[key]

    placements = ((prod, 0, 0.55), (prod, 1, 0.2), (dev, 1, 0.15), (shared, 2, 0.1))
    shares = np.cumsum([p[2] for p in placements])

    def placement() -> tuple[Account, int]:
        account, region, _ = placements[int(np.searchsorted(shares, rng.random() * 0.9999))]
        return account, region

    roles = ("app-server-role", "api-worker-role", "batch-worker-role", "bastion-role", "etl-role", "web-role")
    for n in range(scaled(8, scale, 2) + scaled(10, scale, 2)):
        account, region = placement()
        role = roles[int(rng.integers(0, len(roles)))]
        ident = naming.role(
            "instance",
            account,
            role,
            naming.instance_id(account.id, n),
            "instance",
            np.eye(3)[region],
            UA_INSTANCE[n % 3],
        )
        public = n < scaled(8, scale, 2)
        addresses = (aws_address(REGIONS[region], rng),) if public else (gateways(account, region)[n % 2],)
        machines.append(
            Machine(ident, "instance", "instance" if public else "nat_servers", region, addresses, offset=n * 397)
        )
    for group in range(scaled(2, scale, 1)):  # auto-scaling groups: instances replaced every few days
        account, region = placement()
        for slot in range(3):
            day, generation = 0, 0
            while day < days:
                life = int(rng.integers(2, 9))
                ident = naming.role(
                    "instance",
                    account,
                    f"asg-worker-{group}-role",
                    naming.instance_id(account.id, "asg", group, slot, generation),
                    "instance",
                    np.eye(3)[region],
                    UA_INSTANCE[1],
                )
                machines.append(
                    Machine(
                        ident,
                        "instance",
                        "nat_servers",
                        region,
                        (gateways(account, region)[slot % 2],),
                        first_day=day,
                        last_day=day + life,
                        arrival="autoscaling_instance" if day > 0 else "",
                        offset=slot * 911 + group * 131,
                    )
                )
                day += life
                generation += 1
    functions = ("report-builder", "s3-object-tagger", "thumbnailer", "invoice-sync", "audit-exporter", "queue-drainer")
    for n in range(scaled(18, scale, 3)):
        account, region = placement()
        function = f"{functions[n % len(functions)]}-{n}"
        ident = naming.role("lambda", account, f"{function}-role", function, "lambda", np.eye(3)[region], UA_LAMBDA)
        in_vpc = n % 4 == 3
        machines.append(
            Machine(
                ident,
                "lambda",
                "nat_servers" if in_vpc else "lambda_aws",
                region,
                (gateways(account, region)[n % 2],) if in_vpc else (),
                schedule=_LAMBDA_SCHEDULES[n % len(_LAMBDA_SCHEDULES)],
                env_hours=float(rng.uniform(1.5, 6)),
                offset=int(rng.integers(0, 300)),
            )
        )
    repos = ("app-service", "web-frontend", "data-pipeline", "infra-live", "mobile-api", "billing")
    for n in range(scaled(4, scale, 2)):
        account = prod if n % 2 == 0 else dev
        ident = naming.role(
            "cicd", account, f"gha-deploy-{repos[n % len(repos)]}", "GitHubActions", "cicd", np.eye(3)[n % 2], UA_CI
        )
        machines.append(Machine(ident, "ci_role", "ci_runner_pool", n % 2))
    new_role_day = test_weekdays[int(rng.integers(0, len(test_weekdays)))]
    ident = naming.role("cicd", prod, "gha-deploy-payments-service", "GitHubActions", "cicd", np.eye(3)[0], UA_CI)
    machines.append(Machine(ident, "ci_role", "ci_runner_pool", 0, first_day=new_role_day, arrival="new_ci_role"))
    for n in range(scaled(2, scale, 1)):
        ident = naming.user(
            prod if n % 2 == 0 else dev, ("ci-terraform", "ci-release", "ci-assets")[n % 3], "cicd", np.eye(3)[0], UA_CI
        )
        machines.append(Machine(ident, "ci_key", "ci_runner_pool", 0))
    datacenter = plan.block24()
    nat = tuple(random_host(datacenter, rng) for _ in range(2))
    servers = ("backup-agent", "onprem-jenkins", "ldap-sync", "metrics-collector", "erp-export", "file-gateway")
    for n in range(scaled(4, scale, 2)):
        ident = naming.user(
            prod if n % 3 else shared, servers[n % len(servers)], "backup", np.array([0.7, 0.3, 0.0]), UA_BACKUP
        )
        machines.append(Machine(ident, "onprem", "nat_servers", 0, nat, offset=int(rng.integers(0, 3600))))
    vendor_nets = [IPv4Net(f"{aws_address('us-east-1', rng)}/24", strict=False) for _ in range(2)]
    vendor = tuple(random_host(vendor_nets[i % 2], rng) for i in range(8))
    spare_from = int(rng.integers(1, max(2, days)))
    for account in accounts:
        ident = naming.role(
            "vendor", account, "PostureScannerIntegrationRole", "posture-scanner", "config", np.ones(3) / 3, UA_VENDOR
        )
        machines.append(
            Machine(
                ident,
                "vendor",
                "saas_vendor",
                0,
                vendor[:6],
                offset=int(rng.integers(0, 2 * 3600)),
                spare=vendor[6:],
                spare_from=spare_from,
            )
        )
    return machines
