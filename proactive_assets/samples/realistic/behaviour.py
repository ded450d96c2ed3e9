"""Each day of the realistic scenario: who works, from which network, and what every machine calls.

Every session is tagged with the category of the network it comes from (``office``, ``vpn``,
``home_isp``, ``mobile_cgnat``, ``ipv6_privacy``, ``travel``, ``instance``, ``nat_servers``,
``lambda_aws``, ``ci_runner_pool``, ``saas_vendor``...), which labels the novel pairs in the
ground truth. Every call ends 15 minutes before midnight UTC, so its log file is delivered on the
same day (the day partition is the delivery day).
"""

import datetime as dt
import ipaddress

import numpy as np

from proactive_assets.samples.cloudtrail.catalog import EVENT_INDEX, REGIONS
from proactive_assets.samples.cloudtrail.clock import DAY, day_start
from proactive_assets.samples.cloudtrail.seeded import BASE32, HashedNames
from proactive_assets.samples.cloudtrail.sessions import Session, assumed_role_identity, iam_user_identity
from proactive_assets.samples.cloudtrail.world import Identity
from proactive_assets.samples.realistic.address_plan import aws_address, random_host, runner_address
from proactive_assets.samples.realistic.machines import Machine
from proactive_assets.samples.realistic.population import Organisation, Person, is_weekday

#: Calls end this long before midnight UTC, so their delivery (up to ~10 minutes later) is the same day.
DAY_END_MARGIN = 900

Tagged = tuple[Session, str]
"""A session and the category of the network it comes from."""

#: Every benign category of the ground truth and what it is.
BENIGN_CATEGORIES: dict[str, str] = {
    "office": "an office NAT address (2-4 per office, shared by everyone working there)",
    "vpn": "the corporate VPN's egress addresses (always-on VPN for about half the staff, away from the office)",
    "vpn_move": "the VPN egress after it moved to a new block on one test day, for every VPN user at once",
    "home_isp": "a home's dynamic IPv4 address, moved to a new /24 of the ISP's /16 every 5-10 days",
    "mobile_cgnat": "a tethered phone: a new address of the carrier's CGNAT pool (a /14) every session",
    "ipv6_privacy": "an IPv6 temporary address: the home's stable /64, a new interface id every day (RFC 8981)",
    "ipv6_prefix_change": "an IPv6 address in a new /64 after the ISP delegated a new prefix to the home",
    "travel": "a hotel or airport network during a trip",
    "new_employee": "a new employee's first day: new identities, from the office",
    "new_ci_role": "a new CI deploy role's first day, from GitHub's runner pool",
    "ci_runner_pool": "a CI job on a GitHub-hosted runner (Azure addresses over dozens of /16s)",
    "lambda_aws": "a Lambda function outside a VPC: each execution environment calls from a new AWS address "
    "of its region",
    "instance": "an EC2 instance calling from its own public address",
    "nat_servers": "servers behind a couple of fixed NAT addresses (VPC NAT gateways, the data centre's NAT)",
    "autoscaling_instance": "an auto-scaling replacement's first day: a new instance id behind the NAT gateways",
    "saas_vendor": "a SaaS vendor's integration role from the vendor's published addresses (two added on one day)",
    "weekend": "Saturdays and Sundays: about one person in eight works; machines run as usual",
}


def clip(ds: int, start: int, duration: int) -> tuple[int, int]:
    """A session's (start, end) inside day ``ds``, ending ``DAY_END_MARGIN`` before midnight."""
    last = ds + DAY - DAY_END_MARGIN
    start = max(ds, min(start, last - 60))
    return start, min(start + max(duration, 30), last)


class DayBuilder:
    """Builds the everyday sessions of each day, from the day's own random stream."""

    def __init__(self, org: Organisation, names: HashedNames, start: dt.date) -> None:
        self.org = org
        self.names = names
        self.start = start

    def temporary_key(self, *parts: object) -> str:
        """An ``ASIA...`` key id of temporary credentials, named by ``parts``."""
        return "ASIA" + self.names.chars(BASE32, 16, "realistic-asia", *parts)

    def ipv6_address(self, person: Person, day: int) -> str:
        """Today's temporary (privacy) address of ``person``'s home: the /64 of the day, a random interface id."""
        prefix = person.home.prefix6(day)
        assert prefix is not None
        iid = int(self.names.hex(16, "realistic-iid", person.name, day), 16) or 1
        return str(ipaddress.IPv6Address(int(prefix.network_address) | iid))

    def day(self, day: int, rng: np.random.Generator) -> list[Tagged]:
        """Everything that happens on ``day`` as usual: people, machines, AWS services."""
        ds = day_start(self.start, day)
        weekday = is_weekday(self.start, day)
        tagged: list[Tagged] = []
        for person in self.org.people:
            tagged += self._person_day(person, day, ds, weekday, rng)
        for machine in self.org.machines:
            if machine.active(day):
                tagged += self._machine_day(machine, day, ds, weekday, rng)
        shared = self.org.accounts[2]
        for block in range(6):  # CloudTrail checking its bucket's ACL: no ARN, no address
            start, end = clip(ds, ds + block * 4 * 3600 + int(rng.integers(0, 4 * 3600 - 60)), 30)
            service = Session(
                account=shared,
                ui={"type": "AWSService", "invokedBy": "cloudtrail.amazonaws.com"},
                arn=None,
                ip="cloudtrail.amazonaws.com",
                ua="cloudtrail.amazonaws.com",
                start=start,
                end=end,
                n=1 + int(rng.poisson(2)),
                catalog="cloudtrail",
                region_w=np.eye(3)[0],
            )
            tagged.append((service, "aws_service"))
        return tagged

    # ---- people

    def place(self, person: Person, day: int, at_office: bool, rng: np.random.Generator) -> tuple[str, str]:
        """Where one working session of ``person`` comes from today: (address, category)."""
        vpn = self.org.vpn
        trip = person.trip
        # away, the VPN client may be off (a captive portal, a hotel's blocked ports), so its network shows
        if trip is not None and person.travelling(day) and (not person.vpn or rng.random() < 0.3):
            at_airport = day in (trip.first, trip.last) and rng.random() < 0.5
            return (trip.airport if at_airport else trip.hotel), "travel"
        # always-on VPN: home, phone and hotel all egress through it, and about half the time the office too
        if person.vpn and (not at_office or rng.random() < 0.5):
            return str(rng.choice(vpn.egress(day))), "vpn_move" if day >= vpn.move_day else "vpn"
        if at_office:
            assert person.office is not None
            return str(rng.choice(person.office.nat)), "office"
        if person.mobile is not None and rng.random() < person.p_mobile:
            return random_host(person.mobile.pool, rng), "mobile_cgnat"
        if person.home.v6 and rng.random() < 0.75:
            return self.ipv6_address(person, day), "ipv6_privacy"
        return person.home.address(day), "home_isp"

    def _person_day(self, person: Person, day: int, ds: int, weekday: bool, rng: np.random.Generator) -> list[Tagged]:
        first_day = day == person.joined and day > 0  # a new employee starts at the office
        if day < person.joined or not (first_day or rng.random() < (0.92 if weekday else 0.12)):
            return []
        at_office = person.office is not None and weekday and not person.travelling(day)
        at_office = at_office and (first_day or bool(rng.random() < person.p_office))
        tagged: list[Tagged] = []
        for _ in range(1 + int(rng.poisson(1.3))):
            ident = person.identities[int(np.searchsorted(person.weights, rng.random()))]
            evening = not first_day and rng.random() < 0.2  # after hours, from home even on an office day
            ip, category = self.place(person, day, at_office and not evening, rng)
            if first_day:  # a new employee: every pair of the first day is new
                category = "new_employee"
            hour = rng.uniform(19, 23) if evening else rng.uniform(7.5, 18.5)
            start = ds + int(((hour - person.tz) % 24) * 3600)
            tagged += self.human_session(person, ident, day, ds, start, ip, category, rng)
        return tagged

    def human_session(
        self,
        person: Person,
        ident: Identity,
        day: int,
        ds: int,
        start: int,
        ip: str,
        category: str,
        rng: np.random.Generator,
    ) -> list[Tagged]:
        """A person's calls through ``ident`` from ``ip``; a console session may add the console's own calls."""
        start, end = clip(ds, start, int(rng.integers(120, 2400)))
        common = {
            "account": ident.account,
            "arn": ident.arn,
            "ip": ip,
            "start": start,
            "end": end,
            "n": 1 + int(rng.poisson(person.intensity)),
            "catalog": "human",
            "region_w": ident.region_w,
            "err_rate": 0.02,
            "travel": category == "travel",
        }
        if ident.kind == "iam_user":
            return [(Session(ui=iam_user_identity(ident), ua=ident.ua, **common), category)]
        console = bool(rng.random() < person.p_console)
        ui = assumed_role_identity(ident, self.temporary_key(ident.arn, day, start), start - 20)
        session = Session(ui=ui, ua=person.browser_ua if console else person.cli_ua, console=console, **common)
        tagged = [(session, category)]
        if console and rng.random() < 0.3:
            internal = dict(common, ip="AWS Internal", n=1 + int(rng.poisson(2)), catalog="internal", err_rate=0.0)
            tagged.append((Session(ui=ui, ua="AWS Internal", console=True, **internal), "aws_service"))
        return tagged

    # ---- machines

    def _machine_day(
        self, machine: Machine, day: int, ds: int, weekday: bool, rng: np.random.Generator
    ) -> list[Tagged]:
        category = machine.arrival if machine.arrival and day == machine.first_day else machine.category
        kind = machine.kind
        if kind == "instance":
            return self._instance_day(machine, day, ds, category, rng)
        if kind == "lambda":
            return self._lambda_day(machine, day, ds, category, rng)
        if kind in ("ci_role", "ci_key"):
            runs = int(rng.poisson((3.0 if kind == "ci_role" else 2.0) if weekday else 0.2))
            if machine.arrival and day == machine.first_day:
                runs = max(runs, 2)
            tagged: list[Tagged] = []
            for _ in range(runs):
                start = ds + int(rng.uniform(12, 22.5) * 3600)
                tagged += self.ci_run(machine.ident, day, ds, start, runner_address(rng), category, rng)
            return tagged
        if kind == "onprem":
            return self._onprem_day(machine, day, ds, category, rng)
        return self._vendor_day(machine, day, ds, category, rng)

    def _instance_day(
        self, machine: Machine, day: int, ds: int, category: str, rng: np.random.Generator
    ) -> list[Tagged]:
        """Calls every three hours (agents, secrets, logs), with credentials EC2 rotates every six hours."""
        ident = machine.ident
        tagged: list[Tagged] = []
        for when in range(ds + machine.offset % 3600, ds + DAY - DAY_END_MARGIN - 120, 3 * 3600):
            window = (when - ds) // (6 * 3600)
            created = ds + window * 6 * 3600
            ui = assumed_role_identity(ident, self.temporary_key(ident.arn, day, window), created)
            start, end = clip(ds, when, 90)
            session = Session(
                account=ident.account,
                ui=ui,
                arn=ident.arn,
                ip=machine.addresses[0],
                ua=ident.ua,
                start=start,
                end=end,
                n=1 + int(rng.poisson(10)),
                catalog="instance",
                region_w=ident.region_w,
                err_rate=0.003,
            )
            tagged.append((session, category))
        for window in range(4):  # EC2 assuming the instance role for each credential window
            tagged.append((self._service_assume(ident, "ec2.amazonaws.com", ds + window * 6 * 3600 + 1, machine), ""))
        return tagged

    def _service_assume(self, ident: Identity, service: str, when: int, machine: Machine) -> Session:
        """An AWS service assuming ``ident``'s role: an ``AssumeRole`` record without an ARN or address."""
        return Session(
            account=ident.account,
            ui={"type": "AWSService", "invokedBy": service},
            arn=None,
            ip=service,
            ua=service,
            start=when,
            end=when + 1,
            events=[EVENT_INDEX["AssumeRole"]],
            regions=[machine.region],
            errors=[False],
            params={"AssumeRole": {"roleArn": ident.role_arn, "roleSessionName": ident.name}},
        )

    def _lambda_day(self, machine: Machine, day: int, ds: int, category: str, rng: np.random.Generator) -> list[Tagged]:
        """Invocations on the function's schedule, grouped by execution environment: each environment
        has its own credentials and, outside a VPC, its own address from the region's AWS ranges."""
        end_of_day = ds + DAY - DAY_END_MARGIN - 120
        schedule = machine.schedule
        if schedule == "daily":
            times = [ds + 6 * 3600 + machine.offset]
        elif schedule == "bursts":
            times = sorted(int(t) for t in rng.integers(ds + 7 * 3600, ds + 22 * 3600, int(rng.poisson(40))))
        else:
            step = {"5min": 300, "15min": 900, "hourly": 3600}[schedule]
            times = list(range(ds + machine.offset % step, end_of_day, step))
        ident = machine.ident
        tagged: list[Tagged] = []
        env_start, env_end, group = None, 0, []
        for t in [*times, None]:
            if t is not None and env_start is not None and t < env_end:
                group.append(t)
                continue
            if group:
                assert env_start is not None
                if machine.addresses:
                    ip = str(rng.choice(machine.addresses))
                else:
                    ip = aws_address(REGIONS[machine.region], rng)
                ui = assumed_role_identity(ident, self.temporary_key(ident.arn, day, env_start), env_start - 1)
                start, end = clip(ds, group[0], group[-1] - group[0] + 60)
                session = Session(
                    account=ident.account,
                    ui=ui,
                    arn=ident.arn,
                    ip=ip,
                    ua=ident.ua,
                    start=start,
                    end=end,
                    n=1 + int(rng.poisson(2.5 * len(group))),
                    catalog="lambda",
                    region_w=ident.region_w,
                    err_rate=0.002,
                )
                tagged.append((session, category))
            if t is None:
                break
            env_start, group = t, [t]
            env_end = t + int(rng.exponential(machine.env_hours) * 3600) + 60
        return tagged

    def ci_run(
        self,
        ident: Identity,
        day: int,
        ds: int,
        start: int,
        ip: str,
        category: str,
        rng: np.random.Generator,
        ua: str = "",
    ) -> list[Tagged]:
        """A deploy job: for a role, GitHub's OIDC token exchanged for the role; then the deploy calls."""
        start, end = clip(ds, start, int(rng.integers(180, 720)))
        account = ident.account
        tagged: list[Tagged] = []
        if ident.kind == "iam_user":
            ui = iam_user_identity(ident)
        else:
            ui = assumed_role_identity(ident, self.temporary_key(ident.arn, day, start), start)
            provider = f"arn:aws:iam::{account.id}:oidc-provider/token.actions.githubusercontent.com"
            subject = f"repo:acme/{ident.role.removeprefix('gha-deploy-')}:ref:refs/heads/main"
            web = {
                "type": "WebIdentityUser",
                "principalId": f"{provider}:sts.amazonaws.com:{subject}",
                "userName": subject,
                "identityProvider": provider,
            }
            params = {"AssumeRoleWithWebIdentity": {"roleArn": ident.role_arn, "roleSessionName": ident.name}}
            exchange = Session(
                account=account,
                ui=web,
                arn=None,
                ip=ip,
                ua=ua or ident.ua,
                start=max(ds, start - 3),
                end=start,
                events=[EVENT_INDEX["AssumeRoleWithWebIdentity"]],
                regions=[int(np.argmax(ident.region_w))],
                errors=[False],
                params=params,
            )
            tagged.append((exchange, ""))
        session = Session(
            account=account,
            ui=ui,
            arn=ident.arn,
            ip=ip,
            ua=ua or ident.ua,
            start=start,
            end=end,
            n=8 + int(rng.poisson(20)),
            catalog="cicd",
            region_w=ident.region_w,
            err_rate=0.01,
        )
        tagged.append((session, category))
        return tagged

    def _onprem_day(self, machine: Machine, day: int, ds: int, category: str, rng: np.random.Generator) -> list[Tagged]:
        """A nightly job and health checks every three hours, through the data centre's two NAT addresses."""
        ident = machine.ident
        ui = iam_user_identity(ident)
        runs = [(ds + 3600 + machine.offset, 2 * 3600, 5 + int(rng.poisson(30)))]
        runs += [(ds + hour * 3600 + 1500, 60, 1 + int(rng.poisson(1))) for hour in range(0, 24, 3)]
        tagged: list[Tagged] = []
        for when, duration, n in runs:
            start, end = clip(ds, when, duration)
            session = Session(
                account=ident.account,
                ui=ui,
                arn=ident.arn,
                ip=str(rng.choice(machine.addresses)),
                ua=ident.ua,
                start=start,
                end=end,
                n=n,
                catalog="backup",
                region_w=ident.region_w,
                err_rate=0.005,
            )
            tagged.append((session, category))
        return tagged

    def _vendor_day(self, machine: Machine, day: int, ds: int, category: str, rng: np.random.Generator) -> list[Tagged]:
        """The vendor's scanner: a sweep of every region every two hours, from one of its published addresses."""
        ident = machine.ident
        addresses = machine.fixed_addresses(day)
        tagged: list[Tagged] = []
        for when in range(ds + machine.offset, ds + DAY - DAY_END_MARGIN - 300, 2 * 3600):
            ui = assumed_role_identity(ident, self.temporary_key(ident.arn, day, when), when - 2)
            start, end = clip(ds, when, 240)
            session = Session(
                account=ident.account,
                ui=ui,
                arn=ident.arn,
                ip=str(rng.choice(addresses)),
                ua=ident.ua,
                start=start,
                end=end,
                n=4 + int(rng.poisson(12)),
                catalog="config",
                region_w=ident.region_w,
            )
            tagged.append((session, category))
        return tagged
