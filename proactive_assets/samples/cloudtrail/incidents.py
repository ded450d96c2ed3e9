"""The plan: injected suspicious activity, benign novelties and the warm-ups they need, with their labels.

Decided before any day is generated, from its own random stream, so ``scale`` does not move it.
Suspicious activity comes from networks nobody used before, on the last third of the days; benign
novelties are new addresses inside networks their identity already used.
"""

from dataclasses import dataclass

import numpy as np

from proactive_assets.samples.cloudtrail.activity import DailyActivity
from proactive_assets.samples.cloudtrail.catalog import EVENT_INDEX, GLOBAL_EVENT, RECON, UA_ATTACK, UA_BROWSER
from proactive_assets.samples.cloudtrail.clock import day_start
from proactive_assets.samples.cloudtrail.seeded import random_stream
from proactive_assets.samples.cloudtrail.sessions import Session, assumed_role_identity, iam_user_identity
from proactive_assets.samples.cloudtrail.world import Identity

# First IPv6 words of the attackers' networks, none of them used by the company
_V6_ATTACK_FIRST = (0x2A05, 0x2A06, 0x2A0B, 0x2A0C, 0x2602, 0x2604, 0x2606, 0x2001)


@dataclass
class TruthEntry:
    """One labelled (day, identity, source address): what ``ground_truth.json`` lists."""

    label: str
    day: int
    arn: str
    ip: str
    kind: str
    description: str


# The incidents, in order: the plan uses the first 6 to 12 of them, more when there are more incident days
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


class IncidentPlan:
    """The sessions forced onto given days (``forced``) and the labels of what they are (``truth``)."""

    def __init__(self, activity: DailyActivity, days: int, seed: int) -> None:
        self.activity = activity
        self.world = activity.world
        self.names = activity.names
        self.start = activity.start
        self.days = days
        self.seed = seed
        self.forced: dict[int, list[Session]] = {}
        self.truth: list[TruthEntry] = []
        self.first_incident_day = max(1, round(days * 2 / 3))

    def draw(self) -> None:
        """Decide the injected activity before any day is generated (from its own random stream)."""
        if self.first_incident_day >= self.days:
            return
        rng = random_stream(self.seed, 2)
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

    def _pick(self, candidates: list[Identity], rng: np.random.Generator, used: set[str]) -> Identity:
        """A candidate not picked before, if any is left."""
        fresh = [c for c in candidates if c.arn not in used] or candidates
        choice = fresh[int(rng.integers(0, len(fresh)))]
        used.add(choice.arn)
        return choice

    def _force(self, day: int, sessions: list[Session]) -> None:
        self.forced.setdefault(day, []).extend(sessions)

    def _warm_up(self, ident: Identity, rng: np.random.Generator, place: str = "") -> None:
        """Normal activity on two earlier days, so the identity (and its usual network) is known."""
        days = sorted({int(d) for d in rng.integers(0, self.first_incident_day, 2)})
        for day in days:
            ds = day_start(self.start, day)
            start = ds + int(rng.uniform(1, 21) * 3600)
            if ident.kind == "cicd":
                self._force(day, self.activity.ci_run(ident, day, start, 12, str(rng.choice(ident.net.ips(day))), rng))
                continue
            human = ident.human
            if human is None:
                continue
            if place == "home6":
                ip = self.activity.v6_of_day(human, day)
            elif place == "home":
                ip = str(rng.choice(human.home.ips(day)))
            else:
                ip = str(rng.choice(human.office.ips(day)))
            self._force(
                day, self.activity.human_session(ident, day, start, 1800, 8 + int(rng.integers(0, 10)), ip, rng)
            )

    def _attack_ips(self, rng: np.random.Generator, count: int, ipv6: bool = False) -> list[str]:
        """``count`` addresses of one new network, in no IPv4 /8 the company uses (or the attackers' IPv6)."""
        if ipv6:
            net = self.world.nets.v6(_V6_ATTACK_FIRST)
            return [net.host(int(rng.integers(1, 1 << 62))) for _ in range(count)]
        net = self.world.nets.v4(avoid_first=self.world.legit_first_v4)
        numbers = rng.choice(np.arange(2, 255), size=count, replace=False)
        return [net.host(int(n)) for n in numbers]

    def _incident(self, kind: str, day: int, rng: np.random.Generator, used: set[str]) -> None:
        """One incident: a victim (a fresh one while any is left), its warm-up, the intruder's calls, labels."""
        world = self.world
        ds = day_start(self.start, day)
        t0 = ds + int(rng.uniform(0.35, 23.2) * 3600)
        humans_iam = [i for i in world.identities if i.kind == "iam_user" and i.human is not None]
        sso_primary = [h.entities[0] for h in world.humans]
        ua = UA_ATTACK[int(rng.integers(0, len(UA_ATTACK)))]
        ipv6 = kind.endswith("_ipv6")
        kind = kind.removesuffix("_ipv6")
        console = False
        params: dict[str, dict] = {}
        gap = (2, 45)
        err_rate = 0.2
        if kind == "stolen_access_key":
            victim = self._pick(humans_iam, rng, used)
            ui = iam_user_identity(victim)
            recon = list(rng.choice(RECON, int(rng.integers(6, 16))))
            phases = [["GetCallerIdentity", "ListBuckets", *recon, "ListSecrets", "GetSecretValue"]]
            what = f"IAM access key {victim.access_key} of {victim.name} used"
        elif kind == "session_replay":
            victim = self._pick(sso_primary, rng, used)
            human = victim.human
            assert human is not None
            legit_start = max(ds + 600, t0 - int(rng.integers(3600, 3 * 3600)))
            legit_ip = str(rng.choice(human.office.ips(day)))
            legit = self.activity.human_session(victim, day, legit_start, 2400, 15, legit_ip, rng, console=True)
            self._force(day, legit)
            ui = legit[0].ui
            ua = UA_BROWSER[(UA_BROWSER.index(human.browser_ua) + 1) % len(UA_BROWSER)]
            console = True
            recon = list(rng.choice(RECON, int(rng.integers(5, 12))))
            phases = [[*recon, "ListSecrets", "GetSecretValue", "GetSecretValue"]]
            what = f"SSO console session of {human.name} (key {ui['accessKeyId']}) replayed"
            err_rate = 0.1
        elif kind == "instance_credential_exfiltration":
            victim = self._pick([i for i in world.identities if i.kind == "instance"], rng, used)
            k, ws = self.activity.instance_window(victim, t0)
            ui = assumed_role_identity(victim, self.activity.temporary_key(victim.arn, k), ws)
            recon = list(rng.choice(RECON, int(rng.integers(3, 9))))
            phases = [
                ["GetCallerIdentity", "ListBuckets", "DescribeInstances", *recon, "ListSecrets", "GetSecretValue"]
            ]
            what = f"credentials of instance {victim.name} ({victim.role}) used outside AWS"
            err_rate = 0.3
        elif kind == "recon_burst":
            victim = self._pick(humans_iam + sso_primary, rng, used)
            if victim.kind == "iam_user":
                ui = iam_user_identity(victim)
            else:
                ui = assumed_role_identity(victim, self.activity.temporary_key(victim.arn, day, "stolen"), t0 - 900)
            phases = [["GetCallerIdentity", *rng.choice(RECON, int(rng.integers(40, 110)))]]
            gap = (1, 3)
            err_rate = 0.4
            what = f"reconnaissance burst (List*/Describe*) with the credentials of {victim.name}"
        elif kind == "persistence":
            admins = [i for i in world.identities if i.kind == "sso" and "_AdministratorAccess_" in i.arn]
            victim = self._pick(admins + humans_iam, rng, used)
            if victim.kind == "iam_user":
                ui = iam_user_identity(victim)
            else:
                ui = assumed_role_identity(victim, self.activity.temporary_key(victim.arn, day, "stolen"), t0 - 900)
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
            ui = assumed_role_identity(victim, self.activity.temporary_key(victim.arn, day, "abuse"), t0 - 60)
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
            events = [EVENT_INDEX[str(name)] for name in phase]
            regions = [0 if GLOBAL_EVENT[e] else int(rng.integers(0, 3)) for e in events]
            errors = [bool(i > 0 and rng.random() < err_rate) for i in range(len(events))]
            session = Session(
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
            self.truth.append(TruthEntry("suspicious", day, victim.arn, ip, kind, description))
            when += int(gap[1] * len(events)) + int(rng.integers(60, 600))

    def _benign(self, window: list[int], rng: np.random.Generator) -> None:
        """New addresses in known networks: two homes, an office NAT, an IPv6 privacy address, a CI runner."""
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
        start = day_start(self.start, day) + int(rng.uniform(12, 20) * 3600)
        run = self.activity.ci_run(ci, day, start, 15, new_ip, rng)
        self._force(day, run)
        self.truth.append(
            TruthEntry(
                "benign_novelty",
                day,
                ci.arn,
                new_ip,
                "new_ci_runner",
                f"new CI runner {new_ip} inside the runner network {ci.net.network}",
            )
        )

    def _benign_session(
        self, ident: Identity, day: int, ip: str, rng: np.random.Generator, kind: str, description: str
    ) -> None:
        """A CLI session of ``ident`` from the new address ``ip``, labelled a benign novelty."""
        start = day_start(self.start, day) + int(rng.uniform(1, 21) * 3600)
        self._force(
            day,
            self.activity.human_session(ident, day, start, 1800, 10 + int(rng.integers(0, 10)), ip, rng, console=False),
        )
        self.truth.append(TruthEntry("benign_novelty", day, ident.arn, ip, kind, description))
