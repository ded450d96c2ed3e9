"""The IP Insights model: embeddings of entities and address prefixes, scored by dot product.

``dot_product(entity, ip) = entity_vector(entity) . ip_vector(ip)``, higher = more normal, as in
Amazon SageMaker IP Insights; ``insight`` is the calibrated suspicion in [0, 1]. Entities are
hashed into buckets; an address's vector is the sum of its prefixes' vectors (``PrefixLayout``),
so a new host in a known /24 inherits what was learnt about that network. Scoring takes pyarrow
string columns without a Python object per pair. Design and measurements:
docs/ip_insights_model.md.
"""

import functools
import hashlib
import io
import json
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from proactive_assets.core.arrow_codes import dictionary_encoded
from proactive_assets.core.ipnet import arrow_to_pandas, as_object_array, parse_ips, string_array, string_column
from proactive_assets.core.model.params import IPInsightsParams, versioned_params
from proactive_assets.core.model.prefixes import PrefixLayout, bucket_map
from proactive_assets.core.npz import npz_arrays, npz_bytes, zip_reader

try:  # the compiled gather of the embedding rows (``_embedding_rows.c``, built by setup.py where a C compiler is)
    from proactive_assets.core.model import _embedding_rows
except ImportError:  # pragma: no cover - depends on the install
    _embedding_rows = None

ARTIFACT_FORMAT = 1
_ENTITY_PERSON = b"ipi-entity"
_SCORE_CHUNK = 4096
#: From this many addresses scoring builds (and keeps) the whole head table rather than the rows it uses.
_WHOLE_HEAD_TABLE = 20_000


@dataclass
class ScoreResult:
    """Scores of (entity, ip) pairs, in input order."""

    dot_product: np.ndarray  # float32; higher = more normal (SageMaker's output)
    insight: np.ndarray  # float32 in [0, 1]; higher = more suspicious (calibrated)
    entity_known: np.ndarray  # bool; False = entity not in training, population prior used


# --------------------------------------------------------------------------------------------
# entities: hashes and codes


_ENTITY_HASHER = hashlib.blake2b(digest_size=8, person=_ENTITY_PERSON)


def entity_hash64(values: Sequence[Any]) -> np.ndarray:
    """64-bit BLAKE2b of each entity's UTF-8 text (stable across processes and platforms)."""
    return np.fromiter((_entity_hash(str(v)) for v in values), dtype=np.uint64, count=len(values))


@functools.lru_cache(maxsize=1 << 16)
def _entity_hash(text: str) -> int:
    """``entity_hash64`` of one entity, remembered: training, validation and every scored day of a
    window hash the same identities again."""
    hasher = _ENTITY_HASHER.copy()  # a copy of the keyed, empty state: half the cost of a new one
    hasher.update(text.encode("utf-8"))
    return int.from_bytes(hasher.digest(), "little")


def _dictionary_codes(values: pa.DictionaryArray) -> np.ndarray:
    """The indices of a dictionary array as intp codes."""
    return values.indices.to_numpy(zero_copy_only=False).astype(np.intp, copy=False)


def _categorical(values: Any) -> pd.Categorical | None:
    """The values as a pandas Categorical if they are one (or a pyarrow dictionary), else None."""
    values = arrow_to_pandas(values)
    if isinstance(values, pd.Series) and isinstance(values.dtype, pd.CategoricalDtype):
        return values.array
    if isinstance(values, pd.Categorical):
        return values
    return None


def factorize(values: Any) -> tuple[np.ndarray, np.ndarray]:
    """(codes intp, uniques object array); categoricals and pyarrow dictionaries reuse their codes,
    other pyarrow strings are dictionary-encoded by pyarrow (no Python string per row)."""
    column = string_column(values)
    if column is not None:
        if not pa.types.is_dictionary(column.type):  # (a learning set's identities: by their runs)
            column = pa.chunked_array([dictionary_encoded(string_array(column))])
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
    codes, uniques = pd.factorize(as_object_array(values), use_na_sentinel=True)
    if len(codes) and codes.min() < 0:
        raise ValueError("missing values are not valid entities or addresses")
    return codes.astype(np.intp, copy=False), np.asarray(uniques, dtype=object)


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
        self._layout = PrefixLayout(params)
        expected_rows = 1 + len(self.ip_buckets) + (self._layout.n_sections if params.unseen_prefix_vectors else 0)
        if len(self.ip_emb) != expected_rows:
            raise ValueError(f"ip_emb has {len(self.ip_emb)} rows, expected {expected_rows} for these parameters")
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

    @functools.cached_property
    def _bucket_to_row(self) -> np.ndarray:
        """The ``bucket_map`` of the model's trained buckets, on first use: a model built in training
        and never scored does not pay for it (an array over every bucket of the layout)."""
        return bucket_map(self._layout, self.ip_buckets, self.params.unseen_prefix_vectors)

    # ---- identity
    def _content_version(self) -> str:
        digest = hashlib.sha256()
        digest.update(json.dumps(versioned_params(self.params), sort_keys=True).encode())
        digest.update(json.dumps(list(self.calibration)).encode())
        for arr in self._arrays().values():
            digest.update(str(arr.dtype).encode() + str(arr.shape).encode())
            digest.update(np.ascontiguousarray(arr).reshape(-1).view(np.uint8))  # the bytes, not a copy of them
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

        ``entities`` and ``ips``: pyarrow string columns (the fast path: no Python object per
        pair), or sequences, numpy arrays, pandas Series or Categoricals of strings.
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
        # metrics.calibrated_insight's operations in place: the same values without three temporaries
        z *= 0.5
        np.tanh(z, out=z)
        z += 1.0
        z *= 0.5
        return z.astype(np.float32)

    def entity_known(self, entities: Any) -> np.ndarray:
        """Whether each entity was in the training data."""
        codes, uniques = factorize(entities)
        return self._known_mask(entity_hash64(uniques))[codes]

    def _known_mask(self, hashes: np.ndarray) -> np.ndarray:
        if len(self.entity_hashes) == 0:
            return np.zeros(len(hashes), dtype=bool)
        pos = np.searchsorted(self.entity_hashes, hashes)
        pos = np.minimum(pos, len(self.entity_hashes) - 1)
        return self.entity_hashes[pos] == hashes

    def _entity_table(self, uniques: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Vectors for unique entities (mean vector for unknown ones) and their known flags."""
        hashes = entity_hash64(uniques)
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

    def _head(self, head: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(head table, each address's row in it) for ``head`` (rows of ``_head_table``). A few
        addresses (a validation day's, a small organisation's day) get the rows they use, not the
        whole 131,072-row table (17 ms a model, paid every day at the realistic scenario's size)."""
        if "_head_table" in self.__dict__ or len(head) >= _WHOLE_HEAD_TABLE:
            return self._head_table, head
        used, row = np.unique(head, return_inverse=True)
        return self._layout.head_table(self.ip_emb, self._bucket_to_row, used), row.reshape(-1)

    @functools.cached_property
    def _head_table(self) -> np.ndarray:
        """The head levels' summed embeddings per head prefix (``PrefixLayout.head_table``), made on
        first use: 2 x 65,536 rows with the default prefixes, 16 MB at vector_dim 32."""
        return self._layout.head_table(self.ip_emb, self._bucket_to_row)

    def _pair_rows(self, ips: Any) -> tuple[np.ndarray, np.ndarray]:
        """``_ip_rows`` of each address; dictionary-encoded input (pyarrow dictionaries, pandas
        Categoricals) parses and looks up each distinct value once."""
        column = string_column(ips)
        if column is not None:
            arrow = string_array(column)
            if pa.types.is_dictionary(arrow.type) and not arrow.null_count:
                codes = _dictionary_codes(arrow)
                head, rows = self._ip_rows(*parse_ips(arrow.dictionary))
                return head[codes], np.ascontiguousarray(rows[:, codes])
            return self._ip_rows(*parse_ips(arrow))
        if _categorical(ips) is not None:
            codes, categories = factorize(ips)
            head, rows = self._ip_rows(*parse_ips(categories))
            return head[codes], np.ascontiguousarray(rows[:, codes])
        return self._ip_rows(*parse_ips(ips))

    def ip_vectors(self, ips: Any) -> np.ndarray:
        """IP embeddings (after the encoder) for addresses, in input order."""
        head, rows = self._pair_rows(ips)
        table, head = self._head(head)
        out = np.empty((len(head), self.params.vector_dim), dtype=np.float32)
        for s in range(0, len(head), _SCORE_CHUNK):
            m = min(_SCORE_CHUNK, len(head) - s)
            out[s : s + m] = _sum_levels(
                self.ip_emb, rows[:, s : s + m], self.enc_w, self.enc_b, (table, head[s : s + m])
            )
        return out

    def _dot_and_known(self, entities: Any, ips: Any) -> tuple[np.ndarray, np.ndarray]:
        ecodes, euniques = factorize(entities)
        head, rows = self._pair_rows(ips)
        if len(ecodes) != len(head):
            raise ValueError(f"{len(ecodes)} entities but {len(head)} addresses")
        etable, known = self._entity_table(euniques)
        dots = pair_dots(etable, ecodes, self.ip_emb, rows, self.enc_w, self.enc_b, self._head(head))
        return dots, known[ecodes]

    # ---- persistence
    def to_bytes(self) -> bytes:
        """An .npz with the weights and the JSON metadata (no pickle), stored uncompressed: deflate
        saved 12% of a tutorial-scale model (68 MiB) for 3.4 s, more than a warm-started day's training.
        Its arrays are 64-byte aligned in the file (``npz_bytes``), so every scored day reads them in place.

        Byte-for-byte reproducible: the same model always gives the same bytes (fixed zip
        timestamps, sorted JSON), so re-uploading an unchanged model is a no-op.
        """
        meta = json.dumps(
            {"format": ARTIFACT_FORMAT, "calibration": list(self.calibration), "metadata": self.metadata},
            sort_keys=True,
        ).encode("utf-8")
        return npz_bytes({"metadata_json": np.frombuffer(meta, dtype=np.uint8), **self._arrays()})

    @classmethod
    def from_bytes(cls, data: bytes | memoryview) -> "IPInsightsModel":
        """Load an artifact written by ``to_bytes``; checks the content version."""
        arrays = _artifact_arrays(data)
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


def _artifact_arrays(data: bytes | memoryview) -> dict[str, np.ndarray]:
    """An artifact's arrays: read in place (``npz_arrays``; read-only views of ``data``, where
    ``np.load`` copied 68 MiB at the IP Insights tutorial's scale, 70 ms each scored day), or by
    ``np.load`` from an artifact stored compressed (the earliest ones)."""
    try:
        with zip_reader(data) as archive:
            compressed = any(info.compress_type != zipfile.ZIP_STORED for info in archive.infolist())
    except zipfile.BadZipFile as error:
        raise ValueError(f"not an IP Insights artifact: {error}") from None
    if not compressed:
        return npz_arrays(data)
    with np.load(io.BytesIO(data), allow_pickle=False) as npz:
        return {k: npz[k] for k in npz.files}


# --------------------------------------------------------------------------------------------
# the scoring gathers: prefix rows summed and dotted with entity vectors, in cache-sized chunks


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
        v = encode_forward(v, enc_w, enc_b)[0]
    return v


def lane_dots(u: np.ndarray, v: np.ndarray, out: np.ndarray) -> None:
    """out[i] = u[i] . v[i] for float32 rows, in one fixed order: element j added to running sum
    j % 8, the eight sums folded pairwise ((0+4)+(2+6))+((1+5)+(3+7)), float32 throughout; the
    compiled ``_embedding_rows.gather_sum`` dots in the same order (the same floats; numpy's einsum
    sums in an order of its SIMD width)."""
    m, dim = u.shape
    acc = np.zeros((m, 8), np.float32)
    product = np.empty((m, 8), np.float32)
    for b in range(0, dim, 8):
        w = min(8, dim - b)
        np.multiply(u[:, b : b + w], v[:, b : b + w], out=product[:, :w])
        acc[:, :w] += product[:, :w]
    half = acc[:, :4] + acc[:, 4:]
    np.add(half[:, 0] + half[:, 2], half[:, 1] + half[:, 3], out=out)


def _gather_sum(
    v: np.ndarray,
    tmp: np.ndarray,
    ip_emb: np.ndarray,
    levels: np.ndarray,
    part: slice,
    head: tuple[np.ndarray, np.ndarray] | None,
    dots: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None,
) -> None:
    """v = the sum of the rows ``levels[:, part]`` of ip_emb (after ``head``'s rows), in level order;
    and with ``dots`` (entity table, each pair's row in it, out), out = ``lane_dots`` of the pairs'
    entity rows and v.

    The compiled ``_embedding_rows.gather_sum`` asks for each address's rows a few addresses ahead
    and sums them in the same order (the same floats), and dots each while it is in cache. numpy's
    gathers use ``mode="clip"`` (the rows are valid by construction): its default ``mode="raise"``
    gathers into a temporary and copies that to ``out``, up to twice as slow.
    """
    if _embedding_rows is not None and v.dtype == ip_emb.dtype == np.float32 and levels.dtype in (np.int32, np.int64):
        levels = levels if levels.flags.c_contiguous else np.ascontiguousarray(levels)  # (a chunk's columns)
        start, stop, _ = part.indices(levels.shape[1])
        table, rows = (head[0], head[1][part]) if head is not None else (None, np.zeros(stop - start, np.int64))
        dotted = () if dots is None else (dots[0], np.ascontiguousarray(dots[1], np.int64), dots[2])
        _embedding_rows.gather_sum(v, table, np.ascontiguousarray(rows, np.int64), ip_emb, levels, start, *dotted)
        return
    if head is None:
        np.take(ip_emb, levels[0, part], axis=0, out=v, mode="clip")
        first = 1
    else:
        np.take(head[0], head[1][part], axis=0, out=v, mode="clip")
        first = 0
    for k in range(first, len(levels)):
        np.take(ip_emb, levels[k, part], axis=0, out=tmp, mode="clip")
        v += tmp
    if dots is not None:
        np.take(dots[0], dots[1], axis=0, out=tmp, mode="clip")
        lane_dots(tmp, v, dots[2])


def pair_dots(
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
    takes the row-wise dot product (``lane_dots``) while the rows are still in cache.
    """
    n = len(ecodes)
    out = np.empty(n, dtype=np.float32)
    etable = np.ascontiguousarray(etable, np.float32)
    levels = np.ascontiguousarray(levels)
    dim = etable.shape[1]
    ubuf = np.empty((_SCORE_CHUNK, dim), dtype=np.float32)
    vbuf = np.empty((_SCORE_CHUNK, dim), dtype=np.float32)
    tbuf = np.empty((_SCORE_CHUNK, dim), dtype=np.float32)
    for s in range(0, n, _SCORE_CHUNK):
        m = min(_SCORE_CHUNK, n - s)
        u, v = ubuf[:m], vbuf[:m]
        if not len(enc_w):  # (the vectors as summed: dotted as they are)
            _gather_sum(v, tbuf[:m], ip_emb, levels, slice(s, s + m), head, (etable, ecodes[s : s + m], out[s : s + m]))
            continue
        _gather_sum(v, tbuf[:m], ip_emb, levels, slice(s, s + m), head)
        v = encode_forward(v, enc_w, enc_b)[0]
        np.take(etable, ecodes[s : s + m], axis=0, out=u, mode="clip")
        lane_dots(u, v, out[s : s + m])
    return out


def encode_forward(
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
