"""The pairs written, day by day: what each identity used before, and which pairs of a day are novel.

The attack plan reads it to pick victims active as usual and addresses they never used; the
ground truth is made from its rows. A pair is *novel* when its identity never used that address
on an earlier day of the sample.
"""

import ipaddress
from collections import defaultdict
from dataclasses import dataclass

from proactive_assets.samples.cloudtrail.sessions import Session
from proactive_assets.samples.realistic.address_plan import network_owner


def network_keys(ip: str) -> tuple[str, ...]:
    """The networks an address belongs to, as this scenario judges "the identity's usual network":
    its IPv4 /16 or IPv6 /32 (the ISP), and the published pool it is part of (AWS region, GitHub)."""
    address = ipaddress.ip_address(ip)
    prefix = 16 if address.version == 4 else 32
    keys = [str(ipaddress.ip_network(f"{ip}/{prefix}", strict=False))]
    owner = network_owner(ip)
    if owner:
        keys.append(owner)
    return tuple(keys)


def prefix64(ip: str) -> str | None:
    """The /64 of an IPv6 address (None for IPv4)."""
    address = ipaddress.ip_address(ip)
    return str(ipaddress.ip_network(f"{ip}/64", strict=False)) if address.version == 6 else None


@dataclass(frozen=True)
class PairRow:
    """One (day, identity, address) written, the category of its first session that day, and novelty."""

    day: int
    arn: str
    ip: str
    category: str
    novel: bool
    attack: bool


class Ledger:
    """Collects a day's pairs with ``add``; ``close_day`` labels them and folds them into the history."""

    def __init__(self) -> None:
        self.rows: list[PairRow] = []
        self.seen: defaultdict[str, set[str]] = defaultdict(set)
        self.networks: defaultdict[str, set[str]] = defaultdict(set)
        self.prefixes: defaultdict[str, set[str]] = defaultdict(set)
        self.identities_per_day: list[int] = []
        self._reset_today()

    def _reset_today(self) -> None:
        self.today: dict[tuple[str, str], str] = {}
        self.today_attacks: set[tuple[str, str]] = set()
        self.today_sessions: defaultdict[str, list[Session]] = defaultdict(list)
        self.today_addresses: defaultdict[str, list[str]] = defaultdict(list)

    def add(self, session: Session, category: str, attack: bool = False) -> None:
        """Record a session of today (ignored unless it has an identity and an address)."""
        if not session.arn or not session.from_ip or (session.n <= 0 and not session.events):
            return
        key = (session.arn, session.ip)
        if attack:
            self.today_attacks.add(key)
        else:
            self.today_sessions[session.arn].append(session)
        if key not in self.today:
            self.today[key] = category
            if not attack:
                self.today_addresses[session.arn].append(session.ip)

    def usual_today(self, arn: str) -> bool:
        """Whether ``arn`` called today, not in an attack, from a network it used on an earlier day."""
        used = self.networks.get(arn, set())
        return any(k in used for ip in self.today_addresses.get(arn, []) for k in network_keys(ip))

    def today_pairs(self) -> list[tuple[str, str, str]]:
        """Today's benign (arn, address, category) so far, in the order they were added."""
        return [(arn, ip, c) for (arn, ip), c in self.today.items() if (arn, ip) not in self.today_attacks]

    def close_day(self, day: int) -> None:
        """Label today's pairs (novel? IPv6 prefix change?) and add them to the history."""
        arns = set()
        for (arn, ip), category in self.today.items():
            attack = (arn, ip) in self.today_attacks
            novel = ip not in self.seen[arn]
            known = self.prefixes[arn]  # the /64s it used before: a new one after others is a prefix change
            if novel and not attack and category == "ipv6_privacy" and known and prefix64(ip) not in known:
                category = "ipv6_prefix_change"
            self.rows.append(PairRow(day, arn, ip, category, novel, attack))
            arns.add(arn)
        for arn, ip in self.today:
            self.seen[arn].add(ip)
            self.networks[arn].update(network_keys(ip))
            prefix = prefix64(ip)
            if prefix:
                self.prefixes[arn].add(prefix)
        self.identities_per_day.append(len(arns))
        self._reset_today()
