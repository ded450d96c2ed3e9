"""Amazon Security Lake as a log source: object keys, a day's objects, and reading them.

Security Lake writes OCSF Parquet under
``aws/<SOURCE>/<version>/region=<r>/accountId=<id>/eventDay=<YYYYMMDD>/<hash>.gz.parquet``; the
rows are mapped to activity by ``ocsf.py`` (CloudTrail events) and ``ocsf_network.py`` (VPC Flow
and Route 53 pairs). Sources and versions this project cannot map are
listed once as problems (never read), so an operator sees what was skipped.
"""

import io
import re
from collections import Counter
from collections.abc import Iterable, Iterator
from contextlib import closing
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from proactive_assets.core.events import DayListing, EventBatch, Problem, quarantined
from proactive_assets.core.sources.ocsf import (
    OCSF_COLUMNS,
    SUPPORTED_SOURCES,
    SUPPORTED_VERSIONS,
    OcsfActivity,
    OcsfSchemaError,
    read_ocsf_activity,
    source_label,
)
from proactive_assets.core.storage import ObjectInfo, ObjectStore, mapped, read_ahead, request_pool

NAME = "security_lake"
#: Top-level folders of a Security Lake bucket: native sources and custom sources.
NATIVE, CUSTOM = "aws/", "ext/"


@dataclass(frozen=True)
class SecurityLakeObject:
    """Partition values of one Security Lake object, read from its key."""

    key: str
    source: str
    source_version: str | None
    region: str
    account: str
    day: date
    custom: bool = False

    @property
    def supported(self) -> bool:
        """True when ``read_ocsf_activity`` knows how to map this object's rows."""
        return not self.custom and self.source in SUPPORTED_SOURCES and self.source_version in SUPPORTED_VERSIONS

    @property
    def source_label(self) -> str:
        """Value of the ``source`` column for rows read from this object."""
        return source_label(self.source)


_KEY_RE = re.compile(
    r"(?:^|/)(?P<kind>aws|ext)/(?P<source>[^/=]+)/(?:(?P<version>\d+\.\d+)/)?"
    r"region=(?P<region>[^/]+)/accountId=(?P<account>\d{12})/"
    r"eventDay=(?P<day>\d{8})/[^/]+\.parquet$"
)


def parse_security_lake_key(key: str) -> SecurityLakeObject | None:
    """Partition values of a Security Lake object key, or None for any other key.

    Native sources (``aws/``) must carry a version; custom sources (``ext/``) may omit it.
    Sources this project cannot map still parse, with ``supported`` False, so a listing can
    report them instead of silently ignoring them.
    """
    match = _KEY_RE.search(key)
    if match is None:
        return None
    custom = match["kind"] == "ext"
    if not custom and match["version"] is None:
        return None
    try:
        day = datetime.strptime(match["day"], "%Y%m%d").date()
    except ValueError:
        return None
    return SecurityLakeObject(
        key=key,
        source=match["source"],
        source_version=match["version"],
        region=match["region"],
        account=match["account"],
        day=day,
        custom=custom,
    )


def security_lake_key(source: str, version: str, region: str, account: str, day: date, name: str) -> str:
    """The key Security Lake gives an object (inverse of ``parse_security_lake_key``)."""
    return f"aws/{source}/{version}/region={region}/accountId={account}/eventDay={day:%Y%m%d}/{name}"


def read_ocsf_parquet(data: bytes, key: str) -> OcsfActivity:
    """Read one Security Lake Parquet object (its bytes and key) into activity rows.

    Only the top-level columns the mapping needs are read, which keeps wide VPC-flow
    objects cheap. An unparseable key, an unsupported source or unreadable Parquet raises
    ``OcsfSchemaError`` naming the key.
    """
    info = parse_security_lake_key(key)
    if info is None:
        raise OcsfSchemaError(key, "not a Security Lake object key")
    if not info.supported:
        raise OcsfSchemaError(
            key,
            f"unsupported Security Lake source {info.source!r} version {info.source_version!r}",
        )
    try:
        parquet = pq.ParquetFile(io.BytesIO(data))
        names = parquet.schema_arrow.names
        wanted = [name for name in names if name in OCSF_COLUMNS]
        table = parquet.read(columns=wanted)
    except (pa.ArrowException, OSError, ValueError) as exc:
        raise OcsfSchemaError(key, f"unreadable Parquet: {exc}") from None
    return read_ocsf_activity(
        table, info.source, info.source_version or "", key, key_account=info.account, key_region=info.region
    )


def object_day(key: str, accounts: Iterable[str] = (), regions: Iterable[str] = ()) -> date | None:
    """The partition of an object this project reads, or None (another source, filtered out...)."""
    info = parse_security_lake_key(key)
    if info is None or not info.supported:
        return None
    if (accounts and info.account not in set(accounts)) or (regions and info.region not in set(regions)):
        return None
    return info.day


def _leaf(prefix: str) -> str:
    """``a/b/region=us-east-1/`` -> ``region=us-east-1``."""
    return prefix.rstrip("/").rsplit("/", 1)[-1]


def list_day(store: ObjectStore, day: date, accounts: Iterable[str] = (), regions: Iterable[str] = ()) -> DayListing:
    """Objects of ``day`` for the supported sources and versions (filtered by account/region).

    Folders of other sources (``SH_FINDINGS``, ``S3_DATA``, custom ``ext/`` sources...) or other
    source versions are not walked further - their objects could be numerous and cannot be
    mapped - but each is reported once as a problem, so an operator can see what was skipped.
    """
    wanted_accounts, wanted_regions = set(accounts), set(regions)
    listing = DayListing()
    folders: list[str] = []  # each account's folder of the day, listed together at the end
    for root in (NATIVE, CUSTOM):
        for source_prefix in store.list_prefixes(root):
            source = _leaf(source_prefix)
            if root == CUSTOM or source not in SUPPORTED_SOURCES:
                kind = "custom" if root == CUSTOM else "unsupported"
                listing.problems.append(
                    Problem(
                        store.uri_for(source_prefix),
                        f"{kind} Security Lake source {source!r} (supported: {', '.join(SUPPORTED_SOURCES)}); not read",
                    )
                )
                continue
            for version_prefix in store.list_prefixes(source_prefix):
                version = _leaf(version_prefix)
                if version not in SUPPORTED_VERSIONS:
                    listing.problems.append(
                        Problem(
                            store.uri_for(version_prefix),
                            f"unsupported source version {version!r} of {source} "
                            f"(supported: {', '.join(SUPPORTED_VERSIONS)}); not read",
                        )
                    )
                    continue
                for region_prefix in store.list_prefixes(version_prefix):
                    region = _leaf(region_prefix).removeprefix("region=")
                    if wanted_regions and region not in wanted_regions:
                        continue
                    for account_prefix in store.list_prefixes(region_prefix):
                        account = _leaf(account_prefix).removeprefix("accountId=")
                        if wanted_accounts and account not in wanted_accounts:
                            continue
                        folders.append(f"{account_prefix}eventDay={day:%Y%m%d}/")
    with request_pool(store) as pool:  # a remote lake's folders (sources x regions x accounts) several at once
        for objects in mapped(pool)(lambda folder: list(store.list_objects(folder)), folders):
            listing.objects.extend(objects)
    listing.objects.sort(key=lambda info: info.key)
    return listing


@dataclass
class LakeTally:
    """What the day's Security Lake rows gave, beyond the event table: rows read, and the rows
    that make no pair (ordinary traffic, never quarantined) by reason and by source."""

    rows_read: int = 0
    events: int = 0
    unpaired: Counter = field(default_factory=Counter)
    by_source: dict[str, Counter] = field(default_factory=dict)

    def add(self, activity: OcsfActivity) -> None:
        self.rows_read += activity.rows_read
        self.events += activity.events
        self.unpaired.update(activity.unpaired)
        counts = self.by_source.setdefault(f"{activity.source}/{activity.source_version}", Counter())
        counts.update(
            {
                "rows_read": activity.rows_read,
                "events": activity.events,
                "pair_rows": activity.rows_kept,
                "unpaired_rows": activity.unpaired_count,
            }
        )

    def metadata(self) -> dict[str, Any]:
        """The counts for the asset's metadata (``unpaired_reasons``: why rows made no pair)."""
        return {
            "rows_read": self.rows_read,
            "events_read": self.events,
            "unpaired_rows": int(sum(self.unpaired.values())),
            "unpaired_reasons": dict(sorted(self.unpaired.items())),
            "rows_by_source": {k: dict(v) for k, v in sorted(self.by_source.items())},
        }


def activity_batch(uri: str, activity: OcsfActivity, tally: LakeTally | None = None) -> EventBatch:
    """One object's (or query result's) activity as a batch, its rejected rows counted by reason.

    Network rows that make no pair are not rejections: ``tally`` (when given) counts them.
    """
    if tally is not None:
        tally.add(activity)
    return EventBatch(
        activity.table,
        [Problem(uri, reason, record_index=index) for index, reason in activity.rejected_examples],
        label=f"{activity.source}/{activity.source_version}",
        rejected=dict(activity.rejected),
    )


def read(store: ObjectStore, objects: Iterable[ObjectInfo], tally: LakeTally | None = None) -> Iterator[EventBatch]:
    """Each object's activity; an object that cannot be read is quarantined alone, with its reason.
    A remote lake's objects are fetched ahead of the one being read (``storage.read_ahead``)."""
    objects = list(objects)
    keys, sizes = [info.key for info in objects], [info.size for info in objects]
    with request_pool(store) as pool, closing(read_ahead(store, keys, sizes, pool)) as stored:
        for info, fetched in zip(objects, stored, strict=True):
            uri = store.uri_for(info.key)
            try:
                yield activity_batch(uri, read_ocsf_parquet(fetched(), info.key), tally)
            except OcsfSchemaError as exc:
                yield quarantined(uri, str(exc))
            except Exception as exc:  # any read failure quarantines only this object
                yield quarantined(uri, f"could not be read ({type(exc).__name__}: {exc})")
