"""The attacks of the realistic scenario: stolen credentials used while their owner works as usual.

Which categories happen on which test days is drawn up front (random stream 12); the victim and
the address are chosen on the day, after that day's everyday sessions, among identities that are
active that day from a network they used before, so each attack sits beside its victim's usual
activity, as real stolen credentials are used. Every attack address is one the victim never used.
"""

import datetime as dt
import ipaddress
from dataclasses import dataclass

import numpy as np

from proactive_assets.samples.cloudtrail.catalog import EVENT_INDEX, GLOBAL_EVENT, RECON, REGIONS, UA_ATTACK, UA_CLI
from proactive_assets.samples.cloudtrail.clock import DAY, day_start
from proactive_assets.samples.cloudtrail.seeded import random_stream
from proactive_assets.samples.cloudtrail.sessions import Session, assumed_role_identity, iam_user_identity
from proactive_assets.samples.cloudtrail.world import Identity
from proactive_assets.samples.realistic.address_plan import (
    AWS_EC2_RANGES,
    IPv4Net,
    aws_address,
    random_host,
)
from proactive_assets.samples.realistic.behaviour import DAY_END_MARGIN, DayBuilder
from proactive_assets.samples.realistic.ledger import Ledger
from proactive_assets.samples.realistic.machines import Machine
from proactive_assets.samples.realistic.population import Organisation, Person, is_weekday

#: Every attack category and what it is.
ATTACK_CATEGORIES: dict[str, str] = {
    "instance_credentials_outside_aws": "an EC2 instance's role credentials, taken from its metadata service, "
    "used from a VPS or a residential network",
    "instance_credentials_other_region": "an EC2 instance's role credentials used from an EC2 address in "
    "another AWS region",
    "ci_key_from_residential": "a CI deploy credential used from a residential ISP address",
    "residential_proxy_same_isp": "a person's credentials used through a residential proxy in a new /24 "
    "of the person's own home ISP /16",
    "other_mobile_carrier": "a person's credentials used from another mobile carrier's CGNAT pool",
    "lambda_from_colleague_address": "a Lambda function's credentials used from an address a colleague "
    "uses that day (an office NAT, a home, a VPN egress)",
    "ipv6_other_isp": "the credentials of a person with IPv6 at home used from another ISP's IPv6 network",
    "quiet_vps_call": "a single GetCallerIdentity from a VPS provider: a leaked key being checked",
    "ci_role_from_office": "the CI deploy role assumed with a stolen GitHub token from the office network",
}
# categories whose victims work on weekdays (people, CI); instances and Lambda run every day
_WORKDAY = {
    "ci_key_from_residential",
    "residential_proxy_same_isp",
    "other_mobile_carrier",
    "lambda_from_colleague_address",
    "ipv6_other_isp",
    "quiet_vps_call",
    "ci_role_from_office",
}
PER_CATEGORY = 3

Candidate = tuple[Identity, Person | Machine]
"""A possible victim: the identity and the person or workload it belongs to."""


@dataclass(frozen=True)
class Attack:
    """One injected attack pair: what ``ground_truth.json`` lists under ``suspicious``."""

    day: int
    arn: str
    ip: str
    category: str
    description: str
    event_names: tuple[str, ...]


class AttackPlan:
    """Which categories strike on which test day; ``inject`` builds a day's attacks from the ledger."""

    def __init__(
        self, org: Organisation, builder: DayBuilder, seed: int, start: dt.date, days: int, first_test_day: int
    ) -> None:
        self.org = org
        self.builder = builder
        self.start = start
        self.days = days
        self.rng = random_stream(seed, 12)
        self.attacks: list[Attack] = []
        self.missed: list[tuple[str, int]] = []
        self.used_victims: dict[str, set[str]] = {c: set() for c in ATTACK_CATEGORIES}
        self.used_nets: set[str] = set()
        self.pending: dict[int, list[str]] = {}
        test_days = list(range(first_test_day, days))
        weekdays = [d for d in test_days if is_weekday(start, d)] or test_days
        for category in ATTACK_CATEGORIES:
            pool = weekdays if category in _WORKDAY else test_days
            if not pool:
                continue
            count = min(PER_CATEGORY, len(pool))
            for day in sorted(int(d) for d in self.rng.choice(pool, size=count, replace=False)):
                self.pending.setdefault(day, []).append(category)

    def inject(self, day: int, ledger: Ledger) -> list[tuple[Session, str]]:
        """The attack sessions of ``day``; a category with no fitting victim today moves to the next day."""
        sessions: list[tuple[Session, str]] = []
        for category in self.pending.pop(day, []):
            built = self._attack(category, day, ledger)
            if built is None:
                later = [d for d in range(day + 1, self.days) if category not in _WORKDAY or is_weekday(self.start, d)]
                if later:
                    self.pending.setdefault(later[0], []).append(category)
                else:
                    self.missed.append((category, day))
                continue
            for session in built:
                ledger.add(session, category, attack=bool(session.arn))
                sessions.append((session, category))
        return sessions

    # ---- victims

    def _pick(self, category: str, candidates: list[Candidate]) -> Candidate | None:
        """A candidate not attacked in this category before, if any is left."""
        if not candidates:
            return None
        fresh = [c for c in candidates if c[0].arn not in self.used_victims[category]] or candidates
        choice = fresh[int(self.rng.integers(0, len(fresh)))]
        self.used_victims[category].add(choice[0].arn)
        return choice

    def _people(self, day: int, ledger: Ledger, category: str) -> list[Candidate]:
        """Identities of people at work today from a usual network that fit ``category``'s victim."""
        out: list[Candidate] = []
        preferred: list[Candidate] = []
        for person in self.org.people:
            if person.travelling(day):
                continue
            for ident in person.identities:
                if ident.arn not in ledger.today_sessions or not ledger.usual_today(ident.arn):
                    continue
                used = ledger.networks[ident.arn]
                if category == "residential_proxy_same_isp":  # the home /16 is among its networks
                    fits = not person.vpn and str(person.home.pool) in used
                    likely = fits
                elif category == "other_mobile_carrier":
                    fits = not person.vpn and person.mobile is not None
                    likely = fits and any(str(s) in used for s in person.mobile.pool.subnets(new_prefix=16))
                elif category == "ipv6_other_isp":  # IPv6 from its own ISP before
                    fits = not person.vpn and str(person.home.isp.v6) in used
                    likely = fits
                else:
                    fits = likely = True
                if fits:
                    out.append((ident, person))
                if likely:
                    preferred.append((ident, person))
        return preferred or out

    def _machines(self, day: int, ledger: Ledger, kinds: tuple[str, ...], category: str = "") -> list[Candidate]:
        """Workloads of ``kinds`` (and network ``category``) that called today from a usual network."""
        return [
            (m.ident, m)
            for m in self.org.machines
            if m.kind in kinds
            and (not category or m.category == category)
            and m.ident.arn in ledger.today_sessions
            and ledger.usual_today(m.ident.arn)
        ]

    # ---- addresses

    def _residential(self, pool: IPv4Net | None = None) -> str:
        """An address in a /24 that no home uses, of ``pool`` (else of any ISP's pool)."""
        if pool is None:
            isps = [isp for country in self.org.isps for isp in country]
            isp = isps[int(self.rng.integers(0, len(isps)))]
            pool = isp.pools[int(self.rng.integers(0, len(isp.pools)))]
        taken = {ip.rsplit(".", 1)[0] for p in self.org.people for ip in p.home.v4}
        while True:
            third = int(self.rng.integers(0, 256))
            net = IPv4Net(f"{pool.network_address + (third << 8)}/24")
            prefix = str(net.network_address).rsplit(".", 1)[0]
            if prefix not in taken and str(net) not in self.used_nets:
                self.used_nets.add(str(net))
                return random_host(net, self.rng)

    def _vps(self) -> str:
        return random_host(self.org.hosting[int(self.rng.integers(0, len(self.org.hosting)))], self.rng)

    # ---- the attacks

    def _attack(self, category: str, day: int, ledger: Ledger) -> list[Session] | None:
        rng = self.rng
        org = self.org
        recon = [str(x) for x in rng.choice(RECON, int(rng.integers(3, 10)))]
        events = ["GetCallerIdentity", *recon, "ListSecrets", "GetSecretValue"]
        ua = UA_ATTACK[int(rng.integers(0, len(UA_ATTACK)))]
        if category in ("instance_credentials_outside_aws", "instance_credentials_other_region"):
            picked = self._pick(category, self._machines(day, ledger, ("instance",)))
            if picked is None:
                return None
            ident, machine = picked
            assert isinstance(machine, Machine)
            if category == "instance_credentials_other_region":
                regions = [r for r in AWS_EC2_RANGES if r != REGIONS[machine.region]]
                ip = aws_address(regions[int(rng.integers(0, len(regions)))], rng)
            else:
                ip = self._vps() if rng.random() < 0.7 else self._residential()
            events = ["GetCallerIdentity", "ListBuckets", "DescribeInstances", *recon, "ListSecrets", "GetSecretValue"]
        elif category == "ci_key_from_residential":
            candidates = self._machines(day, ledger, ("ci_key",)) or self._machines(day, ledger, ("ci_role",))
            picked = self._pick(category, candidates)
            if picked is None:
                return None
            ident, _ = picked
            ip = self._residential()
            events = ["GetCallerIdentity", "DescribeStacks", "GetAuthorizationToken", *recon, "GetSecretValue"]
        elif category == "ci_role_from_office":
            roles = self._machines(day, ledger, ("ci_role",))  # not the role that is new in the sample
            roles = [c for c in roles if isinstance(c[1], Machine) and not c[1].arrival]
            picked = self._pick(category, roles)
            if picked is None:
                return None
            ident, _ = picked
            offices = sorted({ip for _, ip, c in ledger.today_pairs() if c == "office"})
            nat = [ip for office in org.offices for ip in office.nat]
            ip = str(rng.choice(offices or nat))
            return self._ci_from_office(ident, day, ip)
        elif category == "lambda_from_colleague_address":
            picked = self._pick(category, self._machines(day, ledger, ("lambda",), "lambda_aws"))
            human_arns = {i.arn for p in org.people for i in p.identities}
            colleagues = [ip for arn, ip, c in ledger.today_pairs() if arn in human_arns and c != "travel"]
            if picked is None or not colleagues:
                return None
            ident, _ = picked
            ip = colleagues[int(rng.integers(0, len(colleagues)))]
            events = ["GetCallerIdentity", "GetSecretValue", "GetParameter", "ListBuckets", "DescribeTable"]
            ua = UA_CLI[int(rng.integers(0, len(UA_CLI)))]
        else:
            picked = self._pick(category, self._people(day, ledger, category))
            if picked is None:
                return None
            ident, person = picked
            assert isinstance(person, Person)
            ua = ua if rng.random() < 0.5 else person.cli_ua
            if category == "residential_proxy_same_isp":
                ip = self._residential(person.home.pool)
            elif category == "other_mobile_carrier":
                others = [c for c in org.carriers[person.country] if c is not person.mobile]
                ip = random_host(others[int(rng.integers(0, len(others)))].pool, rng)
            elif category == "ipv6_other_isp":
                own = person.home.isp.v6
                v6 = [isp.v6 for country in org.isps for isp in country if isp.v6 is not None and isp.v6 != own]
                net = v6[int(rng.integers(0, len(v6)))]
                subnet = int(rng.integers(0, 1 << 32)) << 64
                ip = str(ipaddress.IPv6Address(int(net.network_address) | subnet | int(rng.integers(1, 1 << 63))))
            else:  # quiet_vps_call
                ip = self._vps()
                events = ["GetCallerIdentity"]
                ua = person.cli_ua
        return [self._session(category, ident, day, ip, events, ua, ledger)]

    def _session(
        self, category: str, ident: Identity, day: int, ip: str, events: list[str], ua: str, ledger: Ledger
    ) -> Session:
        """The intruder's calls with the victim's credentials: today's session key, or the user's access key."""
        rng = self.rng
        ds = day_start(self.start, day)
        start = ds + int(rng.integers(2 * 3600, DAY - DAY_END_MARGIN - 3600))
        if ident.kind == "iam_user":
            ui = iam_user_identity(ident)
        else:
            today = ledger.today_sessions[ident.arn]
            ui = today[int(rng.integers(0, len(today)))].ui
        indices = [EVENT_INDEX[name] for name in events]
        weights = ident.region_w / ident.region_w.sum()
        regions = [0 if GLOBAL_EVENT[e] else int(rng.choice(3, p=weights)) for e in indices]
        errors = [bool(i > 0 and rng.random() < 0.15) for i in range(len(indices))]
        description = f"{ATTACK_CATEGORIES[category]}: {ident.arn} from {ip}"
        self.attacks.append(Attack(day, ident.arn, ip, category, description, tuple(events)))
        return Session(
            account=ident.account,
            ui=ui,
            arn=ident.arn,
            ip=ip,
            ua=ua,
            start=start,
            end=start + 1800,
            events=indices,
            regions=regions,
            errors=errors,
            gap=(2, 45),
        )

    def _ci_from_office(self, ident: Identity, day: int, ip: str) -> list[Session]:
        """A stolen GitHub OIDC token exchanged for the deploy role from the office, then secrets read."""
        ds = day_start(self.start, day)
        start = ds + int(self.rng.integers(2 * 3600, DAY - DAY_END_MARGIN - 3600))
        ua = UA_CLI[int(self.rng.integers(0, len(UA_CLI)))]
        exchange = self.builder.ci_run(ident, day, ds, start, ip, "", self.rng, ua=ua)[0][0]
        events = ["GetCallerIdentity", "ListSecrets", "GetSecretValue", "GetSecretValue", "DescribeStacks"]
        ui = assumed_role_identity(ident, self.builder.temporary_key(ident.arn, day, "office", start), start)
        indices = [EVENT_INDEX[name] for name in events]
        description = f"{ATTACK_CATEGORIES['ci_role_from_office']}: {ident.arn} from {ip}"
        self.attacks.append(Attack(day, ident.arn, ip, "ci_role_from_office", description, tuple(events)))
        session = Session(
            account=ident.account,
            ui=ui,
            arn=ident.arn,
            ip=ip,
            ua=ua,
            start=start,
            end=start + 1800,
            events=indices,
            regions=[0 if GLOBAL_EVENT[e] else int(np.argmax(ident.region_w)) for e in indices],
            errors=[False] * len(indices),
            gap=(5, 60),
        )
        return [exchange, session]
