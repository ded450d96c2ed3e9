"""A local IP Insights model in pure numpy: training, scoring, calibration and artifacts.

It follows Amazon SageMaker IP Insights (see SEEDS_SPEC section 6) closely enough that the
hyperparameters mean the same thing and a SageMaker job can be configured from the same
``IPInsightsParams``; the parts SageMaker does not publish are our own choices, documented here.

Model
    ``dot_product(entity, ip) = entity_vector(entity) . ip_vector(ip)``; higher = more normal.
    *Entities* are hashed (64-bit BLAKE2b of the UTF-8 string) into ``num_entity_vectors``
    buckets, one embedding per bucket; collisions share a vector, as in SageMaker. Only buckets
    seen in training are stored, so a large ``num_entity_vectors`` costs no memory.
    *IP addresses* are encoded by their prefixes: IPv4 ``/8 /16 /24 /32`` and IPv6
    ``/16 /32 /48 /64 /128`` by default. Each (version, prefix length, prefix) has its own
    embedding (prefixes of at most 16 bits are indexed exactly, longer ones are hashed into
    ``num_ip_vectors`` buckets per prefix length) and the address vector is their sum, so a new
    host in a known /24 inherits what was learnt about that /24, /16 and /8. Only prefixes seen in
    training positives get a row of their own; every other prefix uses the *unseen-prefix vector*
    of its (version, prefix length), which is learnt (``unseen_prefix_vectors``): random
    negatives almost always have unseen long prefixes, so these vectors learn what "a network
    nobody here used" looks like and a never-seen network scores clearly low for every entity,
    where a zero vector (the older design, ``unseen_prefix_vectors=False``) put it at dot product
    0, between an identity's networks and its colleagues' networks. ``num_ip_encoder_layers``
    residual tanh layers (``h + tanh(h W + b)``) can follow the sum; 0 is the default because the
    plain sum trained as well or better on the tutorial-style benchmark and is faster.

Training
    Binary cross-entropy on positives (observed pairs, y=1) against random negatives (the
    batch entity paired with a random address: IPv4 with uniform octets, or a random global
    unicast IPv6; ``random_negative_sampling_rate`` per positive, of the positive's IP version
    except an ``other_version_negatives`` share of the other version, so an identity that only
    ever used IPv4 still learns that an unknown IPv6 network is suspicious) and shuffled
    negatives (entities and addresses of the mini-batch re-paired by a random permutation;
    ``shuffled_negative_sampling_rate`` per positive). *Prefix dropout*: a ``prefix_dropout``
    share of the positives is shown with its longest 1..``prefix_dropout_levels`` prefixes
    replaced by the unseen vectors, as a new host (or new /24) of a known network would look;
    otherwise the unseen /32 vector would learn only from random addresses and make every new
    host suspicious. Sparse ("lazy") Adam updates only the rows a mini-batch touches; L2
    ``weight_decay`` applies to those rows. Input rows are aggregated (entity, ip, day) rows with
    an event count: each row weighs ``count ** weight_power`` (default square root, so one
    automated identity calling ten thousand times from one address does not drown everyone
    else, while a pair seen on many days still counts once per day) and one epoch draws as many
    positives as there are rows. Rows are canonicalised (sorted) first, so a seed gives
    identical weights whatever the input order.

Validation and calibration
    A ``validation_fraction`` of the distinct (entity, ip) pairs is held out (never a whole
    entity). ``validation_auc`` is held-out pairs against random-address negatives of the same
    entity and version (SageMaker's ``validation:discriminator_auc``; with few held-out pairs,
    up to 50 negatives each, so that the estimate's noise comes from the pairs alone). A
    logistic (Platt) fit of "is the random negative" on ``dot_product`` over the same data (the
    negatives weighted so the classes count 1:1) maps the dot product to ``insight`` in [0, 1]
    (higher = more suspicious, monotone decreasing in the dot product), so a threshold on
    ``insight`` means the same thing from one model version to the next. Held-out pairs are new
    pairs for the model, so the calibration describes how a *new* normal address looks.

Small training sets
    The pipeline trains on 14 days; a small organisation has a few hundred (entity, ip, day)
    rows there, far fewer than one ``mini_batch_size`` (with the old fixed batch, three epochs
    were three optimizer steps). Besides the unseen-prefix vectors, two things keep such models
    useful. At least ``min_steps`` optimizer steps: the batch shrinks (to no less than 128
    rows), then each epoch passes over the rows several times; data sets with enough steps from
    their own epochs are trained exactly as configured. And, when there are at most
    ``cv_max_pairs`` distinct pairs, ``cv_folds``-fold cross-validation instead of a single
    hold-out: every pair is validated once by a model that did not see it (a validation AUC and
    a calibration from all the pairs rather than from a dozen), then the model that scores is
    trained on every pair, so the pairs used for validation are not new to it the next day.
    That trains ``cv_folds + 1`` models, well under a second at this size. On the demo's
    sample (``python -m benchmarks.sample_detection``, seeds 7, 8, 9) this took the daily
    validation AUC from 0.50-1.0 to 0.91-1.0 and the ground-truth AUC from 0.88-0.97 to
    0.99-1.0, and the injected attacks from insight 0.54-0.78 (below the highest normal pairs)
    to mostly 0.9 and above.

Unknown entities
    An entity not seen in training is scored against the mean of the trained entity vectors
    (a population prior: addresses used by many identities look normal, never-seen networks
    do not) and flagged ``entity_known=False``. Membership is decided on the 64-bit entity hash,
    not the bucket, so an unknown entity whose bucket collides with a known one is still unknown.

Defaults
    Chosen on ``python -m benchmarks.detection`` (tutorial-style data): vector_dim 32 and 3
    epochs detect as well as 64/128 dimensions and 5-10 epochs there (AUC within +-0.003, more
    epochs slightly worse) at half the memory and scoring cost; an encoder layer, extra IPv4
    prefix levels (/12, /20), other negative mixes, learning rates 0.003-0.01 and batch sizes
    1,000-20,000 changed nothing that mattered. ``num_entity_vectors`` is large because unused
    buckets cost nothing locally (collisions merge identities); pass a smaller one to SageMaker
    if its model size matters (SageMaker recommends at least 2x the number of entities). The
    small-data settings were chosen on ``python -m benchmarks.sample_detection`` (seeds 7, 8
    and 9, three model seeds each) while keeping the tutorial-style AUC: unseen-prefix vectors
    alone cost the tutorial data 0.04 AUC (a new /24 of a known network looked like a random
    one) and prefix dropout won it back; dropping up to the two longest prefixes of a quarter
    of the positives (a half: the same; up to three prefixes cost the sample data more than it
    gained on the tutorial's), 20% other-version negatives (50%: no better), 200 steps (100:
    slightly lower recall), 5 folds. A larger weight decay (1e-3 helped the sample a little but
    cost the tutorial data 0.1 AUC) and a learnt per-prefix bias did not help.

Artifacts
    Settings added after the first artifacts were written have a legacy value that reproduces
    the older code (``_LEGACY_VALUES``); an artifact without them loads with those values, and a
    setting at its legacy value stays out of the content version, so such an artifact still
    matches its version and scores exactly as before.

Performance notes
    ``score`` takes the learning set's pyarrow string columns as they are read (plain or
    dictionary-encoded, any chunking; Python sequences are converted to Arrow first) and never
    makes a Python object per pair: entities are dictionary-encoded by pyarrow and hashed once
    per distinct entity; IPv4 addresses are parsed on the Arrow bytes (padded to 16-byte rows by
    ``ascii_rpad``, dots located through a table of 16-bit dot masks, fields read with one
    unaligned load each); IPv6 and anything unusual go one value at a time through ``inet_pton``
    (``ipaddress`` for what it refuses). Each version's leading exactly-indexed levels (IPv4 /8
    and /16, IPv6 /16) are folded into one precomputed "head" row per prefix (bit-for-bit the same sum), so an IPv4
    address costs three row gathers instead of four; the gathers, the sum and the dot product
    run in cache-sized chunks. Dictionary-encoded addresses (pyarrow dictionaries, pandas
    Categoricals) are parsed and looked up once per distinct value; for plain columns that would
    not pay on the tutorial-style data, where 99% of a day's addresses are distinct. What is
    left is memory-bound: three or four random 128-byte rows per pair from tables of tens of MB.
    ``python -m benchmarks.detection`` reports pairs/s from the learning set's columns.
"""

import dataclasses
import functools
import hashlib
import io
import ipaddress
import itertools
import json
import math
import socket
import time
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

ARTIFACT_FORMAT = 1
_ENTITY_PERSON = b"ipi-entity"
_MASK64 = (1 << 64) - 1
_SCORE_CHUNK = 4096
_MIN_VALIDATION_NEGATIVES = 2000
_MAX_NEGATIVES_PER_HELD_OUT = 50
_MIN_AUTO_BATCH = 128
_BLOCK_POSITIVES = 16384  # positives whose random negatives are drawn at once
_FLAT_SEGMENT_SUMS = 16384  # (entries x levels) up to which the plain sort is faster
_SAGEMAKER_NAMES = (
    "num_entity_vectors",
    "vector_dim",
    "epochs",
    "learning_rate",
    "mini_batch_size",
    "num_ip_encoder_layers",
    "random_negative_sampling_rate",
    "shuffled_negative_sampling_rate",
    "weight_decay",
)


@dataclass(frozen=True)
class IPInsightsParams:
    """Hyperparameters; the first nine have SageMaker IP Insights' names and meanings."""

    num_entity_vectors: int = 1_000_000
    vector_dim: int = 32
    epochs: int = 3
    learning_rate: float = 0.01
    mini_batch_size: int = 5000
    num_ip_encoder_layers: int = 0
    random_negative_sampling_rate: int = 1
    shuffled_negative_sampling_rate: int = 1
    weight_decay: float = 1e-5
    # local-only settings
    seed: int = 0
    num_ip_vectors: int = 262_144
    ipv4_prefixes: tuple[int, ...] = (8, 16, 24, 32)
    ipv6_prefixes: tuple[int, ...] = (16, 32, 48, 64, 128)
    validation_fraction: float = 0.1
    weight_power: float = 0.5
    max_validation_pairs: int = 200_000
    # local-only, added for small training sets (see "Small training sets" above); an artifact
    # written before a setting existed loads with its _LEGACY_VALUES entry
    min_steps: int = 200
    unseen_prefix_vectors: bool = True
    prefix_dropout: float = 0.25
    prefix_dropout_levels: int = 2
    other_version_negatives: float = 0.2
    cv_folds: int = 5
    cv_max_pairs: int = 2000

    def __post_init__(self) -> None:
        object.__setattr__(self, "ipv4_prefixes", tuple(int(p) for p in self.ipv4_prefixes))
        object.__setattr__(self, "ipv6_prefixes", tuple(int(p) for p in self.ipv6_prefixes))
        checks = [
            (self.num_entity_vectors >= 1, "num_entity_vectors >= 1"),
            (self.vector_dim >= 1, "vector_dim >= 1"),
            (self.epochs >= 1, "epochs >= 1"),
            (self.learning_rate > 0, "learning_rate > 0"),
            (self.mini_batch_size >= 1, "mini_batch_size >= 1"),
            (self.num_ip_encoder_layers >= 0, "num_ip_encoder_layers >= 0"),
            (self.random_negative_sampling_rate >= 0, "random_negative_sampling_rate >= 0"),
            (self.shuffled_negative_sampling_rate >= 0, "shuffled_negative_sampling_rate >= 0"),
            (
                self.random_negative_sampling_rate + self.shuffled_negative_sampling_rate >= 1,
                "at least one negative per positive",
            ),
            (self.weight_decay >= 0, "weight_decay >= 0"),
            (self.num_ip_vectors >= 1, "num_ip_vectors >= 1"),
            (0 <= self.validation_fraction < 1, "0 <= validation_fraction < 1"),
            (self.weight_power >= 0, "weight_power >= 0"),
            (self.min_steps >= 0, "min_steps >= 0"),
            (0 <= self.prefix_dropout < 1, "0 <= prefix_dropout < 1"),
            (self.prefix_dropout_levels >= 1, "prefix_dropout_levels >= 1"),
            (0 <= self.other_version_negatives <= 1, "0 <= other_version_negatives <= 1"),
            (self.cv_folds >= 0 and self.cv_max_pairs >= 0, "cv_folds, cv_max_pairs >= 0"),
            (_prefixes_ok(self.ipv4_prefixes, 32), "ipv4_prefixes: increasing, in 1..32"),
            (_prefixes_ok(self.ipv6_prefixes, 128), "ipv6_prefixes: increasing, in 1..128"),
        ]
        bad = [text for ok, text in checks if not ok]
        if bad:
            raise ValueError("invalid IPInsightsParams: " + "; ".join(bad))

    def to_sagemaker_hyperparameters(self) -> dict[str, str]:
        """The SageMaker-valid hyperparameters as strings, ready for a training job."""
        return {name: _sm_str(getattr(self, name)) for name in _SAGEMAKER_NAMES}

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable form (tuples become lists)."""
        out = dataclasses.asdict(self)
        out["ipv4_prefixes"] = list(self.ipv4_prefixes)
        out["ipv6_prefixes"] = list(self.ipv6_prefixes)
        return out

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "IPInsightsParams":
        """Inverse of ``to_dict``, for artifacts: unknown keys are ignored, and a setting added
        after the artifact was written takes the value that reproduces the older code
        (``_LEGACY_VALUES``), so old artifacts load and score as they did."""
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{**_LEGACY_VALUES, **{k: v for k, v in values.items() if k in names}})


# Settings added after the first artifacts, with the values that reproduce those artifacts'
# training and scoring. A setting at its legacy value is left out of a model's content version,
# so an artifact written before the setting existed still matches its version when loaded.
_LEGACY_VALUES: dict[str, Any] = {
    "min_steps": 0,
    "unseen_prefix_vectors": False,
    "prefix_dropout": 0.0,
    "prefix_dropout_levels": 1,
    "other_version_negatives": 0.0,
    "cv_folds": 0,
    "cv_max_pairs": 0,
}


def _versioned_params(params: IPInsightsParams) -> dict[str, Any]:
    """``params.to_dict()`` without the later settings that are at their legacy values."""
    return {k: v for k, v in params.to_dict().items() if k not in _LEGACY_VALUES or v != _LEGACY_VALUES[k]}


def _prefixes_ok(prefixes: tuple[int, ...], bits: int) -> bool:
    return (
        len(prefixes) >= 1
        and all(1 <= p <= bits for p in prefixes)
        and all(a < b for a, b in itertools.pairwise(prefixes))
    )


def _sm_str(value: Any) -> str:
    if isinstance(value, float):
        return repr(value)
    return str(value)


@dataclass
class ScoreResult:
    """Scores of (entity, ip) pairs, in input order."""

    dot_product: np.ndarray  # float32; higher = more normal (SageMaker's output)
    insight: np.ndarray  # float32 in [0, 1]; higher = more suspicious (calibrated)
    entity_known: np.ndarray  # bool; False = entity not in training, population prior used


# --------------------------------------------------------------------------------------------
# hashing, pyarrow input and address parsing


def _mix64(x: np.ndarray) -> np.ndarray:
    """splitmix64 finaliser: a stable, platform-independent 64-bit integer hash."""
    x = x.astype(np.uint64, copy=True)
    x ^= x >> np.uint64(30)
    x *= np.uint64(0xBF58476D1CE4E5B9)
    x ^= x >> np.uint64(27)
    x *= np.uint64(0x94D049BB133111EB)
    x ^= x >> np.uint64(31)
    return x


_ENTITY_HASHER = hashlib.blake2b(digest_size=8, person=_ENTITY_PERSON)


def _entity_hash64(values: Sequence[Any]) -> np.ndarray:
    """64-bit BLAKE2b of each entity's UTF-8 text (stable across processes and platforms)."""

    def one(value: Any) -> int:
        hasher = _ENTITY_HASHER.copy()  # a copy of the keyed, empty state: half the cost of a new one
        hasher.update(str(value).encode("utf-8"))
        return int.from_bytes(hasher.digest(), "little")

    return np.fromiter((one(v) for v in values), dtype=np.uint64, count=len(values))


def _string_column(values: Any) -> pa.ChunkedArray | None:
    """``values`` as a pyarrow ChunkedArray when it is a pyarrow string column (``string``,
    ``large_string`` or ``string_view``, plain or dictionary-encoded, Array or ChunkedArray);
    None for any other input."""
    if not isinstance(values, pa.Array | pa.ChunkedArray):
        return None
    value_type = values.type.value_type if pa.types.is_dictionary(values.type) else values.type
    if not (
        pa.types.is_string(value_type) or pa.types.is_large_string(value_type) or pa.types.is_string_view(value_type)
    ):
        return None
    if isinstance(values, pa.Array):
        values = pa.chunked_array([values])
    if pa.types.is_string_view(value_type):  # no offsets buffer: made a plain string column
        is_dictionary = pa.types.is_dictionary(values.type)
        values = values.cast(pa.dictionary(values.type.index_type, pa.string()) if is_dictionary else pa.string())
    return values


def _string_array(values: pa.ChunkedArray) -> pa.Array:
    """The column as one Array (dictionary chunks are unified)."""
    return values.chunk(0) if values.num_chunks == 1 else values.combine_chunks()


def _dictionary_codes(values: pa.DictionaryArray) -> np.ndarray:
    return values.indices.to_numpy(zero_copy_only=False).astype(np.intp, copy=False)


def _normalise_input(values: Any) -> Any:
    """pyarrow arrays become pandas (dictionary arrays become Categoricals); others unchanged."""
    if isinstance(values, pa.Array | pa.ChunkedArray):
        return values.to_pandas()
    return values


def _as_object_array(values: Any) -> np.ndarray:
    """A 1-d object array of the values (strings stay Python strings)."""
    values = _normalise_input(values)
    if isinstance(values, np.ndarray) and values.dtype == object:
        return values.reshape(-1)
    return np.asarray(values, dtype=object).reshape(-1)


def _categorical(values: Any) -> pd.Categorical | None:
    values = _normalise_input(values)
    if isinstance(values, pd.Series) and isinstance(values.dtype, pd.CategoricalDtype):
        return values.array
    if isinstance(values, pd.Categorical):
        return values
    return None


def _factorize(values: Any) -> tuple[np.ndarray, np.ndarray]:
    """(codes intp, uniques object array); categoricals and pyarrow dictionaries reuse their codes,
    other pyarrow strings are dictionary-encoded by pyarrow (no Python string per row)."""
    column = _string_column(values)
    if column is not None:
        if not pa.types.is_dictionary(column.type):
            column = pc.dictionary_encode(column)
        chunks = column.unify_dictionaries().chunks
        dictionary = chunks[0].dictionary if chunks else pa.array([], pa.string())
        if column.null_count or dictionary.null_count:
            raise ValueError("missing values are not valid entities or addresses")
        codes = np.concatenate([_dictionary_codes(c) for c in chunks]) if chunks else np.zeros(0, np.intp)
        return codes, np.array(dictionary.to_pylist(), dtype=object)
    cat = _categorical(values)
    if cat is not None:
        codes = np.asarray(cat.codes, dtype=np.intp)
        if (codes < 0).any():
            raise ValueError("missing values are not valid entities or addresses")
        return codes, np.asarray(cat.categories, dtype=object)
    codes, uniques = pd.factorize(_as_object_array(values), use_na_sentinel=True)
    if len(codes) and codes.min() < 0:
        raise ValueError("missing values are not valid entities or addresses")
    return codes.astype(np.intp, copy=False), np.asarray(uniques, dtype=object)


def _offsets(values: pa.Array) -> np.ndarray:
    """The value offsets of a plain ``string`` or ``large_string`` array, without a copy."""
    dtype = np.dtype(np.int64 if pa.types.is_large_string(values.type) else np.int32)
    return np.frombuffer(values.buffers()[1], dtype=dtype, count=len(values) + 1, offset=values.offset * dtype.itemsize)


@functools.cache
def _dot_table() -> np.ndarray:
    """For every 16-bit mask of '.' positions in a 16-byte row: the positions of its first three
    dots (4 bits each, from bit 0), and bit 12 set when the mask has exactly three."""
    bits = (np.arange(1 << 16, dtype=np.uint32)[:, None] >> np.arange(16, dtype=np.uint32)) & 1
    rank = np.cumsum(bits, axis=1)
    table = np.zeros(1 << 16, dtype=np.uint16)
    for k in range(3):
        table |= np.argmax(rank == k + 1, axis=1).astype(np.uint16) << np.uint16(4 * k)
    table[rank[:, -1] == 3] |= np.uint16(1 << 12)
    return table


# bytes of a right-aligned 3-byte field that belong to a field of width 0..3
_FIELD_KEEP = np.array([0, 0xFF0000, 0xFFFF00, 0xFFFFFF], dtype=np.uint32)


def _parse_ipv4_rows(data: np.ndarray, length: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Dotted-decimal values of n strings laid out in 16-byte rows: ``data`` is their 16 n bytes,
    each string of ``length`` bytes padded with NULs. Returns (uint32 value, ok); ok=False rows
    are not d.d.d.d (fields of 1-3 ASCII digits, at most 255; leading zeros read as decimal) and
    need a closer look.

    No per-string work: a 65,536-entry table turns the 16-bit mask of a row's dots into the dot
    positions; each field is then read with one unaligned 4-byte load per row (the 3 bytes
    before its end, or the row's first bytes shifted for the first field), the bytes before a
    shorter field replaced by '0', checked to be digits (SWAR: bit 7 of a byte of
    ``(x + 0x46) | (x - 0x30)`` is set unless it is '0'-'9') and combined into the octet.
    """
    n = len(length)
    u32 = np.uint32
    # windows[k] = bytes k..k+3 of data (little-endian); a field ending at byte e >= 3 of row r
    # (every field but the first: the first dot is at byte 1 or later) ends window 16 r + e - 3
    windows = np.ndarray((16 * n - 3,), dtype="<u4", buffer=data, strides=(1,))
    row_starts = np.ndarray((n,), dtype="<u4", buffer=data, strides=(16,))
    base = np.arange(-3, 16 * n - 3, 16, dtype=np.intp)
    dots = np.packbits(data == ord("."), bitorder="little").view("<u2")
    info = _dot_table()[dots]
    ok = info >= (1 << 12)
    ends = [(info >> np.uint16(4 * k)) & np.uint16(15) for k in range(3)] + [length.astype(np.uint16)]
    value = np.zeros(n, dtype=u32)
    not_digit = np.zeros(n, dtype=u32)
    start = np.zeros(n, dtype=np.uint16)
    for field, end in enumerate(ends):
        width = end - start  # wraps for rows without three dots, which are not ok anyway
        ok &= (width >= 1) & (width <= 3)
        if field == 0:
            x = row_starts << (u32(24) - u32(8) * np.minimum(width, 3)).astype(u32)
        else:
            x = windows[base + end]
        x ^= u32(0x303030)
        x &= np.take(_FIELD_KEEP, width, mode="clip")
        x ^= u32(0x303030)  # the field's bytes right-aligned in bytes 0-2, '0' before them
        not_digit |= (x + u32(0x464646)) | (x - u32(0x303030))
        x &= u32(0x0F0F0F)
        octet = (x & u32(0xFF)) * u32(100) + ((x >> u32(8)) & u32(0xFF)) * u32(10) + (x >> u32(16))
        ok &= octet <= 255
        value <<= u32(8)
        value |= octet & u32(0xFF)
        start = end + np.uint16(1)
    ok &= (not_digit & u32(0x808080)) == 0
    return value, ok


def _parse_ipv4_arrow(values: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """(uint32 value, ok) of a plain pyarrow string array, parsed on its bytes; see ``_parse_ipv4_rows``.

    Strings of 7-15 bytes are padded to 16 by pyarrow (``ascii_rpad``), so their bytes become an
    (n, 16) array without a copy per string; the others (IPv6, nulls, junk) are not ok.
    """
    n = len(values)
    value = np.zeros(n, dtype=np.uint32)
    ok = np.zeros(n, dtype=bool)
    if n == 0:
        return value, ok
    length = np.diff(_offsets(values))
    candidate = (length >= 7) & (length <= 15)
    if values.null_count:
        candidate &= values.is_valid().to_numpy(zero_copy_only=False)
    every = bool(candidate.all())
    if not every and not candidate.any():
        return value, ok
    subset = values if every else values.filter(pa.array(candidate))
    padded = pc.ascii_rpad(subset, 16, "\0")
    offsets = _offsets(padded)
    m = len(padded)
    if offsets[-1] - offsets[0] != 16 * m:  # cannot happen (padding never shortens): stay safe
        return value, ok
    data = np.frombuffer(padded.buffers()[2], dtype=np.uint8, count=16 * m, offset=int(offsets[0]))
    parsed, parsed_ok = _parse_ipv4_rows(data, length if every else length[candidate])
    if every:
        return parsed, parsed_ok
    value[candidate] = parsed
    ok[candidate] = parsed_ok
    return value, ok


def _parse_one(text: Any) -> tuple[bool, int] | None:
    """(is_v6, 128-bit int) of one address string, or None; leading zeros read as decimal."""
    if not isinstance(text, str):
        return None
    if ":" in text:
        try:
            return True, int(ipaddress.IPv6Address(text))
        except ValueError:
            return None
    parts = text.split(".")
    if len(parts) != 4 or not all(p.isascii() and p.isdigit() and len(p) <= 3 and int(p) <= 255 for p in parts):
        return None
    return False, (int(parts[0]) << 24) | (int(parts[1]) << 16) | (int(parts[2]) << 8) | int(parts[3])


_inet_pton = socket.inet_pton


def _pack_one(text: Any) -> tuple[bool, bytes] | None:
    """(is_v6, 16 big-endian bytes) of one address, or None. IPv6 goes through the C library's
    inet_pton; whatever it refuses (a zone id, IPv4, junk) gets ``_parse_one``'s answer."""
    if isinstance(text, str) and ":" in text:
        try:
            return True, _inet_pton(socket.AF_INET6, text)
        except (OSError, ValueError):
            pass
    parsed = _parse_one(text)
    return None if parsed is None else (parsed[0], parsed[1].to_bytes(16, "big"))


def _parse_ips(values: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Parse canonical address strings into (is_v6, hi, lo): the 128 bits as two uint64 halves.

    ``values``: a pyarrow string column, or a sequence of strings (converted to one first).
    IPv4 is parsed vectorised on the Arrow bytes; IPv6 and anything unusual one value at a
    time. Raises ValueError listing a few values that are not addresses: callers must pass
    addresses (``ipnet.classify_source`` separates service names and ``AWS Internal`` beforehand).
    """
    column = _string_column(values)
    arrow = _string_array(column) if column is not None else None
    objects = None
    if arrow is None:
        objects = _as_object_array(values)
        try:
            arrow = pa.array(objects, type=pa.string())
        except (pa.ArrowInvalid, pa.ArrowTypeError):  # not all strings: the per-value path says which
            arrow = None
    if arrow is not None and pa.types.is_dictionary(arrow.type):
        arrow = arrow.dictionary_decode()
    n = len(arrow) if arrow is not None else len(objects)
    is6 = np.zeros(n, dtype=bool)
    hi = np.zeros(n, dtype=np.uint64)
    if arrow is not None:
        value, ok = _parse_ipv4_arrow(arrow)
        lo = value.astype(np.uint64)
        rest = np.flatnonzero(~ok)
        rest_values = arrow.take(pa.array(rest)).to_pylist() if len(rest) else []
    else:
        lo = np.zeros(n, dtype=np.uint64)
        rest = np.arange(n)
        rest_values = objects.tolist()
    if len(rest):
        try:  # usually all IPv6: one inet_pton each (more than 10x faster than ipaddress)
            blobs, v6 = [_inet_pton(socket.AF_INET6, value) for value in rest_values], True
        except (OSError, ValueError, TypeError):
            packed = [_pack_one(value) for value in rest_values]
            bad = [value for value, p in zip(rest_values, packed, strict=True) if p is None]
            if bad:
                raise ValueError(f"{len(bad)} values are not IP addresses, e.g. {[str(v) for v in bad[:5]]}") from None
            blobs, v6 = [p[1] for p in packed], [p[0] for p in packed]
        halves = np.frombuffer(b"".join(blobs), dtype=">u8").reshape(-1, 2)
        is6[rest] = v6
        hi[rest] = halves[:, 0]
        lo[rest] = halves[:, 1]
    return is6, hi, lo


class _Layout:
    """Bucket id space: one section per (IP version, prefix length)."""

    def __init__(self, params: IPInsightsParams) -> None:
        self.levels = max(len(params.ipv4_prefixes), len(params.ipv6_prefixes))
        self.sections: list[tuple[int, int, int, int, bool]] = []  # version, bits, offset, size, exact
        offset = 0
        for version, prefixes in ((4, params.ipv4_prefixes), (6, params.ipv6_prefixes)):
            for bits in prefixes:
                exact = bits <= 16
                size = (1 << bits) if exact else params.num_ip_vectors
                self.sections.append((version, bits, offset, size, exact))
                offset += size
        self.total = offset
        self.v4 = [s for s in self.sections if s[0] == 4]
        self.v6 = [s for s in self.sections if s[0] == 6]
        self.n_sections = len(self.sections)
        # Scoring folds each version's leading exactly-indexed levels (IPv4 /8 and /16, IPv6 /16 by
        # default) into one "head" row per prefix of the longest of them: head_table below.
        self.head_levels = {v: sum(1 for s in secs if s[4]) for v, secs in ((4, self.v4), (6, self.v6))}
        self.head_bits = {
            v: secs[self.head_levels[v] - 1][1] if self.head_levels[v] else 0
            for v, secs in ((4, self.v4), (6, self.v6))
        }

    def width(self, is6: np.ndarray) -> int:
        """Levels needed for the versions present (IPv4-only input skips IPv6's extra level)."""
        return max(len(self.v4) if (~is6).any() else 0, len(self.v6) if is6.any() else 0, 1)

    def _level_buckets(self, is6: np.ndarray, hi: np.ndarray, lo: np.ndarray, skip_head: bool = False):
        """Yield (level, index, global bucket ids) for each version present and prefix level;
        with ``skip_head`` without the head levels, the next level being level 0."""
        for mask, sections in ((~is6, self.v4), (is6, self.v6)):
            if not mask.any():
                continue
            idx = slice(None) if mask.all() else np.flatnonzero(mask)
            h, lw = hi[idx], lo[idx]
            first = self.head_levels[sections[0][0]] if skip_head else 0
            for level, (version, bits, offset, size, exact) in enumerate(sections[first:]):
                salt = np.uint64((version * 1000 + bits) * 0x9E3779B97F4A7C15 & _MASK64)
                if version == 4:
                    prefix = lw >> np.uint64(32 - bits)
                elif bits <= 64:
                    prefix = h >> np.uint64(64 - bits)
                else:
                    low = lw >> np.uint64(128 - bits) if bits < 128 else lw
                    prefix = _mix64(h ^ salt) ^ low
                if exact:
                    local = prefix.astype(np.int64)
                elif size & (size - 1) == 0:
                    local = (_mix64(prefix ^ salt) & np.uint64(size - 1)).astype(np.int64)
                else:
                    local = (_mix64(prefix ^ salt) % np.uint64(size)).astype(np.int64)
                local += offset
                yield level, idx, local

    def buckets(self, is6: np.ndarray, hi: np.ndarray, lo: np.ndarray) -> np.ndarray:
        """(levels, n) int64 global bucket ids; -1 pads versions with fewer prefixes."""
        out = np.full((self.width(is6), len(lo)), -1, dtype=np.int64)
        for level, idx, bucket in self._level_buckets(is6, hi, lo):
            out[level, idx] = bucket
        return out

    def rows(
        self, is6: np.ndarray, hi: np.ndarray, lo: np.ndarray, bucket_to_row: np.ndarray, width: int | None = None
    ) -> np.ndarray:
        """(levels, n) int32 embedding rows as ``bucket_to_row`` maps them; 0 (the zero row) pads."""
        out = np.zeros((width or self.width(is6), len(lo)), dtype=np.int32)
        for level, idx, bucket in self._level_buckets(is6, hi, lo):
            out[level, idx] = bucket_to_row[bucket]
        return out

    def head_table(self, ip_emb: np.ndarray, bucket_to_row: np.ndarray) -> np.ndarray:
        """Sums of the head levels' embeddings for every head prefix: IPv4's 2**head_bits[4] rows,
        then IPv6's (one zero row for a version without exact levels).

        Each sum is accumulated in level order in float32, as ``_pair_dots`` adds levels, so a
        head row plus the remaining levels is bit-for-bit the sum over all the levels.
        """
        parts = []
        for sections in (self.v4, self.v6):
            version = sections[0][0]
            bits = self.head_bits[version]
            prefixes = np.arange(1 << bits, dtype=np.int64)
            table = np.zeros((1 << bits, ip_emb.shape[1]), dtype=np.float32)
            for level, (_, level_bits, offset, _, _) in enumerate(sections[: self.head_levels[version]]):
                rows = ip_emb[bucket_to_row[offset + (prefixes >> (bits - level_bits))]]
                if level == 0:
                    table = rows
                else:
                    table += rows
            parts.append(table)
        return np.concatenate(parts)

    def head_rows(
        self, is6: np.ndarray, hi: np.ndarray, lo: np.ndarray, bucket_to_row: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """(row of ``head_table`` per address, (levels, n) int32 rows of the levels after the head)."""
        head = np.zeros(len(lo), dtype=np.intp)
        for mask, version, word, word_bits, first in ((~is6, 4, lo, 32, 0), (is6, 6, hi, 64, 1 << self.head_bits[4])):
            if not mask.any():
                continue
            bits = self.head_bits[version]
            part = slice(None) if mask.all() else mask
            head[part] = first + (word[part] >> np.uint64(word_bits - bits)).astype(np.intp) if bits else first
        width = max(
            len(self.v4) - self.head_levels[4] if (~is6).any() else 0,
            len(self.v6) - self.head_levels[6] if is6.any() else 0,
        )
        rows = np.zeros((width, len(lo)), dtype=np.int32)
        for level, idx, bucket in self._level_buckets(is6, hi, lo, skip_head=True):
            rows[level, idx] = bucket_to_row[bucket]
        return head, rows


# --------------------------------------------------------------------------------------------
# metrics and calibration


def roc_auc(pos_scores: Any, neg_scores: Any) -> float:
    """Rank-based ROC AUC = P(pos > neg) + P(tie) / 2 (Mann-Whitney); NaN if a side is empty."""
    pos = np.asarray(pos_scores, dtype=np.float64).ravel()
    neg = np.asarray(neg_scores, dtype=np.float64).ravel()
    if len(pos) == 0 or len(neg) == 0:
        return float("nan")
    ranks = _average_ranks(np.concatenate([pos, neg]))
    rank_sum = ranks[: len(pos)].sum()
    return float((rank_sum - len(pos) * (len(pos) + 1) / 2) / (len(pos) * len(neg)))


def _average_ranks(x: np.ndarray) -> np.ndarray:
    order = np.argsort(x, kind="mergesort")
    xs = x[order]
    boundaries = np.flatnonzero(np.r_[True, xs[1:] != xs[:-1], True])
    starts, ends = boundaries[:-1], boundaries[1:]
    avg = (starts + ends + 1) / 2.0  # 1-based average rank of each tie group
    ranks = np.empty(len(x), dtype=np.float64)
    ranks[order] = np.repeat(avg, ends - starts)
    return ranks


def roc_points(normal_dot: np.ndarray, attack_dot: np.ndarray, n_points: int = 50) -> dict:
    """ROC of flagging low dot products (attacks = positives), downsampled to ~n_points."""
    normal = np.sort(np.asarray(normal_dot, dtype=np.float64))
    attack = np.sort(np.asarray(attack_dot, dtype=np.float64))
    thresholds = np.unique(np.concatenate([normal, attack]))
    if len(thresholds) > n_points:
        thresholds = np.unique(np.quantile(thresholds, np.linspace(0, 1, n_points)))
    # flag when dot <= threshold
    fpr = np.searchsorted(normal, thresholds, side="right") / max(len(normal), 1)
    tpr = np.searchsorted(attack, thresholds, side="right") / max(len(attack), 1)
    fpr = np.r_[0.0, fpr, 1.0]
    tpr = np.r_[0.0, tpr, 1.0]
    dots = np.r_[-np.inf, thresholds, np.inf]
    return {
        "fpr": [round(float(v), 6) for v in fpr],
        "tpr": [round(float(v), 6) for v in tpr],
        "dot_product_threshold": [None if not np.isfinite(v) else float(v) for v in dots],
    }


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * z))


def fit_platt(dot: np.ndarray, is_suspicious: np.ndarray, weights: np.ndarray | None = None) -> tuple[float, float]:
    """Logistic fit P(suspicious | dot) = sigmoid(slope * dot + intercept), slope < 0.

    Platt's smoothed targets and a few Newton steps; if the data do not support a decreasing
    map (an untrained model), falls back to ``sigmoid(-dot)``.
    """
    x = np.asarray(dot, dtype=np.float64)
    y = np.asarray(is_suspicious, dtype=bool)
    sw = np.ones(len(x)) if weights is None else np.asarray(weights, dtype=np.float64)
    n_pos, n_neg = float(sw[y].sum()), float(sw[~y].sum())
    if n_pos <= 0 or n_neg <= 0:
        return -1.0, 0.0
    t = np.where(y, (n_pos + 1.0) / (n_pos + 2.0), 1.0 / (n_neg + 2.0))
    scale = float(np.std(x)) or 1.0
    xs = x / scale
    a, b = -1.0, 0.0
    for _ in range(100):
        p = _sigmoid(a * xs + b)
        w = sw * np.maximum(p * (1 - p), 1e-12)
        r = sw * (p - t)
        ga, gb = float((r * xs).sum()), float(r.sum())
        haa = float((w * xs * xs).sum()) + 1e-9
        hab = float((w * xs).sum())
        hbb = float(w.sum()) + 1e-9
        det = haa * hbb - hab * hab
        if det <= 0:
            break
        da = (hbb * ga - hab * gb) / det
        db = (haa * gb - hab * ga) / det
        step = 1.0
        loss0 = _logloss(a, b, xs, t, sw)
        while step > 1e-6 and _logloss(a - step * da, b - step * db, xs, t, sw) > loss0:
            step /= 2
        a, b = a - step * da, b - step * db
        if abs(step * da) < 1e-10 and abs(step * db) < 1e-10:
            break
    slope = a / scale
    if not math.isfinite(slope) or not math.isfinite(b) or slope >= -1e-6:
        return -1.0, 0.0
    return float(slope), float(b)


def _logloss(a: float, b: float, x: np.ndarray, t: np.ndarray, w: np.ndarray) -> float:
    z = a * x + b
    return float((w * (np.logaddexp(0, z) - t * z)).sum())


# --------------------------------------------------------------------------------------------
# the model


class IPInsightsModel:
    """A trained model: embeddings, calibration and metadata. Build with ``train_ip_insights``."""

    def __init__(
        self,
        params: IPInsightsParams,
        entity_hashes: np.ndarray,
        entity_buckets: np.ndarray,
        entity_emb: np.ndarray,
        ip_buckets: np.ndarray,
        ip_emb: np.ndarray,
        enc_w: np.ndarray,
        enc_b: np.ndarray,
        calibration: tuple[float, float],
        metadata: dict[str, Any] | None = None,
    ) -> None:
        self.params = params
        self.entity_hashes = np.ascontiguousarray(entity_hashes, dtype=np.uint64)
        self.entity_buckets = np.ascontiguousarray(entity_buckets, dtype=np.int64)
        self.entity_emb = np.ascontiguousarray(entity_emb, dtype=np.float32)
        self.ip_buckets = np.ascontiguousarray(ip_buckets, dtype=np.int64)
        self.ip_emb = np.ascontiguousarray(ip_emb, dtype=np.float32)
        self.enc_w = np.ascontiguousarray(enc_w, dtype=np.float32)
        self.enc_b = np.ascontiguousarray(enc_b, dtype=np.float32)
        self.calibration = (float(calibration[0]), float(calibration[1]))
        self._layout = _Layout(params)
        expected_rows = 1 + len(self.ip_buckets) + (self._layout.n_sections if params.unseen_prefix_vectors else 0)
        if len(self.ip_emb) != expected_rows:
            raise ValueError(f"ip_emb has {len(self.ip_emb)} rows, expected {expected_rows} for these parameters")
        self._bucket_to_row = _bucket_map(self._layout, self.ip_buckets, params.unseen_prefix_vectors)
        if len(self.entity_emb):
            self.entity_mean = self.entity_emb.mean(axis=0, dtype=np.float64).astype(np.float32)
        else:
            self.entity_mean = np.zeros(params.vector_dim, dtype=np.float32)
        self.version = self._content_version()
        self.metadata: dict[str, Any] = dict(metadata or {})
        self.metadata["version"] = self.version
        self.metadata.setdefault("backend", "local")
        self.metadata["hyperparameters"] = params.to_dict()
        self.metadata["calibration"] = {
            **self.metadata.get("calibration", {}),
            "method": "platt",
            "slope": self.calibration[0],
            "intercept": self.calibration[1],
        }

    # ---- identity
    def _content_version(self) -> str:
        digest = hashlib.sha256()
        digest.update(json.dumps(_versioned_params(self.params), sort_keys=True).encode())
        digest.update(json.dumps(list(self.calibration)).encode())
        for arr in self._arrays().values():
            digest.update(str(arr.dtype).encode() + str(arr.shape).encode())
            digest.update(np.ascontiguousarray(arr).tobytes())
        return "ipi-" + digest.hexdigest()[:16]

    def _arrays(self) -> dict[str, np.ndarray]:
        return {
            "entity_hashes": self.entity_hashes,
            "entity_buckets": self.entity_buckets,
            "entity_emb": self.entity_emb,
            "ip_buckets": self.ip_buckets,
            "ip_emb": self.ip_emb,
            "enc_w": self.enc_w,
            "enc_b": self.enc_b,
        }

    # ---- scoring
    def score(self, entities: Any, ips: Any) -> ScoreResult:
        """Dot products, calibrated insight and entity_known for pairs, in input order.

        ``entities`` and ``ips``: pyarrow string columns (the fast path, see "Performance
        notes"), or sequences, numpy arrays, pandas Series or Categoricals of strings.
        """
        dot, known = self._dot_and_known(entities, ips)
        return ScoreResult(dot_product=dot, insight=self.insight(dot), entity_known=known)

    def dot_product(self, entities: Any, ips: Any) -> np.ndarray:
        """Raw IP Insights dot products (float32; higher = more normal)."""
        return self._dot_and_known(entities, ips)[0]

    def insight(self, dot: Any) -> np.ndarray:
        """Calibrated suspicion in [0, 1]: sigmoid(slope * dot + intercept), slope < 0."""
        slope, intercept = self.calibration
        z = np.multiply(np.asarray(dot, dtype=np.float64), slope)
        z += intercept
        # _sigmoid's operations in place: the same values without three temporaries
        z *= 0.5
        np.tanh(z, out=z)
        z += 1.0
        z *= 0.5
        return z.astype(np.float32)

    def entity_known(self, entities: Any) -> np.ndarray:
        """Whether each entity was in the training data."""
        codes, uniques = _factorize(entities)
        return self._known_mask(_entity_hash64(uniques))[codes]

    def _known_mask(self, hashes: np.ndarray) -> np.ndarray:
        if len(self.entity_hashes) == 0:
            return np.zeros(len(hashes), dtype=bool)
        pos = np.searchsorted(self.entity_hashes, hashes)
        pos = np.minimum(pos, len(self.entity_hashes) - 1)
        return self.entity_hashes[pos] == hashes

    def _entity_table(self, uniques: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Vectors for unique entities (mean vector for unknown ones) and their known flags."""
        hashes = _entity_hash64(uniques)
        known = self._known_mask(hashes)
        table = np.empty((len(uniques), self.params.vector_dim), dtype=np.float32)
        table[:] = self.entity_mean
        if known.any():
            buckets = (hashes[known] % np.uint64(self.params.num_entity_vectors)).astype(np.int64)
            rows = np.searchsorted(self.entity_buckets, buckets)
            table[known] = self.entity_emb[rows]
        return table, known

    def _ip_rows(self, is6: np.ndarray, hi: np.ndarray, lo: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(row of ``_head_table``, (levels, n) rows into ip_emb of the levels after the head) per
        address; unseen prefixes get their section's unseen row (or 0, legacy)."""
        return self._layout.head_rows(is6, hi, lo, self._bucket_to_row)

    @functools.cached_property
    def _head_table(self) -> np.ndarray:
        """The head levels' summed embeddings per head prefix (``_Layout.head_table``), made on
        first use: 2 x 65,536 rows with the default prefixes, 16 MB at vector_dim 32."""
        return self._layout.head_table(self.ip_emb, self._bucket_to_row)

    def _pair_rows(self, ips: Any) -> tuple[np.ndarray, np.ndarray]:
        """``_ip_rows`` of each address; dictionary-encoded input (pyarrow dictionaries, pandas
        Categoricals) parses and looks up each distinct value once."""
        column = _string_column(ips)
        if column is not None:
            arrow = _string_array(column)
            if pa.types.is_dictionary(arrow.type) and not arrow.null_count:
                codes = _dictionary_codes(arrow)
                head, rows = self._ip_rows(*_parse_ips(arrow.dictionary))
                return head[codes], np.ascontiguousarray(rows[:, codes])
            return self._ip_rows(*_parse_ips(arrow))
        if _categorical(ips) is not None:
            codes, categories = _factorize(ips)
            head, rows = self._ip_rows(*_parse_ips(categories))
            return head[codes], np.ascontiguousarray(rows[:, codes])
        return self._ip_rows(*_parse_ips(ips))

    def ip_vectors(self, ips: Any) -> np.ndarray:
        """IP embeddings (after the encoder) for addresses, in input order."""
        head, rows = self._pair_rows(ips)
        out = np.empty((len(head), self.params.vector_dim), dtype=np.float32)
        for s in range(0, len(head), _SCORE_CHUNK):
            m = min(_SCORE_CHUNK, len(head) - s)
            out[s : s + m] = _sum_levels(
                self.ip_emb, rows[:, s : s + m], self.enc_w, self.enc_b, (self._head_table, head[s : s + m])
            )
        return out

    def _dot_and_known(self, entities: Any, ips: Any) -> tuple[np.ndarray, np.ndarray]:
        ecodes, euniques = _factorize(entities)
        head, rows = self._pair_rows(ips)
        if len(ecodes) != len(head):
            raise ValueError(f"{len(ecodes)} entities but {len(head)} addresses")
        etable, known = self._entity_table(euniques)
        dots = _pair_dots(etable, ecodes, self.ip_emb, rows, self.enc_w, self.enc_b, (self._head_table, head))
        return dots, known[ecodes]

    # ---- persistence
    def to_bytes(self) -> bytes:
        """A compressed .npz with the weights and the JSON metadata (no pickle).

        Byte-for-byte reproducible: the same model always gives the same bytes (fixed zip
        timestamps, sorted JSON), so re-uploading an unchanged model is a no-op.
        """
        meta = json.dumps(
            {"format": ARTIFACT_FORMAT, "calibration": list(self.calibration), "metadata": self.metadata},
            sort_keys=True,
        ).encode("utf-8")
        arrays = {"metadata_json": np.frombuffer(meta, dtype=np.uint8), **self._arrays()}
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as archive:
            for name, arr in arrays.items():
                info = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
                info.compress_type = zipfile.ZIP_DEFLATED
                with archive.open(info, "w", force_zip64=True) as fh:
                    np.lib.format.write_array(fh, np.ascontiguousarray(arr), allow_pickle=False)
        return buf.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> "IPInsightsModel":
        """Load an artifact written by ``to_bytes``; checks the content version."""
        with np.load(io.BytesIO(data), allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
        meta = json.loads(arrays.pop("metadata_json").tobytes().decode("utf-8"))
        if meta.get("format") != ARTIFACT_FORMAT:
            raise ValueError(f"unsupported IP Insights artifact format {meta.get('format')!r}")
        metadata = meta["metadata"]
        params = IPInsightsParams.from_dict(metadata["hyperparameters"])
        model = cls(params=params, calibration=tuple(meta["calibration"]), metadata=metadata, **arrays)
        if metadata.get("version") not in (None, model.version):
            raise ValueError(f"artifact content does not match its version {metadata.get('version')!r}")
        return model

    def __repr__(self) -> str:
        return (
            f"IPInsightsModel(version={self.version!r}, entities={len(self.entity_hashes)}, "
            f"ip_rows={len(self.ip_buckets)}, dim={self.params.vector_dim})"
        )


def _bucket_map(layout: "_Layout", ip_buckets: np.ndarray, unseen_rows: bool) -> np.ndarray:
    """Global bucket id -> ip_emb row.

    Row 0 is the zero row (padding: IPv4 has fewer levels than IPv6). With ``unseen_rows`` rows
    1..S are the unseen-prefix rows of the S (version, prefix length) sections, in the layout's
    order, every bucket not trained maps to its section's row, and the trained buckets follow;
    without (legacy artifacts) untrained buckets map to the zero row and trained ones start at 1.
    """
    if unseen_rows:
        sizes = [size for _, _, _, size, _ in layout.sections]
        mapping = np.repeat(np.arange(1, layout.n_sections + 1, dtype=np.int32), sizes)
        first = layout.n_sections + 1
    else:
        mapping = np.zeros(layout.total, dtype=np.int32)
        first = 1
    mapping[ip_buckets] = np.arange(first, first + len(ip_buckets), dtype=np.int32)
    return mapping


def _sum_levels(
    ip_emb: np.ndarray,
    levels: np.ndarray,
    enc_w: np.ndarray,
    enc_b: np.ndarray,
    head: tuple[np.ndarray, np.ndarray] | None = None,
) -> np.ndarray:
    """Sum of the prefix embeddings (levels: (L, m) rows, after ``head``'s rows if given: (table,
    row per address)), then the encoder layers."""
    m = levels.shape[1] if head is None else len(head[1])
    v = np.empty((m, ip_emb.shape[1]), dtype=np.float32)
    _gather_sum(v, np.empty_like(v), ip_emb, levels, slice(None), head)
    if len(enc_w):
        v = _encode_forward(v, enc_w, enc_b)[0]
    return v


def _gather_sum(
    v: np.ndarray,
    tmp: np.ndarray,
    ip_emb: np.ndarray,
    levels: np.ndarray,
    part: slice,
    head: tuple[np.ndarray, np.ndarray] | None,
) -> None:
    """v = the sum of the rows ``levels[:, part]`` of ip_emb (after ``head``'s rows), in level order.

    The gathers use ``mode="clip"`` (the rows are valid by construction): numpy's default
    ``mode="raise"`` gathers into a temporary and copies that to ``out``, up to twice as slow.
    """
    if head is None:
        np.take(ip_emb, levels[0, part], axis=0, out=v, mode="clip")
        first = 1
    else:
        np.take(head[0], head[1][part], axis=0, out=v, mode="clip")
        first = 0
    for k in range(first, len(levels)):
        np.take(ip_emb, levels[k, part], axis=0, out=tmp, mode="clip")
        v += tmp


def _pair_dots(
    etable: np.ndarray,
    ecodes: np.ndarray,
    ip_emb: np.ndarray,
    levels: np.ndarray,
    enc_w: np.ndarray,
    enc_b: np.ndarray,
    head: tuple[np.ndarray, np.ndarray] | None = None,
) -> np.ndarray:
    """out[i] = etable[ecodes[i]] . ip_vector(i), in cache-sized chunks; ip_vector(i) is the sum
    of ``head[0][head[1][i]]`` (if given) and of ip_emb's rows ``levels[:, i]``, then the encoder.

    No per-address table is materialised: each chunk gathers its prefix rows, sums them and
    takes the row-wise dot product while the rows are still in cache.
    """
    n = len(ecodes)
    out = np.empty(n, dtype=np.float32)
    levels = np.ascontiguousarray(levels)
    dim = etable.shape[1]
    ubuf = np.empty((_SCORE_CHUNK, dim), dtype=np.float32)
    vbuf = np.empty((_SCORE_CHUNK, dim), dtype=np.float32)
    tbuf = np.empty((_SCORE_CHUNK, dim), dtype=np.float32)
    for s in range(0, n, _SCORE_CHUNK):
        m = min(_SCORE_CHUNK, n - s)
        u, v = ubuf[:m], vbuf[:m]
        _gather_sum(v, tbuf[:m], ip_emb, levels, slice(s, s + m), head)
        if len(enc_w):
            v = _encode_forward(v, enc_w, enc_b)[0]
        np.take(etable, ecodes[s : s + m], axis=0, out=u, mode="clip")
        np.einsum("ij,ij->i", u, v, out=out[s : s + m])
    return out


def _encode_forward(
    h0: np.ndarray, enc_w: np.ndarray, enc_b: np.ndarray
) -> tuple[np.ndarray, list[tuple[np.ndarray, np.ndarray]]]:
    """Residual tanh layers h + tanh(h W + b); returns output and (input, tanh) per layer."""
    h = h0
    cache = []
    for w, b in zip(enc_w, enc_b, strict=True):
        t = np.tanh(h @ w + b)
        cache.append((h, t))
        h = h + t
    return h, cache


# --------------------------------------------------------------------------------------------
# training


class _SparseAdam:
    """Lazy Adam: moments and parameters change only for the rows a batch touches."""

    def __init__(self, param: np.ndarray, lr: float, weight_decay: float) -> None:
        self.param = param
        self.m = np.zeros_like(param)
        self.v = np.zeros_like(param)
        self.lr = lr
        self.wd = weight_decay
        self.t = 0

    def step_rows(self, rows: np.ndarray, grad: np.ndarray) -> None:
        """One step for distinct ``rows`` with their summed gradient (``grad`` is overwritten)."""
        self.t += 1
        p = self.param[rows]
        if self.wd:
            grad += self.wd * p
        m = self.m[rows]
        m *= 0.9
        m += 0.1 * grad
        v = self.v[rows]
        v *= 0.999
        grad *= grad
        grad *= 0.001
        v += grad
        self.m[rows] = m
        self.v[rows] = v
        bc1 = 1 - 0.9**self.t
        bc2 = 1 - 0.999**self.t
        v *= 1.0 / bc2
        np.sqrt(v, out=v)
        v += 1e-8
        m *= self.lr / bc1
        m /= v
        p -= m
        self.param[rows] = p

    def step_dense(self, grad: np.ndarray) -> None:
        self.t += 1
        if self.wd:
            grad = grad + self.wd * self.param
        self.m *= 0.9
        self.m += 0.1 * grad
        self.v *= 0.999
        self.v += 0.001 * (grad * grad)
        bc1 = 1 - 0.9**self.t
        bc2 = 1 - 0.999**self.t
        self.param -= (self.lr / bc1) * self.m / (np.sqrt(self.v / bc2) + 1e-8)


def _segment_sums(rows: np.ndarray, grads: np.ndarray, skip_zero: bool) -> tuple[np.ndarray, np.ndarray]:
    """Sum the gradients that hit the same parameter row: (distinct rows, float32 sums).

    ``rows`` is (n, levels) and every level of entry i receives ``grads[i]``. One lexicographic
    sort groups every level at once (a longer prefix sorts inside its shorter ones), one
    float64 cumulative sum gives all the group sums, and the rare rows that still repeat (hash
    collisions between unrelated prefixes) are merged at the end. Much faster than
    ``np.add.at`` or ``reduceat`` over many small groups; small batches (the small-data
    schedule) go to ``_segment_sums_flat``, whose fewer numpy calls win there.
    """
    n, levels = rows.shape
    if n * levels <= _FLAT_SEGMENT_SUMS:
        return _segment_sums_flat(rows, grads, skip_zero)
    order = np.lexsort(rows.T[::-1]) if levels > 1 else np.argsort(rows[:, 0], kind="stable")
    srows = rows[order]
    csum = np.zeros((n + 1, grads.shape[1]), dtype=np.float64)
    np.cumsum(grads[order], axis=0, dtype=np.float64, out=csum[1:])
    out_rows, out_sums = [], []
    for k in range(levels):
        r = srows[:, k]
        starts = np.flatnonzero(np.r_[True, r[1:] != r[:-1]])
        ends = np.r_[starts[1:], n]
        if skip_zero:
            keep = r[starts] > 0
            starts, ends = starts[keep], ends[keep]
        out_rows.append(r[starts])
        out_sums.append(csum[ends] - csum[starts])
    urows = np.concatenate(out_rows)
    usums = np.concatenate(out_sums)
    o = np.argsort(urows, kind="stable")
    sorted_rows = urows[o]
    same = sorted_rows[1:] == sorted_rows[:-1]
    if not same.any():
        return urows, usums.astype(np.float32)
    # merge only the repeated rows; everything else passes through
    repeated = np.r_[same, False] | np.r_[False, same]
    single = o[~repeated]
    rep_idx = o[repeated]
    rep_rows = sorted_rows[repeated]
    starts = np.flatnonzero(np.r_[True, rep_rows[1:] != rep_rows[:-1]])
    merged = np.add.reduceat(usums[rep_idx], starts, axis=0)
    return (
        np.concatenate([urows[single], rep_rows[starts]]),
        np.concatenate([usums[single], merged]).astype(np.float32),
    )


def _segment_sums_flat(rows: np.ndarray, grads: np.ndarray, skip_zero: bool) -> tuple[np.ndarray, np.ndarray]:
    """``_segment_sums`` for small batches: one stable sort of every (entry, level) and a reduceat."""
    levels = rows.shape[1]
    flat = rows.ravel()
    order = np.argsort(flat, kind="stable")
    sorted_rows = flat[order]
    starts = np.flatnonzero(np.concatenate(([True], sorted_rows[1:] != sorted_rows[:-1])))
    sums = np.add.reduceat(grads[order // levels if levels > 1 else order], starts, axis=0)
    out_rows = sorted_rows[starts]
    if skip_zero and len(out_rows) and out_rows[0] == 0:
        return out_rows[1:], sums[1:]
    return out_rows, sums


def _systematic_sample(weights: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    """Indices drawn in proportion to weights with little variance, then shuffled.

    Each index appears floor(e) or ceil(e) times, e = its expected count; with equal weights
    and size = len(weights) this is a plain permutation (every pair once per epoch).
    """
    expected = weights / weights.sum() * size
    base = np.floor(expected).astype(np.int64)
    extra = rng.random(len(weights)) < (expected - base)
    idx = np.repeat(np.arange(len(weights)), base + extra)
    rng.shuffle(idx)
    return idx


def _random_addresses(is6: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Random negatives of the same IP version: IPv4 with uniform octets; IPv6 in 2000::/3."""
    n = len(is6)
    lo = rng.integers(0, 1 << 32, size=n, dtype=np.uint64)
    hi = np.zeros(n, dtype=np.uint64)
    if is6.any():
        k = int(is6.sum())
        hi6 = rng.integers(0, 1 << 61, size=k, dtype=np.uint64) | np.uint64(1 << 61)
        lo6 = rng.integers(0, 1 << 63, size=k, dtype=np.uint64) << np.uint64(1)
        hi[is6] = hi6
        lo[is6] = lo6
    return is6.copy(), hi, lo


def train_ip_insights(
    entities: Any,
    ips: Any,
    weights: Any = None,
    params: IPInsightsParams = IPInsightsParams(),
) -> IPInsightsModel:
    """Train a model on (entity, ip) rows; ``weights`` are per-row event counts (default 1).

    Deterministic for ``params.seed`` and the same multiset of rows, whatever their order.
    """
    started = time.perf_counter()
    ecodes, euniques = _factorize(entities)
    icodes, iuniques = _factorize(ips)
    n_rows = len(ecodes)
    if len(icodes) != n_rows:
        raise ValueError(f"{n_rows} entities but {len(icodes)} addresses")
    if n_rows == 0:
        raise ValueError("no training rows")
    w = np.ones(n_rows) if weights is None else np.asarray(weights, dtype=np.float64).ravel()
    if len(w) != n_rows or not np.all(np.isfinite(w)) or (w < 0).any():
        raise ValueError("weights must be finite, non-negative and one per row")

    # canonical order: entities by text, addresses by (version, value)
    euniques_str = np.array([str(v) for v in euniques], dtype=object)
    eorder = np.argsort(euniques_str, kind="stable")
    ecodes = np.argsort(eorder)[ecodes]
    euniques_str = euniques_str[eorder]
    is6, hi, lo = _parse_ips(iuniques)
    iorder = np.lexsort((lo, hi, is6))
    icodes = np.argsort(iorder)[icodes]
    iuniques = iuniques[iorder]
    is6, hi, lo = is6[iorder], hi[iorder], lo[iorder]

    # distinct pairs, weight = sum over rows of count ** weight_power
    n_ips = len(iuniques)
    pair_key = ecodes * n_ips + icodes
    pair_keys, pair_inv = np.unique(pair_key, return_inverse=True)
    pair_w = np.bincount(pair_inv, weights=np.power(w, params.weight_power), minlength=len(pair_keys))
    pair_rows = np.bincount(pair_inv, minlength=len(pair_keys))
    pair_e = pair_keys // n_ips
    pair_i = pair_keys % n_ips
    keep = pair_w > 0
    pair_e, pair_i, pair_w, pair_rows = pair_e[keep], pair_i[keep], pair_w[keep], pair_rows[keep]
    if len(pair_e) == 0:
        raise ValueError("all training weights are zero")

    rng = np.random.default_rng(params.seed)
    layout = _Layout(params)
    data = _PairData(
        params=params,
        layout=layout,
        pair_e=pair_e,
        pair_i=pair_i,
        pair_w=pair_w,
        pair_rows=pair_rows,
        ehash=_entity_hash64(euniques_str),
        buckets=layout.buckets(is6, hi, lo),
        is6=is6,
        hi=hi,
        lo=lo,
    )
    n_pairs = len(pair_e)
    cross_validate = params.validation_fraction > 0 and params.cv_folds >= 2 and n_pairs <= params.cv_max_pairs
    if cross_validate:
        fold_of = rng.integers(0, params.cv_folds, n_pairs)
        folds = [_keep_one_per_entity(pair_e, fold_of == f) for f in range(params.cv_folds)]
    else:
        folds = [_holdout(pair_e, params.validation_fraction, rng)]
    n_val = sum(min(int(h.sum()), params.max_validation_pairs) for h in folds)
    k = max(1, min(_MAX_NEGATIVES_PER_HELD_OUT, math.ceil(_MIN_VALIDATION_NEGATIVES / max(n_val, 1))))
    pos, neg, shuf = [], [], []
    final = None
    for held in folds:
        trained = _train_subset(data, ~held, rng)
        val = np.flatnonzero(held)
        if len(val) > params.max_validation_pairs:
            val = np.sort(rng.choice(val, params.max_validation_pairs, replace=False))
        if len(val):
            dots = trained.validation_dots(data, val, k, rng)
            pos.append(dots[0])
            neg.append(dots[1])
            shuf.append(dots[2])
        if not cross_validate:
            final = trained
    if final is None:  # cross-validated: the model that scores learns from every pair
        final = _train_subset(data, np.ones(n_pairs, dtype=bool), rng)
    pos_dot = np.concatenate(pos) if pos else np.zeros(0, np.float32)
    neg_dot = np.concatenate(neg) if neg else np.zeros(0, np.float32)
    metadata: dict[str, Any] = {
        "backend": "local",
        "training_rows": n_rows,
        "training_pairs": final.pairs,
        "training_entities": len(final.known_hashes),
        "training_ips": final.ips,
        "ip_embedding_rows": len(final.ip_buckets),
        "validation": f"{params.cv_folds}-fold cross-validation" if cross_validate else "held-out pairs",
        "validation_pairs": len(pos_dot),
        "epoch_losses": [round(v, 6) for v in final.losses],
        "optimizer_steps": final.steps,
        "mini_batch_size_used": final.batch,
    }
    calibration = (-1.0, 0.0)
    if len(pos_dot):
        calibration = fit_platt(
            np.r_[pos_dot, neg_dot],
            np.r_[np.zeros(len(pos_dot), bool), np.ones(len(neg_dot), bool)],
            np.r_[np.ones(len(pos_dot)), np.full(len(neg_dot), 1.0 / k)],
        )
        metadata["validation_auc"] = roc_auc(pos_dot, neg_dot)
        metadata["validation_shuffled_auc"] = roc_auc(pos_dot, np.concatenate(shuf))
        metadata["roc"] = roc_points(pos_dot, neg_dot)
        metadata["calibration"] = {
            "fitted_on": "held-out pairs (normal) vs random-address pairs (suspicious), 1:1",
            "positives": len(pos_dot),
            "negatives": len(neg_dot),
            "negative_weight": 1.0 / k,
        }
    else:
        metadata["validation_auc"] = None
        metadata["calibration"] = {"fitted_on": "none (no validation data): sigmoid(-dot)"}
    metadata["training_seconds"] = round(time.perf_counter() - started, 3)
    return IPInsightsModel(
        params=params,
        entity_hashes=final.known_hashes,
        entity_buckets=final.entity_buckets,
        entity_emb=final.entity_emb,
        ip_buckets=final.ip_buckets,
        ip_emb=final.ip_emb,
        enc_w=final.enc_w,
        enc_b=final.enc_b,
        calibration=calibration,
        metadata=metadata,
    )


@dataclass
class _PairData:
    """The canonical distinct pairs of a training call and their addresses' prefix buckets."""

    params: IPInsightsParams
    layout: _Layout
    pair_e: np.ndarray  # entity code per pair (entities sorted by text)
    pair_i: np.ndarray  # address code per pair (addresses sorted by version, value)
    pair_w: np.ndarray  # sampling weight
    pair_rows: np.ndarray  # input rows per pair
    ehash: np.ndarray  # 64-bit hash per entity code
    buckets: np.ndarray  # (levels, n_ips) global bucket ids
    is6: np.ndarray
    hi: np.ndarray
    lo: np.ndarray


@dataclass
class _Trained:
    """Embeddings learnt from a subset of the pairs, and how to look the pairs up in them."""

    pairs: int
    ips: int
    known_hashes: np.ndarray
    entity_buckets: np.ndarray
    entity_emb: np.ndarray
    ent_row: np.ndarray  # entity code -> entity_emb row (-1: not trained)
    ip_buckets: np.ndarray
    ip_emb: np.ndarray
    bucket_to_row: np.ndarray
    ip_row_table: np.ndarray  # (n_ips, levels) ip_emb rows of every address of the call
    enc_w: np.ndarray
    enc_b: np.ndarray
    losses: list[float]
    steps: int
    batch: int

    def validation_dots(
        self, data: _PairData, val: np.ndarray, k: int, rng: np.random.Generator
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Held-out pairs; k random addresses per pair (same entity and version); shuffled pairs."""
        val_ent = self.ent_row[data.pair_e[val]]
        val_rows = self.ip_row_table[data.pair_i[val]].T
        pos = _pair_dots(self.entity_emb, val_ent, self.ip_emb, val_rows, self.enc_w, self.enc_b)
        rand = _random_addresses(np.tile(data.is6[data.pair_i[val]], k), rng)
        rand_rows = data.layout.rows(*rand, self.bucket_to_row)
        neg = _pair_dots(self.entity_emb, np.tile(val_ent, k), self.ip_emb, rand_rows, self.enc_w, self.enc_b)
        perm = rng.permutation(len(val))
        shuf = _pair_dots(self.entity_emb, val_ent[perm], self.ip_emb, val_rows, self.enc_w, self.enc_b)
        return pos, neg, shuf


def _train_subset(data: _PairData, tr: np.ndarray, rng: np.random.Generator) -> _Trained:
    """Train embeddings on the pairs where ``tr`` is True."""
    params, layout = data.params, data.layout
    pair_e, pair_i = data.pair_e, data.pair_i

    # entity rows: hashed buckets actually used
    used_e = np.unique(pair_e[tr])
    ebucket = (data.ehash % np.uint64(params.num_entity_vectors)).astype(np.int64)
    entity_buckets, ent_row_of_code = np.unique(ebucket[used_e], return_inverse=True)
    ent_row = np.full(len(data.ehash), -1, dtype=np.int64)
    ent_row[used_e] = ent_row_of_code
    known_hashes = np.sort(data.ehash[used_e])

    # IP rows: buckets of prefixes seen in training positives; the others map to the unseen rows
    train_ips = np.unique(pair_i[tr])
    tb = data.buckets[:, train_ips].ravel()
    ip_buckets = np.unique(tb[tb >= 0])
    unseen = params.unseen_prefix_vectors
    bucket_to_row = _bucket_map(layout, ip_buckets, unseen)
    width = layout.levels if params.other_version_negatives > 0 else None
    ip_row_table = np.ascontiguousarray(layout.rows(data.is6, data.hi, data.lo, bucket_to_row, width=width).T)

    dim = params.vector_dim
    entity_emb = (rng.standard_normal((len(entity_buckets), dim)) / math.sqrt(dim)).astype(np.float32)
    ip_emb = np.zeros((len(ip_buckets) + 1 + (layout.n_sections if unseen else 0), dim), dtype=np.float32)
    n_layers = params.num_ip_encoder_layers
    enc_w = (rng.standard_normal((n_layers, dim, dim)) * (0.1 / math.sqrt(dim))).astype(np.float32)
    enc_b = np.zeros((n_layers, dim), dtype=np.float32)

    losses, steps, batch = _fit(
        params,
        rng,
        ent_row[pair_e[tr]],
        ip_row_table[pair_i[tr]],
        data.is6[pair_i[tr]],
        data.pair_w[tr],
        int(data.pair_rows[tr].sum()),
        entity_emb,
        ip_emb,
        enc_w,
        enc_b,
        layout,
        bucket_to_row,
    )
    return _Trained(
        pairs=int(tr.sum()),
        ips=len(train_ips),
        known_hashes=known_hashes,
        entity_buckets=entity_buckets,
        entity_emb=entity_emb,
        ent_row=ent_row,
        ip_buckets=ip_buckets,
        ip_emb=ip_emb,
        bucket_to_row=bucket_to_row,
        ip_row_table=ip_row_table,
        enc_w=enc_w,
        enc_b=enc_b,
        losses=losses,
        steps=steps,
        batch=batch,
    )


def _holdout(pair_e: np.ndarray, fraction: float, rng: np.random.Generator) -> np.ndarray:
    """Hold out about ``fraction`` of pairs, always leaving each entity a training pair."""
    return _keep_one_per_entity(pair_e, rng.random(len(pair_e)) < fraction)


def _keep_one_per_entity(pair_e: np.ndarray, held: np.ndarray) -> np.ndarray:
    """``held`` with the first pair of every entity whose pairs are all held given back to training."""
    if not held.any():
        return held
    # pairs are sorted by entity: un-hold the first pair of an entity whose pairs all went
    starts = np.flatnonzero(np.r_[True, pair_e[1:] != pair_e[:-1]])
    counts = np.diff(np.r_[starts, len(pair_e)])
    held_per_entity = np.add.reduceat(held.astype(np.int64), starts)
    all_held = held_per_entity == counts
    held[starts[all_held]] = False
    return held


def _drop_prefixes(
    params: IPInsightsParams, layout: _Layout, rows: np.ndarray, is6: np.ndarray, rng: np.random.Generator
) -> np.ndarray:
    """Positives' rows with, for a ``prefix_dropout`` share, the longest prefixes made unseen."""
    if params.prefix_dropout <= 0:
        return rows
    drop = np.flatnonzero(rng.random(len(rows)) < params.prefix_dropout)
    if not len(drop):
        return rows
    rows = rows.copy()
    n_v4 = len(layout.v4)
    v6 = is6[drop]
    nlev = np.where(v6, len(layout.v6), n_v4)
    depth = np.minimum(params.prefix_dropout_levels, nlev - 1)
    first = nlev - 1 - (rng.random(len(drop)) * depth).astype(np.int64)
    unseen = params.unseen_prefix_vectors
    for k in range(1, rows.shape[1]):
        hit = (k >= first) & (k < nlev)
        if hit.any():
            rows[drop[hit], k] = np.where(v6[hit], 1 + n_v4 + k, 1 + k) if unseen else 0
    return rows


def _schedule(params: IPInsightsParams, epoch_size: int) -> tuple[int, int]:
    """(mini-batch size, passes over the rows per epoch) giving at least ``params.min_steps`` steps."""
    batch = min(params.mini_batch_size, epoch_size)
    if params.epochs * math.ceil(epoch_size / batch) >= params.min_steps:
        return batch, 1
    batch = min(batch, max(_MIN_AUTO_BATCH, math.ceil(params.epochs * epoch_size / params.min_steps)))
    if params.epochs * math.ceil(epoch_size / batch) >= params.min_steps:
        return batch, 1
    return batch, math.ceil(params.min_steps * batch / (params.epochs * epoch_size))


def _fit(
    params: IPInsightsParams,
    rng: np.random.Generator,
    pos_ent: np.ndarray,
    pos_rows: np.ndarray,
    pos_is6: np.ndarray,
    pos_w: np.ndarray,
    epoch_size: int,
    entity_emb: np.ndarray,
    ip_emb: np.ndarray,
    enc_w: np.ndarray,
    enc_b: np.ndarray,
    layout: _Layout,
    bucket_to_row: np.ndarray,
) -> tuple[list[float], int, int]:
    """Mini-batch training loop (updates the arrays in place): (mean loss per epoch, steps, batch size)."""
    lr, wd = params.learning_rate, params.weight_decay
    opt_e = _SparseAdam(entity_emb, lr, wd)
    opt_ip = _SparseAdam(ip_emb, lr, wd)
    opt_layers = [(_SparseAdam(enc_w[k], lr, wd), _SparseAdam(enc_b[k], lr, 0.0)) for k in range(len(enc_w))]
    opts = (opt_e, opt_ip, opt_layers)
    n_rand = params.random_negative_sampling_rate
    n_shuf = params.shuffled_negative_sampling_rate
    batch, passes = _schedule(params, epoch_size)
    levels = pos_rows.shape[1]
    block = batch * max(1, _BLOCK_POSITIVES // batch)
    losses, steps = [], 0
    for _epoch in range(params.epochs):
        order = _systematic_sample(pos_w, epoch_size * passes, rng)
        total_loss, total_pairs = 0.0, 0
        for block_start in range(0, len(order), block):
            # positives and random negatives of several mini-batches at once (fewer small numpy calls)
            block_idx = order[block_start : block_start + block]
            block_rows = _drop_prefixes(params, layout, pos_rows[block_idx], pos_is6[block_idx], rng)
            if n_rand:
                r6 = np.tile(pos_is6[block_idx], n_rand)
                if params.other_version_negatives > 0:
                    r6 ^= rng.random(len(r6)) < params.other_version_negatives
                rand_rows = layout.rows(*_random_addresses(r6, rng), bucket_to_row, width=levels)
                rand_rows = rand_rows.T.reshape(n_rand, len(block_idx), levels)
            for s in range(0, len(block_idx), batch):
                idx = block_idx[s : s + batch]
                b = len(idx)
                ent = pos_ent[idx]
                rows = block_rows[s : s + b]
                if n_rand:
                    rows = np.concatenate([rows, rand_rows[:, s : s + b].reshape(n_rand * b, levels)])
                total_loss += _step(params, rng, ent, rows, b, entity_emb, ip_emb, enc_w, enc_b, opts)
                total_pairs += b * (1 + n_rand + n_shuf)
                steps += 1
        losses.append(total_loss / max(total_pairs, 1))
    return losses, steps, batch


def _step(
    params: IPInsightsParams,
    rng: np.random.Generator,
    ent: np.ndarray,
    rows: np.ndarray,
    b: int,
    entity_emb: np.ndarray,
    ip_emb: np.ndarray,
    enc_w: np.ndarray,
    enc_b: np.ndarray,
    opts: tuple,
) -> float:
    """One mini-batch: b positives (rows[:b]), random negatives (rows[b:]) and shuffled negatives."""
    opt_e, opt_ip, opt_layers = opts
    n_rand = params.random_negative_sampling_rate
    n_shuf = params.shuffled_negative_sampling_rate
    levels = rows.shape[1]
    h0 = ip_emb[rows[:, 0]]
    for k in range(1, levels):
        h0 += ip_emb[rows[:, k]]
    v, cache = _encode_forward(h0, enc_w, enc_b) if len(enc_w) else (h0, [])
    u = entity_emb[ent]
    vp = v[:b]
    n_total = b * (1 + n_rand + n_shuf)
    # positives
    sp = np.einsum("ij,ij->i", u, vp)
    gp = (_sigmoid(sp) - 1.0) / n_total
    loss = np.logaddexp(0, -sp).sum()
    du = gp[:, None] * vp
    dv = np.empty_like(v)
    dv[:b] = gp[:, None] * u
    # random negatives: block r pairs entity j with random address r*b + j
    if n_rand:
        vr = v[b:].reshape(n_rand, b, -1)
        sr = np.einsum("jd,rjd->rj", u, vr)
        gr = _sigmoid(sr) / n_total
        loss += np.logaddexp(0, sr).sum()
        du += np.einsum("rj,rjd->jd", gr, vr)
        dv[b:] = (gr[:, :, None] * u[None, :, :]).reshape(n_rand * b, -1)
    # shuffled negatives: entity j with the batch's address perm[j]
    for _ in range(n_shuf):
        perm = rng.permutation(b)
        ss = np.einsum("ij,ij->i", u, vp[perm])
        gs = _sigmoid(ss) / n_total
        loss += np.logaddexp(0, ss).sum()
        du += gs[:, None] * vp[perm]
        dv[perm] += gs[:, None] * u
    # back through the encoder
    if cache:
        dh = dv
        for layer in range(len(cache) - 1, -1, -1):
            hin, t = cache[layer]
            dz = dh * (1.0 - t * t)
            gw, gb = hin.T @ dz, dz.sum(axis=0)
            dh = dh + dz @ enc_w[layer].T
            opt_layers[layer][0].step_dense(gw)
            opt_layers[layer][1].step_dense(gb)
        dh0 = dh
    else:
        dh0 = dv
    # sparse updates
    urows, ugrad = _segment_sums(rows, dh0, skip_zero=True)
    opt_ip.step_rows(urows, ugrad)
    erows, egrad = _segment_sums(ent[:, None], du, skip_zero=False)
    opt_e.step_rows(erows, egrad)
    return float(loss)


__all__ = [
    "IPInsightsModel",
    "IPInsightsParams",
    "ScoreResult",
    "fit_platt",
    "roc_auc",
    "roc_points",
    "train_ip_insights",
]
