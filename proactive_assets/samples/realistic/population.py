"""The organisation of the realistic scenario: accounts, offices, VPN, people, machines and vendors.

Drawn once per seed (random stream 11) before any day is written. ``scale`` multiplies the number
of people and machines; every kind keeps at least a few members so every category occurs.
"""

import datetime as dt
from dataclasses import dataclass, field

import numpy as np

from proactive_assets.samples.cloudtrail.catalog import UA_BROWSER, UA_CLI
from proactive_assets.samples.cloudtrail.seeded import LOWER_ALNUM, HashedNames, random_stream
from proactive_assets.samples.cloudtrail.world import Account, Identity
from proactive_assets.samples.realistic.address_plan import (
    AddressPlan,
    Carrier,
    IPv4Net,
    IPv6Net,
    Isp,
    random_host,
)
from proactive_assets.samples.realistic.machines import Machine, build_machines
from proactive_assets.samples.realistic.naming import IdentityNames, scaled

#: (office, UTC offset, weights of the writer's REGIONS); people of a country share its ISPs and carriers.
OFFICES = (
    ("new-york", -5, (0.8, 0.15, 0.05)),
    ("london", 0, (0.3, 0.65, 0.05)),
    ("sydney", 10, (0.3, 0.1, 0.6)),
)
_COUNTRY_SHARE = (0.45, 0.35, 0.2)
_FIRST = [
    "aisha",
    "ben",
    "carla",
    "dmitri",
    "elif",
    "farid",
    "grace",
    "hiro",
    "ines",
    "jonas",
    "kemal",
    "lucia",
    "marek",
    "nadia",
    "oscar",
    "pilar",
    "quentin",
    "rosa",
    "samir",
    "tara",
    "umar",
    "vera",
    "wen",
    "xavier",
    "yara",
    "zoltan",
    "amara",
    "bilal",
    "chloe",
    "diego",
    "emeka",
    "freya",
    "gustavo",
    "hanna",
    "ilya",
    "jade",
    "kenji",
    "leila",
    "mika",
    "noor",
]
_LAST = [
    "adeyemi",
    "bauer",
    "castillo",
    "dubois",
    "eriksen",
    "fontaine",
    "gallo",
    "horvat",
    "ibrahim",
    "jansen",
    "kowalczyk",
    "larsen",
    "moreau",
    "nakamura",
    "okafor",
    "petrov",
    "quinn",
    "rossi",
    "schmidt",
    "tanaka",
    "ueda",
    "vargas",
    "weber",
    "xu",
    "yilmaz",
    "zielinski",
    "abbott",
    "brennan",
    "chowdhury",
    "delacroix",
    "evans",
    "fischer",
    "gupta",
    "haddad",
    "iqbal",
    "jovanovic",
    "kim",
    "lindgren",
    "murphy",
    "novak",
]
# (team, share, (primary permission set, account), ((other set, account, probability), ...), console share)
_TEAMS = (
    (
        "engineering",
        0.5,
        ("PowerUserAccess", "dev"),
        (("ReadOnlyAccess", "prod", 0.6), ("ReadOnlyAccess", "shared-services", 0.2)),
        0.35,
    ),
    (
        "operations",
        0.15,
        ("AdministratorAccess", "prod"),
        (("AdministratorAccess", "dev", 0.9), ("AdministratorAccess", "shared-services", 0.7)),
        0.45,
    ),
    ("data", 0.1, ("DataAnalyst", "prod"), (("PowerUserAccess", "dev", 0.5),), 0.5),
    (
        "security",
        0.07,
        ("SecurityAudit", "shared-services"),
        (("ReadOnlyAccess", "prod", 0.9), ("ReadOnlyAccess", "dev", 0.7)),
        0.5,
    ),
    ("business", 0.18, ("ReadOnlyAccess", "prod"), (("Billing", "shared-services", 0.4),), 0.95),
)


@dataclass(frozen=True)
class Office:
    """An office network: a /24 with a few NAT addresses every person there shares."""

    name: str
    tz: int
    region_w: np.ndarray
    network: IPv4Net
    nat: tuple[str, ...]


@dataclass(frozen=True)
class Vpn:
    """The corporate VPN's egress addresses; on ``move_day`` they move to a new block elsewhere."""

    old: tuple[str, ...]
    new: tuple[str, ...]
    move_day: int

    def egress(self, day: int) -> tuple[str, ...]:
        return self.new if day >= self.move_day else self.old


@dataclass
class Home:
    """A home connection: a dynamic IPv4 address that moves to a new /24 of its ISP's /16 every
    ``period`` days, and, with IPv6, a /64 that changes when the ISP delegates a new prefix."""

    isp: Isp
    pool: IPv4Net
    period: int
    phase: int
    v4: list[str]
    v6: list[tuple[int, IPv6Net]] = field(default_factory=list)  # (first day, /64), in order

    def address(self, day: int) -> str:
        return self.v4[(day + self.phase) // self.period]

    def prefix6(self, day: int) -> IPv6Net | None:
        current = None
        for since, net in self.v6:
            if since <= day:
                current = net
        return current


@dataclass(frozen=True)
class Trip:
    """Days ``first``..``last`` away: the airport's Wi-Fi on the first and last day, a hotel's otherwise."""

    first: int
    last: int
    airport: str
    hotel: str


@dataclass
class Person:
    """Someone who signs in: where they work from, how, and the identities they use (cumulative odds)."""

    name: str
    team: str
    country: int
    office: Office | None
    tz: int
    region_w: np.ndarray
    home: Home
    mobile: Carrier | None
    p_mobile: float
    vpn: bool
    p_office: float
    p_console: float
    intensity: float
    cli_ua: str
    browser_ua: str
    identities: list[Identity] = field(default_factory=list)
    weights: np.ndarray = field(default_factory=lambda: np.ones(1))
    joined: int = 0
    trip: Trip | None = None

    def travelling(self, day: int) -> bool:
        return self.trip is not None and self.trip.first <= day <= self.trip.last


@dataclass
class Organisation:
    """Everything drawn once per seed. ``accounts``, ``offsets`` and ``digest_offsets`` are what the
    bucket writer needs; the rest is what the days are made of."""

    accounts: list[Account]
    org_id: str
    offsets: np.ndarray
    digest_offsets: np.ndarray
    offices: list[Office]
    vpn: Vpn
    people: list[Person]
    machines: list[Machine]
    isps: list[list[Isp]]  # per country
    carriers: list[list[Carrier]]  # per country
    hosting: list[IPv4Net]  # VPS providers' /16s
    plan: AddressPlan

    def identities(self) -> list[Identity]:
        return [i for p in self.people for i in p.identities] + [m.ident for m in self.machines]


def is_weekday(start: dt.date, day: int) -> bool:
    return (start + dt.timedelta(days=day)).weekday() < 5


def build_organisation(
    seed: int, names: HashedNames, start: dt.date, days: int, first_test_day: int, scale: float
) -> Organisation:
    """The accounts, networks, people and machines of ``seed`` for a sample of ``days`` days."""
    rng = random_stream(seed, 11)
    plan = AddressPlan(rng)
    accounts, org_id = _accounts(rng)
    by_name = {a.name: a for a in accounts}
    naming = IdentityNames(names)
    offices = []
    for name, tz, region_w in OFFICES:
        network = plan.block24()
        first = int(rng.integers(10, 200))
        nat = tuple(str(network.network_address + first + i) for i in range(int(rng.integers(2, 5))))
        offices.append(Office(name, tz, np.array(region_w), network, nat))
    test_weekdays = [d for d in range(first_test_day, days) if is_weekday(start, d)] or list(
        range(first_test_day, days)
    )
    vpn_old, vpn_new = plan.block24(), plan.block24()
    base_old, base_new = int(rng.integers(8, 200)), int(rng.integers(8, 200))
    n_egress = int(rng.integers(4, 8))
    vpn = Vpn(
        old=tuple(str(vpn_old.network_address + base_old + i) for i in range(n_egress)),
        new=tuple(str(vpn_new.network_address + base_new + i) for i in range(n_egress)),
        move_day=test_weekdays[min(len(test_weekdays) - 1, int(rng.integers(1, 4)))],
    )
    isps = [[plan.isp(f"isp-{c}-{i}", int(rng.integers(2, 4)), v6=i < 2) for i in range(3)] for c in range(3)]
    carriers = [[plan.carrier(f"carrier-{c}-{i}") for i in range(3)] for c in range(3)]
    hosting = [plan.block(16) for _ in range(8)]
    people = _people(rng, naming, by_name, offices, isps, carriers, plan, days, test_weekdays, scale)
    machines = build_machines(rng, naming, accounts, plan, days, test_weekdays, scale)
    return Organisation(
        accounts=accounts,
        org_id=org_id,
        offsets=rng.integers(0, 5, size=(3, 3)) * 60 + rng.integers(0, 55, size=(3, 3)),
        digest_offsets=rng.integers(60, 3540, size=(3, 3)),
        offices=offices,
        vpn=vpn,
        people=people,
        machines=machines,
        isps=isps,
        carriers=carriers,
        hosting=hosting,
        plan=plan,
    )


def _accounts(rng: np.random.Generator) -> tuple[list[Account], str]:
    """Two standalone accounts and one in the organisation's trail, with random ids."""
    ids: set[int] = set()
    while len(ids) < 3:
        ids.add(int(rng.integers(10**11, 10**12)))
    prod, dev, shared = sorted(ids)
    org_id = "o-" + "".join(rng.choice(list(LOWER_ALNUM), 10))
    return [
        Account("prod", str(prod), None, "management-events", 0),
        Account("dev", str(dev), None, "management-events", 1),
        Account("shared-services", str(shared), org_id, "org-trail", 2),
    ], org_id


def _home(rng: np.random.Generator, isp: Isp, days: int) -> Home:
    """A home on ``isp``: a new /24 of one of its /16 pools every 5-10 days; IPv6 for most of its homes."""
    pool = isp.pools[int(rng.integers(0, len(isp.pools)))]
    period = int(rng.integers(5, 11))
    phase = int(rng.integers(0, period))
    thirds = rng.choice(256, size=(days + phase) // period + 1, replace=False)
    v4 = [random_host(IPv4Net(f"{pool.network_address + (int(t) << 8)}/24"), rng) for t in thirds]
    home = Home(isp, pool, period, phase, v4)
    if isp.v6 is not None and rng.random() < 0.75:
        pool40 = int(isp.v6.network_address) | int(rng.integers(0, 256)) << 88  # the ISP's regional /40
        day, gap = 0, int(rng.integers(1, 30))
        while day < days:
            delegated = pool40 | int(rng.integers(0, 1 << 16)) << 72  # a /56 of the /40
            home.v6.append((day, IPv6Net((delegated | int(rng.integers(0, 256)) << 64, 64))))
            day, gap = day + gap, int(rng.integers(8, 30))  # the ISP delegates a new prefix now and then
    return home


def _people(
    rng: np.random.Generator,
    naming: IdentityNames,
    by_name: dict[str, Account],
    offices: list[Office],
    isps: list[list[Isp]],
    carriers: list[list[Carrier]],
    plan: AddressPlan,
    days: int,
    test_weekdays: list[int],
    scale: float,
) -> list[Person]:
    """The staff (some joining on test days), each with a team, home, habits and SSO identities."""
    count = scaled(90, scale, 16)
    joiners = scaled(3, scale, 2)
    full_names = [f"{a}.{b}" for a in _FIRST for b in _LAST]
    chosen = rng.choice(len(full_names), size=count + joiners, replace=False)
    team_share = np.cumsum([t[1] for t in _TEAMS])
    people = []
    for n, index in enumerate(chosen):
        name = full_names[int(index)]
        joined = 0 if n < count else test_weekdays[int(rng.integers(0, len(test_weekdays)))]
        country = int(np.searchsorted(np.cumsum(_COUNTRY_SHARE), rng.random() * 0.9999))
        remote = joined == 0 and rng.random() < 0.12
        team = _TEAMS[int(np.searchsorted(team_share, rng.random() * 0.9999))] if joined == 0 else _TEAMS[0]
        isp = isps[country][int(rng.choice(3, p=[0.5, 0.3, 0.2]))]
        person = Person(
            name=name,
            team=team[0],
            country=country,
            office=None if remote else offices[country],
            tz=OFFICES[country][1],
            region_w=np.array(OFFICES[country][2]),
            home=_home(rng, isp, days),
            mobile=carriers[country][int(rng.choice(3, p=[0.45, 0.35, 0.2]))] if rng.random() < 0.6 else None,
            p_mobile=float(rng.uniform(0.03, 0.2)),
            vpn=bool(rng.random() < 0.6),
            p_office=0.0 if remote else float(rng.uniform(0.3, 0.9)),
            p_console=float(team[4]),
            intensity=float(rng.uniform(6, 25)),
            cli_ua=UA_CLI[int(rng.integers(0, len(UA_CLI)))],
            browser_ua=UA_BROWSER[int(rng.integers(0, len(UA_BROWSER)))],
            joined=joined,
        )
        email = f"{name}@example.com"
        permission_set, account = team[2]
        person.identities = [naming.sso(email, by_name[account], permission_set, person.region_w)]
        for other_set, other_account, p in team[3]:
            if rng.random() < p:
                person.identities.append(naming.sso(email, by_name[other_account], other_set, person.region_w))
        if team[0] in ("engineering", "operations") and joined == 0 and rng.random() < 0.2:
            account = by_name["dev" if rng.random() < 0.6 else "prod"]
            person.identities.append(naming.user(account, name, "human", person.region_w, person.cli_ua))
        weights = np.array([0.6] + [0.4 / max(1, len(person.identities) - 1)] * (len(person.identities) - 1))
        person.weights = np.cumsum(weights / weights.sum())
        if joined == 0 and days > 3 and rng.random() < 0.25:
            first = int(rng.integers(1, days - 2))
            airport, hotel = plan.block24(), plan.block24()
            person.trip = Trip(
                first,
                min(days - 1, first + int(rng.integers(1, 4))),
                random_host(airport, rng),
                random_host(hotel, rng),
            )
        people.append(person)
    return people
