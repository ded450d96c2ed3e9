"""Dictionary codes by runs (``core.arrow_codes``) are Arrow's own dictionary encoding."""

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from proactive_assets.core.arrow_codes import dictionary_encoded

RNG = np.random.default_rng(5)
GROUPED = [f"arn:aws:iam::111122223333:user/u{i}" for i in RNG.permutation(200) for _ in range(RNG.integers(1, 30))]


@pytest.mark.parametrize(
    "values",
    [
        pa.array(GROUPED),  # a learning set's identities: by runs
        pa.array(GROUPED, pa.large_string()),
        pa.array(GROUPED).slice(7, 900),
        pa.array(list(RNG.permutation(GROUPED))),  # no runs to speak of: every row hashed
        pa.array(["b", "b", "a", "a", "b", "c"]),  # a value back after another's run
        pa.array(["a", "a", None, None, "b", "b"]),  # nulls
        pa.array(["x"]),
        pa.array([], pa.string()),
        # a column read from a file: chunks, split inside runs, one empty, each coded where it lies
        pa.chunked_array([GROUPED[:5], GROUPED[5:300], [], GROUPED[300:]], pa.string()),
        pa.chunked_array([list(RNG.permutation(GROUPED))[:50], GROUPED[50:]], pa.string()),
        pa.chunked_array([["a", "a"], [None, None], ["b"]], pa.string()),
        pa.chunked_array([], pa.string()),
    ],
)
def test_codes_by_runs_are_arrows_dictionary_encoding(values: pa.Array | pa.ChunkedArray) -> None:
    whole = values.combine_chunks() if isinstance(values, pa.ChunkedArray) else values
    got, expected = dictionary_encoded(values), pc.dictionary_encode(whole)
    assert got.type == expected.type
    assert got.dictionary.equals(expected.dictionary) and got.indices.equals(expected.indices)
