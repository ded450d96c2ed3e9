"""Dictionary codes for Arrow string columns, by their runs where a column comes grouped.

A learning set is ordered by identity, so its ``entity`` column is a few thousand runs of equal
values: hashing each run's value once and repeating its code costs less than hashing every row
(a million rows of 10,000 identities: 6 ms against 15 ms). Scoring a day codes that column twice
(IP Insights and the evidence)."""

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc


def dictionary_encoded(array: pa.Array) -> pa.DictionaryArray:
    """``pc.dictionary_encode(array)``: the distinct values in order of first appearance and each
    row's code, the same arrays; by runs of equal values where there are at most half as many
    runs as rows (and no nulls), else by hashing every row."""
    if len(array) < 2:
        return pc.dictionary_encode(array)
    runs = pc.run_end_encode(array)
    if len(runs.values) * 2 > len(array) or runs.values.null_count:
        return pc.dictionary_encode(array)
    distinct = pc.dictionary_encode(runs.values)
    lengths = np.diff(runs.run_ends.to_numpy(), prepend=0)
    codes = np.repeat(distinct.indices.to_numpy(), lengths)
    return pa.DictionaryArray.from_arrays(pa.array(codes, distinct.indices.type), distinct.dictionary)
