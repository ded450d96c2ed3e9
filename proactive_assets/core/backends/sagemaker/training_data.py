"""The ``entity,ip`` CSV the built-in ``ipinsights`` algorithm reads, and the S3 URIs it goes to.

The algorithm takes headerless ``text/csv`` rows with IPv4 only: IPv6 pairs are skipped and
counted (IPv4-mapped IPv6 becomes IPv4 first), and so are rows that are not an entity and an
address. Entities are percent-escaped rather than quoted, identically for training and scoring.
"""

import io
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from proactive_assets.core.ipnet import canonical_ip

CSV_CONTENT_TYPE = "text/csv"

_ESCAPES = {"%": "%25", ",": "%2C", '"': "%22", "\r": "%0D", "\n": "%0A"}
_ESCAPE_RE = re.compile('[%,"\r\n]')


def encode_entity(entity: str) -> str:
    """Percent-escape ``% , " CR LF``, which would break a two-column CSV row.

    IAM role and session names may contain ``,`` and the algorithm's parser is not documented to
    honour RFC 4180 quoting. The escape is injective, and the algorithm only hashes the string.
    """
    return _ESCAPE_RE.sub(lambda m: _ESCAPES[m.group(0)], entity)


@dataclass(frozen=True)
class PreparedPairs:
    """CSV lines for the rows the algorithm accepts, and where they came from."""

    lines: list[str]
    row_index: np.ndarray  # position in the caller's input of each line
    total_rows: int
    skipped_ipv6: int
    skipped_invalid: int
    escaped_entities: int


def prepare_pairs(entities: Sequence[Any], ips: Sequence[Any]) -> PreparedPairs:
    """Turn (entity, ip) columns into ``entity,ip`` lines: IPv4 only, entities escaped."""
    entity_list = list(entities)
    ip_list = list(ips)
    if len(entity_list) != len(ip_list):
        raise ValueError(f"entities ({len(entity_list)}) and ips ({len(ip_list)}) differ in length")
    ip_cache: dict[Any, str | None] = {}
    entity_cache: dict[Any, str | None] = {}
    lines: list[str] = []
    index: list[int] = []
    skipped_ipv6 = skipped_invalid = escaped = 0
    for position, (entity, ip) in enumerate(zip(entity_list, ip_list, strict=True)):
        if ip not in ip_cache:
            ip_cache[ip] = canonical_ip(ip.strip()) if isinstance(ip, str) else None
        canonical = ip_cache[ip]
        if entity not in entity_cache:
            entity_cache[entity] = encode_entity(entity) if isinstance(entity, str) and entity.strip() else None
        encoded = entity_cache[entity]
        if canonical is None or encoded is None:
            skipped_invalid += 1
            continue
        if ":" in canonical:
            skipped_ipv6 += 1
            continue
        if encoded != entity:
            escaped += 1
        lines.append(f"{encoded},{canonical}")
        index.append(position)
    return PreparedPairs(
        lines=lines,
        row_index=np.asarray(index, dtype=np.int64),
        total_rows=len(entity_list),
        skipped_ipv6=skipped_ipv6,
        skipped_invalid=skipped_invalid,
        escaped_entities=escaped,
    )


def parse_s3_uri(uri: str) -> tuple[str, str]:
    """``s3://bucket/key`` -> ``(bucket, key)``; the key may be empty."""
    if not uri or not uri.startswith("s3://"):
        raise ValueError(f"not an s3:// URI: {uri!r}")
    bucket, _, key = uri[5:].partition("/")
    if not bucket:
        raise ValueError(f"no bucket in S3 URI: {uri!r}")
    return bucket, key


def join_s3_uri(prefix: str, *parts: str) -> str:
    """Join S3 URI parts with single slashes."""
    out = prefix.rstrip("/")
    for part in parts:
        out = f"{out}/{part.strip('/')}"
    return out


@dataclass(frozen=True)
class TrainingCsv:
    """Where the training CSV went and what was left out of it."""

    s3_uri: str
    rows: int
    skipped_ipv6: int
    skipped_invalid: int
    escaped_entities: int


def upload_training_csv(
    s3_client: Any,
    s3_uri_prefix: str,
    entities: Sequence[Any],
    ips: Sequence[Any],
    *,
    counts: Sequence[int] | None = None,
    shuffle_seed: int | None = 0,
    filename: str = "train.csv",
) -> TrainingCsv:
    """Write headerless ``entity,ip`` CSV to ``<prefix>/<filename>``.

    ``counts`` repeats each pair (the algorithm expects every access event, repeats included);
    rows are shuffled with ``shuffle_seed`` (None keeps input order) so one entity's events do
    not fill a mini-batch, as the IP Insights tutorial does.
    """
    prepared = prepare_pairs(entities, ips)
    lines = prepared.lines
    order = np.arange(len(lines))
    if counts is not None:
        count_array = np.asarray(list(counts), dtype=np.int64)
        if len(count_array) != prepared.total_rows:
            raise ValueError("counts must have one value per pair")
        order = np.repeat(order, np.clip(count_array[prepared.row_index], 0, None))
    if shuffle_seed is not None:
        np.random.default_rng(shuffle_seed).shuffle(order)
    body = "".join(lines[i] + "\n" for i in order).encode("utf-8")
    uri = join_s3_uri(s3_uri_prefix, filename)
    bucket, key = parse_s3_uri(uri)
    s3_client.upload_fileobj(io.BytesIO(body), bucket, key, ExtraArgs={"ContentType": CSV_CONTENT_TYPE})
    return TrainingCsv(
        s3_uri=uri,
        rows=len(order),
        skipped_ipv6=prepared.skipped_ipv6,
        skipped_invalid=prepared.skipped_invalid,
        escaped_entities=prepared.escaped_entities,
    )
