"""Who owns which addresses in the realistic scenario: AWS, GitHub's runners, ISPs, carriers, hosts.

AWS and GitHub-hosted runner addresses come from their published ranges (the AWS EC2 prefixes of
``ip-ranges.json`` dated 2026-08-22, and Azure prefixes listed under ``actions`` in GitHub's
``/meta`` API); everything else (ISPs, mobile carriers, hosting providers, hotels, offices) is
synthetic, drawn from first octets no cloud uses, so that no two owners share a /16 (IPv6: a /32).
"""

import ipaddress
from dataclasses import dataclass

import numpy as np

IPv4Net = ipaddress.IPv4Network
IPv6Net = ipaddress.IPv6Network

#: EC2 prefixes per region (service "EC2" in AWS's ip-ranges.json, createDate 2026-08-22-15-17-05).
#: Lambda functions outside a VPC and EC2 instances with public addresses call from these.
AWS_EC2_RANGES: dict[str, tuple[str, ...]] = {
    "us-east-1": (
        "3.80.0.0/12",
        "3.208.0.0/12",
        "18.204.0.0/14",
        "34.224.0.0/12",
        "44.192.0.0/11",
        "52.0.0.0/15",
        "54.144.0.0/14",
        "54.160.0.0/13",
    ),
    "eu-west-1": (
        "3.248.0.0/13",
        "18.200.0.0/16",
        "18.202.0.0/15",
        "34.240.0.0/13",
        "52.16.0.0/15",
        "52.208.0.0/13",
        "54.72.0.0/15",
        "54.216.0.0/15",
    ),
    "ap-southeast-2": ("3.24.0.0/14", "3.104.0.0/14", "13.54.0.0/15", "13.236.0.0/14", "52.62.0.0/15", "54.252.0.0/16"),
    # regions the organisation does not use, where an attacker may rent an instance
    "us-west-2": ("34.208.0.0/12", "35.160.0.0/13", "44.224.0.0/11", "52.24.0.0/14", "54.184.0.0/13"),
    "eu-central-1": ("3.64.0.0/12", "3.120.0.0/14", "18.184.0.0/15", "52.28.0.0/16"),
}

#: GitHub-hosted runners run in Azure: a sample of the prefixes GitHub's ``/meta`` API lists under
#: ``actions`` (41 /16s), so a deploy job's address changes every run, over dozens of /16s.
GITHUB_ACTIONS_RANGES: tuple[str, ...] = (
    "4.148.0.0/16",
    "4.151.0.0/16",
    "4.152.0.0/15",
    "4.154.0.0/15",
    "4.156.0.0/15",
    "4.175.0.0/16",
    "4.180.0.0/16",
    "4.207.0.0/16",
    "4.208.0.0/15",
    "13.64.0.0/16",
    "13.65.0.0/16",
    "13.74.0.0/16",
    "13.79.0.0/16",
    "13.80.0.0/15",
    "13.82.0.0/16",
    "13.83.0.0/16",
    "13.84.0.0/15",
    "13.89.0.0/16",
    "13.90.0.0/16",
    "13.91.0.0/16",
    "13.92.0.0/16",
    "20.3.0.0/16",
    "52.224.0.0/16",
    "108.142.0.0/15",
    "172.168.0.0/15",
    "172.176.0.0/15",
    "172.180.0.0/15",
    "172.184.0.0/15",
    "172.190.0.0/15",
)

# First octets for the synthetic owners: global unicast, none of the blocks above or other large
# clouds, nothing reserved, private, shared (100.64/10), for documentation or multicast, and none of
# the legacy /8s held by governments or single companies.
_CLOUD_FIRST = {3, 4, 13, 15, 16, 18, 20, 23, 34, 35, 40, 44, 50, 52, 54, 63, 98, 99, 100, 107, 108, 172, 184}
_LEGACY_FIRST = {6, 7, 8, 9, 11, 12, 17, 19, 21, 22, 25, 26, 28, 29, 30, 33, 48, 51, 53, 55, 56, 57, 214, 215}
_RESERVED_FIRST = {0, 1, 10, 127, 169, 192, 198, 203}
SYNTHETIC_FIRST: tuple[int, ...] = tuple(
    o for o in range(2, 224) if o not in _CLOUD_FIRST | _LEGACY_FIRST | _RESERVED_FIRST
)
#: First 16 bits of the synthetic IPv6 ISPs (RIPE, ARIN and APNIC allocations to access networks).
V6_FIRST: tuple[int, ...] = (0x2A01, 0x2A02, 0x2A00, 0x2A0A, 0x2600, 0x2601, 0x2603, 0x2605, 0x2403, 0x2405, 0x2409)


def _networks(prefixes: tuple[str, ...]) -> tuple[IPv4Net, ...]:
    return tuple(IPv4Net(p) for p in prefixes)


_AWS = {region: _networks(prefixes) for region, prefixes in AWS_EC2_RANGES.items()}
_RUNNERS = _networks(GITHUB_ACTIONS_RANGES)


def random_host(net: IPv4Net, rng: np.random.Generator) -> str:
    """A random address of ``net``, never the first or last of its /24 (routers and broadcasts aside)."""
    base = int(net.network_address)
    while True:
        value = base + int(rng.integers(0, net.num_addresses))
        if 0 < value & 0xFF < 255:
            return str(ipaddress.IPv4Address(value))


def _pick_block(blocks: tuple[IPv4Net, ...], rng: np.random.Generator) -> IPv4Net:
    """A block drawn in proportion to its size, as a random address of their union would be."""
    sizes = np.array([b.num_addresses for b in blocks], dtype=float)
    return blocks[int(rng.choice(len(blocks), p=sizes / sizes.sum()))]


def aws_address(region: str, rng: np.random.Generator) -> str:
    """A random public address of AWS EC2 in ``region``."""
    return random_host(_pick_block(_AWS[region], rng), rng)


def runner_address(rng: np.random.Generator) -> str:
    """The address of a GitHub-hosted runner for one job."""
    return random_host(_pick_block(_RUNNERS, rng), rng)


def network_owner(ip: str) -> str | None:
    """``aws:<region>`` or ``github-actions`` for an address of those published ranges, else None."""
    address = ipaddress.ip_address(ip)
    if address.version != 4:
        return None
    for region, blocks in _AWS.items():
        if any(address in block for block in blocks):
            return f"aws:{region}"
    if any(address in block for block in _RUNNERS):
        return "github-actions"
    return None


@dataclass(frozen=True)
class Isp:
    """A residential ISP: the /16 pools it hands home addresses from, and its IPv6 /32 if it has one."""

    name: str
    pools: tuple[IPv4Net, ...]
    v6: IPv6Net | None


@dataclass(frozen=True)
class Carrier:
    """A mobile carrier: the public side of its carrier-grade NAT, about a /14."""

    name: str
    pool: IPv4Net


class AddressPlan:
    """Hands out synthetic blocks (never two owners in one /16 or IPv6 /32) from a seeded generator."""

    def __init__(self, rng: np.random.Generator) -> None:
        self.rng = rng
        self.used16: set[tuple[int, int]] = set()
        self.used32: set[tuple[int, int]] = set()

    def block(self, prefixlen: int = 16) -> IPv4Net:
        """A free block of ``prefixlen`` (16, or 14 for a carrier pool: four aligned free /16s)."""
        span = 1 << (16 - prefixlen)
        while True:
            first = int(self.rng.choice(SYNTHETIC_FIRST))
            second = int(self.rng.integers(0, 256 // span)) * span
            sixteens = [(first, second + i) for i in range(span)]
            if any(s in self.used16 for s in sixteens):
                continue
            self.used16.update(sixteens)
            return IPv4Net(f"{first}.{second}.0.0/{prefixlen}")

    def block24(self) -> IPv4Net:
        """A /24 in a /16 of its own (an office's, a data centre's, a hotel's network)."""
        sixteen = self.block(16)
        third = int(self.rng.integers(0, 256))
        return IPv4Net(f"{sixteen.network_address + (third << 8)}/24")

    def block6(self) -> IPv6Net:
        """A free IPv6 /32."""
        while True:
            words = (int(self.rng.choice(V6_FIRST)), int(self.rng.integers(0x1000, 0x10000)))
            if words in self.used32:
                continue
            self.used32.add(words)
            return IPv6Net((words[0] << 112 | words[1] << 96, 32))

    def isp(self, name: str, pools: int, v6: bool) -> Isp:
        return Isp(name, tuple(self.block(16) for _ in range(pools)), self.block6() if v6 else None)

    def carrier(self, name: str) -> Carrier:
        return Carrier(name, self.block(14))
