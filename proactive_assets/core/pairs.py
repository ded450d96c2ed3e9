"""From a day's normalised events to the learning set: one row per (entity, source_ip).

This is the seed's ``learning.csv`` made useful: it keeps the source IP (the seed dropped it),
counts events once even when CloudTrail delivers a record twice, and keeps what a person auditing
an alert needs (first/last seen, event names, accounts, regions, source objects, the calls that
wrote, user agents, access-denied errors).

An event is one (eventID, identity, source address, time): the same event delivered twice (by an
organisation trail and an account trail, or by CloudTrail and Security Lake) counts once, while two
different identities, addresses or times that share an eventID (a forged or colliding id) stay two
events. Events without an eventID are all counted.

``write_event_names`` lists the event names of events whose ``readOnly`` is false; an event whose
``readOnly`` is unknown (absent from the record, or an OCSF row) is not classified as a write.
"""

from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from proactive_assets.core import event_dedup
from proactive_assets.core.events import EVENTS_SCHEMA
from proactive_assets.core.evidence.networks import AWS, Networks, load_networks
from proactive_assets.core.ipnet import parse_ips
from proactive_assets.core.sorting import distinct_keys, numbered

MAX_SOURCE_FILES = 50
#: User agents kept per pair (the first ones in sorted order).
MAX_USER_AGENTS = 10
#: errorCode values that mean the caller was refused (AccessDenied, EC2's UnauthorizedOperation...).
ACCESS_DENIED = r"(AccessDenied|AccessDeniedException|^(Client\.)?UnauthorizedOperation)$"

LEARNING_SET_SCHEMA = pa.schema(
    [
        ("entity", pa.string()),
        ("source_ip", pa.string()),
        ("event_count", pa.int64()),
        ("error_count", pa.int64()),
        ("first_seen", pa.timestamp("ms", tz="UTC")),
        ("last_seen", pa.timestamp("ms", tz="UTC")),
        ("event_names", pa.list_(pa.string())),
        ("identity_types", pa.list_(pa.string())),
        ("accounts", pa.list_(pa.string())),
        ("regions", pa.list_(pa.string())),
        ("sources", pa.list_(pa.string())),
        ("source_files", pa.list_(pa.string())),
        ("source_file_count", pa.int64()),
        ("write_event_names", pa.list_(pa.string())),
        ("user_agents", pa.list_(pa.string())),
        ("access_denied_count", pa.int64()),
        ("address_scope", pa.string()),
    ]
)
#: ``address_scope`` values: who owns the address (``core.evidence.networks``): a private range
#: (RFC 1918, CGNAT, loopback, link-local, ULA), AWS, or anything else on the internet.
SCOPE_PRIVATE, SCOPE_AWS, SCOPE_PUBLIC = "private", "aws", "public"

PAIR_COLUMNS = [
    "event_time",
    "event_name",
    "identity_arn",
    "identity_type",
    "account",
    "region",
    "source_ip",
    "error_code",
    "read_only",
    "user_agent",
    "event_id",
    "source",
    "source_file",
    "event_count",
    "last_event_time",
]
#: Columns an event table may have beyond ``EVENTS_SCHEMA`` (Security Lake's network pairs: one row
#: stands for ``event_count`` events until ``last_event_time``); absent, a row is one event.
COUNT_COLUMNS = {"event_count": pa.int64(), "last_event_time": pa.timestamp("ms", tz="UTC")}
#: What makes two rows the same event (see the module docstring).
EVENT_KEY = ["event_id", "identity_arn", "source_ip", "event_time"]
#: What the aggregation reads of each kept pair event: the event id only told duplicates apart, and
#: the first pass numbered the pairs.
_AGGREGATED_COLUMNS = [c for c in PAIR_COLUMNS if c not in ("event_id", "identity_arn", "source_ip")]
#: Columns of few distinct values, read from a file dictionary-encoded (as Parquet stores them):
#: aggregated by their codes, a day's millions of rows are never materialised as strings.
_FEW_VALUES = ("event_name", "identity_type", "account", "region", "error_code", "user_agent", "source", "source_file")


EventSource = pa.Table | str
"""Pair events: an in-memory table, or the path of a Parquet file read batch by batch."""

BATCH_ROWS = 256_000
_LIST_COLUMNS = {
    "event_names": "event_name",
    "identity_types": "identity_type",
    "accounts": "account",
    "regions": "region",
    "sources": "source",
    "source_files": "source_file",
    "write_event_names": "event_name",  # of the writes only (readOnly false)
    "user_agents": "user_agent",
}
#: Event columns of many distinct values: their lists are most of the work of adding a batch.
_MANY_VALUES = ("event_name", "source_file", "user_agent")
#: Each event column's list columns, those of many values first.
_LISTS_OF = {
    column: [name for name, of in _LIST_COLUMNS.items() if of == column]
    for column in dict.fromkeys((*_MANY_VALUES, *_LIST_COLUMNS.values()))
}


def _batches(source: EventSource, columns: list[str], dictionary: tuple[str, ...] = ()) -> Iterator[pa.Table]:
    """``columns`` of ``source`` batch by batch (``dictionary`` columns of a file dictionary-encoded)."""
    if isinstance(source, pa.Table):
        for batch in source.to_batches(max_chunksize=BATCH_ROWS):
            yield _complete(pa.Table.from_batches([batch], source.schema), columns)
        return
    parquet = pq.ParquetFile(source, read_dictionary=list(dictionary))
    present = set(parquet.schema_arrow.names)
    for batch in parquet.iter_batches(batch_size=BATCH_ROWS, columns=[c for c in columns if c in present]):
        yield _complete(pa.Table.from_batches([batch]), columns)


def _complete(table: pa.Table, columns: list[str]) -> pa.Table:
    """``columns`` of ``table``; one an older event table lacks (``read_only``) is all null."""
    names = set(table.column_names)
    types = {**{f.name: f.type for f in EVENTS_SCHEMA}, **COUNT_COLUMNS}
    return pa.table({c: table.column(c) if c in names else pa.nulls(table.num_rows, types[c]) for c in columns})


def first_occurrences(keys: pa.Table) -> np.ndarray:
    """True for the first row of each event (``EVENT_KEY``), and for every row without an eventID.

    CloudTrail may deliver a record twice (in different objects of the same day), and Security
    Lake keeps CloudTrail's eventID, so the same event can come from both. No Python object per
    event (``event_dedup``), so a multi-million-event day stays small.
    """
    return event_dedup.first_occurrences(keys, EVENT_KEY)


def _event_keys(source: EventSource) -> tuple[np.ndarray, pa.Table]:
    """(is_pair per row, the pair rows' EVENT_KEY columns, identity and address dictionary-encoded),
    read batch by batch so that only the pair rows' keys are ever held whole."""
    flags, keys = [], []
    for batch in _batches(source, ["is_pair", *EVENT_KEY], dictionary=("identity_arn", "source_ip")):
        is_pair = np.asarray(pc.fill_null(batch.column("is_pair"), False), dtype=bool)
        flags.append(is_pair)
        batch = batch.select(EVENT_KEY).filter(pa.array(is_pair))
        for name in ("identity_arn", "source_ip"):
            column = batch.column(name)
            if not pa.types.is_dictionary(column.type):
                batch = batch.set_column(batch.schema.get_field_index(name), name, pc.dictionary_encode(column))
        keys.append(batch)
    flag = np.concatenate(flags) if flags else np.zeros(0, dtype=bool)
    return flag, pa.concat_tables(keys) if keys else _empty_keys()


def _empty_keys() -> pa.Table:
    types = {name: EVENTS_SCHEMA.field(name).type for name in EVENT_KEY}
    for name in ("identity_arn", "source_ip"):
        types[name] = pa.dictionary(pa.int32(), pa.string())
    return pa.schema([(name, types[name]) for name in EVENT_KEY]).empty_table()


def _as_codes(keys: pa.Table) -> tuple[pa.Table, dict[str, pa.Array]]:
    """The dictionary columns of ``keys`` as their indices into one unified dictionary each, and
    those dictionaries."""
    keys = keys.unify_dictionaries()
    dictionaries = {}
    for name in ("identity_arn", "source_ip"):
        column = keys.column(name)
        dictionaries[name] = column.chunk(0).dictionary if column.num_chunks else pa.array([], pa.string())
        codes = pa.chunked_array([chunk.indices for chunk in column.chunks], column.type.index_type)
        keys = keys.set_column(keys.schema.get_field_index(name), name, codes)
    return keys, dictionaries


#: Most items each list column keeps (sorted, the first ones); ``source_file_count`` counts them all.
_LIST_LIMITS = {"user_agents": MAX_USER_AGENTS, "source_files": MAX_SOURCE_FILES}
_SUMS = ("event_count", "error_count", "access_denied_count")
_NO_TIME_MIN, _NO_TIME_MAX = np.iinfo(np.int64).max, np.iinfo(np.int64).min
_CODE_BITS = 32  # a (pair, value) key: the pair's index above, the value's code below
#: Keys are told apart by counting (not hashing or sorting) up to this many possible keys: pairs
#: ((identity, address) codes), and a batch's (pair, value) keys of a list column.
DENSE_PAIR_KEYS = 1 << 24
#: A list column's keys are merged into their distinct ones once the batches have added this many
#: (and twice as many as the last merge left): a pair in many batches brings its (pair, value)
#: keys again in each (a day of 300k pairs over 5M events held 31M keys, 6M of them distinct).
MERGE_KEYS = 1 << 20


def _codes(column: pa.ChunkedArray, known: dict[str, int]) -> np.ndarray:
    """Each row's value as a code into the day's values of its column (``known``: value -> code,
    grown by the values seen first here); -1 for null. By the batch's dictionary (a file's, or
    encoded here): only the distinct values go through Python."""
    column = column.combine_chunks()
    if not pa.types.is_dictionary(column.type):
        column = pc.dictionary_encode(column)
    dictionary = column.dictionary.to_pylist()
    mapping = np.array([-1 if v is None else known.setdefault(v, len(known)) for v in dictionary] + [-1], np.int64)
    indices = column.indices
    return mapping[np.asarray(indices.fill_null(len(mapping) - 1) if indices.null_count else indices, np.int64)]


def _times(column: pa.ChunkedArray, missing: int) -> np.ndarray:
    """A timestamp column as int64 milliseconds, ``missing`` for null."""
    return np.asarray(pc.fill_null(column.cast(pa.int64()), missing), np.int64)


def _distinct_pair_values(pair: np.ndarray, code: np.ndarray, values: int, pairs: int) -> np.ndarray:
    """The distinct (pair, value code) keys of some rows, sorted: by counting where there are few
    possible keys for the rows (a day of few pairs), else by sorting."""
    space = pairs * values
    if space <= min(DENSE_PAIR_KEYS, 4 * max(len(code), 1 << 14)):
        present = np.flatnonzero(np.bincount(pair * values + code, minlength=space))
        return ((present // values) << _CODE_BITS) | (present % values)
    return distinct_keys((pair << _CODE_BITS) | code)


class _PairTotals:
    """A day's per-pair aggregates, added up batch by batch by the pairs' indices (``pair`` per
    row, from the first pass): sums and min/max in arrays as long as the day's pairs, and for each
    list column the distinct (pair, value code) keys of each batch. No string is decoded until the
    end, and nothing is kept per event: a day of 300k pairs holds a few arrays of 300k, where
    aggregating each batch by its strings and merging the batches' aggregates took 28 s and 2.8 GB
    for 5M events."""

    def __init__(self, pairs: int) -> None:
        self.pairs = pairs
        self.sums = {name: np.zeros(pairs, np.int64) for name in _SUMS}
        self.first = np.full(pairs, _NO_TIME_MIN, np.int64)
        self.last = np.full(pairs, _NO_TIME_MAX, np.int64)
        # per event column: value -> code (write_event_names shares event_name's)
        self.values: dict[str, dict[str, int]] = {column: {} for column in _LIST_COLUMNS.values()}
        self.keys: dict[str, list[np.ndarray]] = {name: [] for name in _LIST_COLUMNS}  # each batch's distinct keys
        self.merged = dict.fromkeys(_LIST_COLUMNS, 0)  # how many the last merge left

    def add(self, batch: pa.Table, pair: np.ndarray, pool: ThreadPoolExecutor) -> list[Future]:
        """The batch's events (kept pair events, ``_AGGREGATED_COLUMNS``), of pairs ``pair``, added
        in parts on ``pool``'s threads: wait for the parts returned before the next batch. A part is
        the sums or one event column's lists, so each of the pairs' arrays and each column's value
        codes are written by one thread at a time, batch after batch."""
        columns, many = list(_LISTS_OF), len(_MANY_VALUES)  # the big parts first: the threads end together
        parts = [pool.submit(self._add_lists, batch, pair, column) for column in columns[:many]]
        parts.append(pool.submit(self._add_sums, batch, pair))
        return parts + [pool.submit(self._add_lists, batch, pair, column) for column in columns[many:]]

    def _add_sums(self, batch: pa.Table, pair: np.ndarray) -> None:
        weight = np.asarray(pc.fill_null(batch.column("event_count"), 1), np.int64)
        errors = batch.column("error_code").combine_chunks()
        if pa.types.is_dictionary(errors.type):  # a file's: each distinct code matched once
            denied = pc.take(pc.match_substring_regex(errors.dictionary, ACCESS_DENIED), errors.indices)
        else:
            denied = pc.match_substring_regex(errors, ACCESS_DENIED)
        denied = np.asarray(pc.fill_null(denied, False), bool)
        np.add.at(self.sums["event_count"], pair, weight)
        np.add.at(self.sums["error_count"], pair, weight * np.asarray(pc.is_valid(errors), bool))
        np.add.at(self.sums["access_denied_count"], pair, weight * denied)
        np.minimum.at(self.first, pair, _times(batch.column("event_time"), _NO_TIME_MIN))
        last = pc.coalesce(batch.column("last_event_time"), batch.column("event_time"))
        np.maximum.at(self.last, pair, _times(last, _NO_TIME_MAX))

    def _add_lists(self, batch: pa.Table, pair: np.ndarray, column: str) -> None:
        """The (pair, value) keys of the list columns of event column ``column``."""
        code = _codes(batch.column(column), self.values[column])
        for name in _LISTS_OF[column]:
            valid = code >= 0
            if name == "write_event_names":
                valid &= np.asarray(pc.fill_null(pc.equal(batch.column("read_only"), False), False), bool)
            keys = self.keys[name]
            keys.append(_distinct_pair_values(pair[valid], code[valid], len(self.values[column]), self.pairs))
            if sum(len(k) for k in keys) > max(MERGE_KEYS, 2 * self.merged[name]):
                keys[:] = [distinct_keys(np.concatenate(keys), in_place=True)]
                self.merged[name] = len(keys[0])

    def table(self, entity: pa.Array, address: pa.Array) -> pa.Table:
        """The pairs' rows (``entity`` and ``address`` their identity and address, in pair order)."""
        columns: dict[str, pa.Array] = {"entity": entity, "source_ip": address}
        columns.update({name: pa.array(total) for name, total in self.sums.items()})
        for name, times, missing in (("first_seen", self.first, _NO_TIME_MIN), ("last_seen", self.last, _NO_TIME_MAX)):
            columns[name] = pa.array(times, pa.timestamp("ms", tz="UTC"), mask=times == missing)
        with ThreadPoolExecutor(2, thread_name_prefix="learning-set-lists") as pool:  # sorts and takes: no GIL
            for name, (lists, counts) in zip(_LIST_COLUMNS, pool.map(self._lists, _LIST_COLUMNS), strict=True):
                columns[name] = lists
                if name == "source_files":
                    columns["source_file_count"] = pa.array(counts, pa.int64())
        return pa.table(columns)

    def _lists(self, name: str) -> tuple[pa.ListArray, np.ndarray]:
        """(each pair's distinct values of list column ``name``, sorted, at most its limit; how many
        there were before the cut)."""
        values = pa.array(list(self.values[_LIST_COLUMNS[name]]), pa.string())
        order = np.asarray(pc.sort_indices(values), np.int64)  # the values' sorted order: a code's rank
        rank = np.empty(len(values), np.int64)
        rank[order] = np.arange(len(values))
        batches = self.keys.pop(name)  # let go of each column's keys as soon as its lists are made
        keys = np.concatenate(batches) if batches else np.zeros(0, np.int64)
        del batches
        width = max(1, len(values))
        # (pair, value rank) keys, in place: two columns are made at once, each over millions of keys
        ranked = rank[keys & ((1 << _CODE_BITS) - 1)]
        keys >>= _CODE_BITS
        keys *= width
        keys += ranked
        del ranked
        kept = distinct_keys(keys, in_place=True)
        del keys
        kept_pair, kept_value = np.divmod(kept, width)
        kept_value = order[kept_value]
        counts = np.bincount(kept_pair, minlength=self.pairs)
        limit = _LIST_LIMITS.get(name)
        if limit is not None and (counts > limit).any():
            starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
            first = np.arange(len(kept)) - starts[kept_pair] < limit
            kept_value, shown = kept_value[first], np.minimum(counts, limit)
        else:
            shown = counts
        offsets = np.concatenate([[0], np.cumsum(shown)]).astype(np.int32)
        return pa.ListArray.from_arrays(pa.array(offsets), pc.take(values, pa.array(kept_value))), counts


def _pair_index(keys: pa.Table, dictionaries: dict[str, pa.Array]) -> tuple[np.ndarray, pa.Array, pa.Array]:
    """(each row's pair: an index into the day's distinct (identity, address) pairs, numbered in
    the learning set's order, by identity then address; each pair's identity; each pair's address)
    for ``keys`` with its identity and address as codes (``_as_codes``). Nulls sort last, as Arrow sorts."""
    entity, entities = _ranked(keys.column("identity_arn"), dictionaries["identity_arn"])
    address, addresses = _ranked(keys.column("source_ip"), dictionaries["source_ip"])
    width = len(addresses) + 1
    pair, distinct = numbered(entity * width + address, (len(entities) + 1) * width, DENSE_PAIR_KEYS)

    def decoded(codes: np.ndarray, values: pa.Array) -> pa.Array:
        return pc.take(values, pa.array(codes, pa.int64(), mask=codes == len(values)))

    return pair, decoded(distinct // width, entities), decoded(distinct % width, addresses)


def _ranked(codes: pa.ChunkedArray, dictionary: pa.Array) -> tuple[np.ndarray, pa.Array]:
    """(each row's value as its rank in ``dictionary``'s sorted order, null as the last rank; the
    dictionary sorted)."""
    order = np.asarray(pc.sort_indices(dictionary), np.int64)
    rank = np.empty(len(order) + 1, np.int64)
    rank[order] = np.arange(len(order))
    rank[-1] = len(order)  # null: -1 below
    return rank[np.asarray(codes.fill_null(-1), np.int64)], dictionary.take(pa.array(order))


def build_learning_set(*sources: EventSource, networks: Networks | None = None) -> tuple[pa.Table, dict[str, int]]:
    """The learning set of a day from its event sources (CloudTrail, Security Lake), streamed.

    Two passes over the sources: the first reads only ``is_pair`` and the event keys (identity
    and address as dictionary codes) to find the first copy of every event and number the day's
    pairs; the second adds up each batch's kept events by pair (``_PairTotals``). Memory is bounded
    by one batch, the pair events' keys and the per-pair aggregates, not by the day's events.
    ``networks`` (default: the bundled ranges) says who owns each address, for ``address_scope``.
    """
    if not sources:
        return LEARNING_SET_SCHEMA.empty_table(), {"events": 0, "pair_events": 0, "duplicate_events": 0, "pairs": 0}
    total, is_pair, pair_keys = 0, [], []
    for source in sources:  # one source's keys at a time: only the pair events' keys stay in memory
        flags, keys = _event_keys(source)
        total += len(flags)
        is_pair.append(flags)
        pair_keys.append(keys)
    del keys  # the loop's last table, else it stays alive through the second pass
    codes, dictionaries = _as_codes(pa.concat_tables(pair_keys))
    del pair_keys
    keep_pairs = first_occurrences(codes)
    stats = {"events": total, "pair_events": int(keep_pairs.sum()), "duplicate_events": int((~keep_pairs).sum())}
    if not keep_pairs.any():
        stats["pairs"] = 0
        return LEARNING_SET_SCHEMA.empty_table(), stats
    pair, entity, address = _pair_index(
        codes.select(["identity_arn", "source_ip"]).filter(pa.array(keep_pairs)), dictionaries
    )
    del codes
    totals = _PairTotals(len(entity))
    offset = taken = 0
    # each batch is added on two threads while the next one is read; one batch at a time, in order
    with ThreadPoolExecutor(2, thread_name_prefix="learning-set") as pool:
        adding: list[Future] = []
        for source, pair_mask in zip(sources, is_pair, strict=True):
            keep = np.zeros(len(pair_mask), dtype=bool)
            keep[pair_mask] = keep_pairs[offset : offset + int(pair_mask.sum())]
            offset += int(pair_mask.sum())
            start = 0
            for batch in _batches(source, _AGGREGATED_COLUMNS, dictionary=_FEW_VALUES):
                mask = keep[start : start + batch.num_rows]
                start += batch.num_rows
                kept = int(mask.sum())
                if kept:
                    part = batch.filter(pa.array(mask))
                    for future in adding:
                        future.result()
                    adding = totals.add(part, pair[taken : taken + kept], pool)
                    taken += kept
        for future in adding:
            future.result()
    table = totals.table(entity, address)
    table = table.append_column("address_scope", address_scopes(table.column("source_ip"), networks))
    table = table.select(LEARNING_SET_SCHEMA.names).cast(LEARNING_SET_SCHEMA)  # sorted: pairs are numbered so
    stats["pairs"] = table.num_rows
    stats["entities"] = len(pc.unique(table.column("entity")))
    return table, stats


def table_digest(table: pa.Table) -> str:
    """Content digest of a (sorted) table: the data version of ``learning_set``."""
    import hashlib

    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return hashlib.sha256(sink.getvalue().to_pybytes()).hexdigest()[:24]


def address_scopes(addresses: pa.Array | pa.ChunkedArray, networks: Networks | None = None) -> pa.Array:
    """``address_scope`` of each address: ``private``, ``aws`` or ``public`` (default ranges: the bundled ones)."""
    values = addresses.combine_chunks() if isinstance(addresses, pa.ChunkedArray) else addresses
    if len(values) == 0:
        return pa.array([], pa.string())
    networks = networks or load_networks()
    is6, hi, lo = parse_ips(values)
    owner = networks.lookup(is6, hi, lo)
    code = np.where(owner.private, 0, np.where(owner.provider == AWS, 1, 2))
    return pa.array(np.array([SCOPE_PRIVATE, SCOPE_AWS, SCOPE_PUBLIC], dtype=object)[code], pa.string())


@dataclass(frozen=True)
class SageMakerCsv:
    """``learning.csv``: its bytes, and what it left out (SageMaker IP Insights reads IPv4 only)."""

    data: bytes
    lines: int
    skipped_ipv6: int
    skipped_invalid: int


def sagemaker_csv(learning_set: pa.Table) -> SageMakerCsv:
    """Headerless ``entity,ip`` CSV, one line per pair of the day, the way SageMaker IP Insights trains on it.

    One line per (entity, address) and day, whatever the pair's event count: a busy pair repeated
    once per event made a 1M-flow object's single pair 500,000 identical lines, and the algorithm
    learns which addresses an entity uses, not how often. IPv4 only (IPv4-mapped IPv6 becomes
    IPv4; other IPv6 is skipped and counted), entities percent-escaped as the SageMaker backend
    writes them (``backends.sagemaker.training_data``).
    """
    from proactive_assets.core.backends.sagemaker.training_data import prepare_pairs

    prepared = prepare_pairs(learning_set.column("entity").to_pylist(), learning_set.column("source_ip").to_pylist())
    data = "".join(f"{line}\n" for line in prepared.lines).encode()
    return SageMakerCsv(data, len(prepared.lines), prepared.skipped_ipv6, prepared.skipped_invalid)
