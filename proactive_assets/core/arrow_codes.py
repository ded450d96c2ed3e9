"""Dictionary codes for Arrow string columns, by their runs where a column comes grouped.

A learning set is ordered by identity, so its ``entity`` column is a few thousand runs of equal
values: hashing each run's value once and repeating its code costs less than hashing every row
(a million rows of 10,000 identities: 6 ms against 15 ms). Scoring a day codes that column twice
(IP Insights and the evidence)."""

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc


def dictionary_encoded(values: pa.Array | pa.ChunkedArray) -> pa.DictionaryArray:
    """``pc.dictionary_encode`` of the values as one array: the distinct values in order of first
    appearance and each row's code, the same arrays; by runs of equal values where there are at
    most half as many runs as rows (and no nulls), a chunk at a time (a column read from a file is
    not first copied into one array: 41 MB of identities a million rows), else by hashing every row."""
    chunks = [c for c in values.chunks if len(c)] if isinstance(values, pa.ChunkedArray) else [values]
    if len(values) < 2:
        return pc.dictionary_encode(_one_array(values))
    runs = [pc.run_end_encode(chunk) for chunk in chunks]
    if sum(len(r.values) for r in runs) * 2 > len(values) or any(r.values.null_count for r in runs):
        return pc.dictionary_encode(_one_array(values))
    distinct = pc.dictionary_encode(pa.concat_arrays([r.values for r in runs]))
    lengths = np.concatenate([np.diff(r.run_ends.to_numpy(), prepend=0) for r in runs])
    codes = np.repeat(distinct.indices.to_numpy(), lengths)
    return pa.DictionaryArray.from_arrays(pa.array(codes, distinct.indices.type), distinct.dictionary)


def _one_array(values: pa.Array | pa.ChunkedArray) -> pa.Array:
    return values.combine_chunks() if isinstance(values, pa.ChunkedArray) else values
