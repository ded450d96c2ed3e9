"""The temporal validation's folds: each validation day's pairs and their evidence, kept with the model.

A fold is one validation day d of a model's window: the day's real pairs and synthetic
attacker-like pairs for the same identities, with their evidence against the window before d
(``detector._validation_day``). The combiner and the budget threshold are fitted on them.

Computing a fold is most of a day's training once IP Insights warm-starts, and model D's
validation days are model D-1's but one: D-k..D-1 against D-1-k..D-2. So every model stores its
folds (``folds.arrow`` in its partition: an Arrow IPC file of float32 columns, zstd-compressed, 14 MB
at the IP Insights tutorial's scale; Parquet took twice as long to read back and 7x to write),
and a warm-started model D reuses model D-1's folds of the days they share and computes only the
newest, D-1 (``reusable``). A reused fold is what model D-1 computed: its history began a day
earlier (the window before d as model D-1 saw it) and its ``ip_insights`` column is model D-1's
judgement. Both were held out the same way (the warm chain holds out the same pairs and days),
and a full retrain every ``PROACTIVE_FULL_RETRAIN_DAYS`` computes every fold afresh.
"""

import io
import json
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa

FORMAT = 2  # 1 was Parquet (``folds.parquet``)
_META = b"proactive_assets.folds"


@dataclass
class Fold:
    """One validation day: the evidence of its pairs (rows: pairs, columns: ``features``)."""

    day: int  # days since 1970-01-01
    x: np.ndarray  # float32
    suspicious: np.ndarray  # the synthetic pairs
    kind: np.ndarray  # their kind (``negatives.KINDS``), -1 for real pairs
    identities: int  # identities active that day


def folds_to_bytes(folds: list[Fold], features: tuple[str, ...], provenance: dict[str, Any]) -> bytes:
    """An Arrow IPC file of every fold's rows; ``provenance`` (what the evidence was computed with, e.g.
    the provider ranges' date) is kept so a fold is reused only where it still means the same."""
    folds = sorted(folds, key=lambda f: f.day)
    columns: dict[str, pa.Array] = {
        "day": pa.array(np.concatenate([np.full(len(f.x), f.day, np.int32) for f in folds] or [np.zeros(0, np.int32)])),
        "suspicious": pa.array(np.concatenate([f.suspicious for f in folds] or [np.zeros(0, bool)])),
        "kind": pa.array(np.concatenate([f.kind for f in folds] or [np.zeros(0, np.int8)]).astype(np.int8)),
    }
    x = np.concatenate([f.x for f in folds]) if folds else np.zeros((0, len(features)))
    by_feature = _transposed(x.astype(np.float32, copy=False))
    for i, name in enumerate(features):
        columns[name] = pa.array(by_feature[i])
    meta = {
        "format": FORMAT,
        "features": list(features),
        "identities": {str(f.day): f.identities for f in folds},
        "provenance": provenance,
    }
    table = pa.table(columns).replace_schema_metadata({_META: json.dumps(meta, sort_keys=True).encode()})
    out = io.BytesIO()
    with pa.ipc.new_file(out, table.schema, options=pa.ipc.IpcWriteOptions(compression="zstd")) as writer:
        writer.write_table(table)
    return out.getvalue()


def _transposed(x: np.ndarray, block: int = 1024) -> np.ndarray:
    """``x.T`` as a contiguous array, a block of rows at a time: a block's rows and columns stay in
    cache (numpy's own transposing copy of 1.1M x 43 float32 took 0.55 s, this 0.09 s)."""
    out = np.empty((x.shape[1], x.shape[0]), x.dtype)
    if x.shape[0] >= x.shape[1]:
        for start in range(0, x.shape[0], block):
            out[:, start : start + block] = x[start : start + block].T
    else:
        for start in range(0, x.shape[1], block):
            out[start : start + block] = x[:, start : start + block].T
    return out


def folds_from_bytes(data: bytes) -> tuple[list[Fold], dict[str, Any]]:
    """The folds and their metadata (``features``, ``provenance``) as ``folds_to_bytes`` wrote them."""
    table = pa.ipc.open_file(pa.BufferReader(data)).read_all()
    meta = json.loads((table.schema.metadata or {}).get(_META, b"{}"))
    if meta.get("format") != FORMAT:
        raise ValueError(f"folds format {meta.get('format')} is not {FORMAT}")
    day = table.column("day").to_numpy()
    # a pair's features contiguous (as ``pair_features`` gives them), the folds' rows in day order
    x = _transposed(np.stack([table.column(name).to_numpy() for name in meta["features"]])) if len(day) else None
    suspicious = table.column("suspicious").to_numpy(zero_copy_only=False)
    kind = table.column("kind").to_numpy()
    folds = []
    for d in sorted(int(k) for k in meta["identities"]):
        start, stop = np.searchsorted(day, d), np.searchsorted(day, d, side="right")
        rows = slice(int(start), int(stop))
        values = x[rows] if x is not None else np.zeros((0, len(meta["features"])), np.float32)
        folds.append(Fold(d, values, suspicious[rows], kind[rows], int(meta["identities"][str(d)])))
    return folds, meta


def reusable(
    data: bytes | None, days: list[int], features: tuple[str, ...], provenance: dict[str, Any]
) -> dict[int, Fold]:
    """The folds of ``days`` among a previous model's stored ones (``data``) that can be reused: stored
    with the same features and provenance. Nothing when ``data`` is missing or unreadable."""
    if data is None:
        return {}
    try:
        folds, meta = folds_from_bytes(data)
    except (ValueError, KeyError, OSError, pa.ArrowException):
        return {}
    if tuple(meta["features"]) != tuple(features) or meta.get("provenance") != provenance:
        return {}
    wanted = set(days)
    return {f.day: f for f in folds if f.day in wanted}
