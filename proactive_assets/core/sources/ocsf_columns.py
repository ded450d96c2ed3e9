"""Reading OCSF columns out of an Arrow table: nested fields, text, integers, time, and blanks.

Shared by the CloudTrail mapping (``ocsf.py``) and the network mapping (``ocsf_network.py``).
Anything that does not fit raises ``OcsfSchemaError`` naming the object, which the caller
quarantines; a field that is simply absent reads as nulls.
"""

from collections.abc import Sequence

import pyarrow as pa
import pyarrow.compute as pc

#: What Security Lake writes where a log had no value.
NO_VALUE = ("", "-")


class OcsfSchemaError(ValueError):
    """An object whose columns do not fit the OCSF mapping its key promises.

    The caller quarantines the object (key and message) and carries on with the day.
    """

    def __init__(self, key: str, message: str, missing: Sequence[str] = ()) -> None:
        self.key = key
        self.missing = tuple(missing)
        text = f"{key}: {message}"
        if self.missing:
            text += f" (missing: {', '.join(self.missing)})"
        super().__init__(text)


def has_field(table: pa.Table, path: str) -> bool:
    """Whether the dotted ``path`` (``src_endpoint.ip``) exists in the table's schema."""
    type_ = None
    for index, name in enumerate(path.split(".")):
        if index == 0:
            if name not in table.column_names:
                return False
            type_ = table.schema.field(name).type
            continue
        if not pa.types.is_struct(type_) or type_.get_field_index(name) < 0:
            return False
        type_ = type_.field(name).type
    return True


def column(table: pa.Table, path: str) -> pa.Array | None:
    """A (possibly nested) field as one array, or None when absent; struct parents' nulls propagate."""
    if not has_field(table, path):
        return None
    names = path.split(".")
    array = combine(table.column(names[0]))
    for name in names[1:]:
        array = pc.struct_field(array, name)
    return array


def combine(values: pa.Array | pa.ChunkedArray) -> pa.Array:
    """One contiguous array."""
    if isinstance(values, pa.ChunkedArray):
        return values.combine_chunks() if values.num_chunks != 1 else values.chunk(0)
    return values


def strings(array: pa.Array | None, n: int, key: str) -> pa.Array:
    """A scalar column as text (nulls when absent); a nested one is a schema error."""
    if array is None:
        return pa.nulls(n, pa.string())
    if pa.types.is_string(array.type):
        return array
    if pa.types.is_large_string(array.type):
        return pc.cast(array, pa.string())
    if pa.types.is_nested(array.type):
        raise OcsfSchemaError(key, f"expected a scalar column, found {array.type}")
    try:
        return pc.cast(array, pa.string())
    except pa.ArrowException as exc:
        raise OcsfSchemaError(key, f"cannot read {array.type} as text: {exc}") from None


def integers(array: pa.Array | None, name: str, key: str, n: int | None = None) -> pa.Array:
    """A column as int64; absent gives nulls when ``n`` is given. Text that is no number is null."""
    if array is None:
        assert n is not None, name
        return pa.nulls(n, pa.int64())
    if pa.types.is_string(array.type) or pa.types.is_large_string(array.type):
        digits = pc.match_substring_regex(array, r"^\s*-?\d{1,18}\s*$")
        clean = pc.if_else(digits, pc.utf8_trim_whitespace(array), pa.scalar(None, pa.string()))
        return pc.cast(clean, pa.int64())
    try:
        return pc.cast(array, pa.int64())
    except pa.ArrowException as exc:
        raise OcsfSchemaError(key, f"{name} is {array.type}, not an integer: {exc}") from None


def timestamps(array: pa.Array | None, key: str) -> pa.Array:
    """``time`` as UTC milliseconds: OCSF stores epoch ms; a timestamp column also works."""
    assert array is not None
    target = pa.timestamp("ms", tz="UTC")
    try:
        if pa.types.is_integer(array.type):
            return pc.cast(pc.cast(array, pa.int64()), target)
        if pa.types.is_timestamp(array.type):
            return pc.cast(array, target, safe=False)
    except pa.ArrowException as exc:
        raise OcsfSchemaError(key, f"cannot read time ({array.type}): {exc}") from None
    raise OcsfSchemaError(key, f"time is {array.type}, expected epoch milliseconds")


def const(value: str, n: int) -> pa.Array:
    """A string column of one repeated value, built without a Python list per row."""
    return pa.repeat(pa.scalar(value, pa.string()), n)


def blank_to_null(array: pa.Array) -> pa.Array:
    """``''``, ``'-'`` (and whitespace around them) become null."""
    blank = pc.is_in(pc.utf8_trim_whitespace(array), value_set=pa.array(NO_VALUE))
    return pc.if_else(blank, pa.scalar(None, pa.string()), array)


def reject(reason: pa.Array, condition: pa.Array, text: str) -> pa.Array:
    """Record ``text`` for rows matching ``condition`` (null counts as a match) that have no earlier reason."""
    condition = pc.fill_null(condition, True)
    return pc.if_else(pc.and_(pc.is_null(reason), condition), pa.scalar(text), reason)


def count_reasons(reason: pa.Array, mask: pa.Array) -> dict[str, int]:
    """How many rows of ``mask`` carry each reason."""
    if not pc.any(mask).as_py():
        return {}
    counts = pc.value_counts(reason.filter(mask))
    return {
        str(value): int(count)
        for value, count in zip(counts.field("values").to_pylist(), counts.field("counts").to_pylist(), strict=True)
    }
