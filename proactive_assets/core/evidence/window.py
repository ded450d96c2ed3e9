"""What a model's training window says, indexed once when the model is trained and kept with it.

Scoring day D judges its pairs against the window D-W..D-1: novelty per prefix, other identities on
the address, churn, owners, API calls and user agents (``history.History``). Rebuilding that index
from the window's rows every day cost far more than scoring (at the IP Insights tutorial's scale,
2.1M window rows: about 25 s of string coding and sorting against 1 s of IP Insights), so
``train_detector`` builds it once and the model's partition stores it beside the weights. The
identities and the API-call and user-agent vocabularies are kept as text, so a day is coded
against the index without the window's rows.
"""

from collections.abc import Iterable
from dataclasses import dataclass, fields

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from proactive_assets.core.arrow_codes import dictionary_encoded
from proactive_assets.core.evidence.compiled import kernels
from proactive_assets.core.evidence.history import Behaviour, History, lookup_count
from proactive_assets.core.evidence.keys import LEVELS, AddressBook, coded_addresses, level_keys
from proactive_assets.core.evidence.persons import person_codes
from proactive_assets.core.npz import npz_arrays, npz_bytes
from proactive_assets.core.sorting import distinct_keys

#: History fields with one value per identity code, and what an identity with no rows in the
#: window gets there (as ``build_history`` gives it; unlisted ones get 0).
_PER_IDENTITY = (
    "known",
    "days",
    "churn_24",
    "churn_16",
    "networks_16",
    "aws_share",
    "cloud_share",
    "families",
    "has_agents",
)
_ABSENT = {"churn_24": 0.5, "churn_16": 0.5}
_PER_LEVEL = ("seen", "org_keys", "org_counts")
_TEXTS = ("entities", "actions", "agents")
#: The IPv4 prefix length of each level (the address, then ``keys.LEVELS``).
_IPV4_BITS = (32, *(v4 for v4, _ in LEVELS))
#: Levels of at most this many bits are counted by a table of every prefix (the /16s, /12s: a
#: million addresses' counts 4.3 -> ~1.5 ms a level, where a merge in ascending order wrote each
#: count to its address's place at random).
_DENSE_BITS = 16
#: The History fields a stored index holds (``tallies`` serve training only).
_STORED = tuple(f.name for f in fields(History) if f.name != "tallies")
FORMAT = 1


def _pack_texts(values: pd.Index) -> tuple[np.ndarray, np.ndarray]:
    array = pa.array(values.to_numpy(dtype=object), pa.string())
    offsets = np.frombuffer(array.buffers()[1], np.int32, len(array) + 1, array.offset * 4).copy()
    data = array.buffers()[2]
    blob = np.frombuffer(data, np.uint8).copy() if data is not None else np.zeros(0, np.uint8)
    return offsets, blob


def _unpack_texts(offsets: np.ndarray, blob: np.ndarray) -> pd.Index:
    array = pa.StringArray.from_buffers(len(offsets) - 1, pa.py_buffer(offsets), pa.py_buffer(blob))
    return pd.Index(array.to_numpy(zero_copy_only=False), dtype=object)


@dataclass
class DayCodes:
    """A day's pairs coded against a window: identity codes (new identities after the window's),
    address codes into the day's own address book, and what each pair did."""

    entity: np.ndarray
    address: np.ndarray
    book: AddressBook
    behaviour: Behaviour
    identities: int  # the window's identities plus the day's new ones
    persons: np.ndarray  # person code per identity code (``persons.person_codes``)


@dataclass
class WindowIndex:
    """A window's ``History`` with the identities and vocabularies its codes refer to."""

    entities: pd.Index
    actions: pd.Index
    agents: pd.Index
    history: History
    persons: np.ndarray  # person code per identity (``persons.person_codes``: 10k names parsed, ~40 ms a day)
    #: per level, the window's IPv4 networks and their identities (``ipv4_networks``); None in an
    #: index stored before they were kept
    ipv4: list[tuple[np.ndarray, np.ndarray]] | None = None

    def to_bytes(self) -> bytes:
        """An ``.npz`` of plain arrays (no pickled objects, so loading it runs no code)."""
        arrays: dict[str, np.ndarray] = {"format": np.array([FORMAT]), "persons": self.persons}
        for name in _TEXTS:
            arrays[f"{name}_offsets"], arrays[f"{name}_text"] = _pack_texts(getattr(self, name))
        for name in _STORED:
            value = getattr(self.history, name)
            if name in _PER_LEVEL:
                for level, part in enumerate(value):
                    arrays[f"{name}_{level}"] = part
            else:
                arrays[name] = value
        for level, (keys, counts) in enumerate(self.ipv4 or []):
            arrays[f"ipv4_keys_{level}"], arrays[f"ipv4_counts_{level}"] = keys, counts
        return npz_bytes(arrays)

    @classmethod
    def from_bytes(cls, data: bytes | memoryview) -> "WindowIndex":
        z = npz_arrays(data)  # views of data: read every scored day, 92 MB at the tutorial's scale
        if int(z["format"][0]) != FORMAT:
            raise ValueError(f"window index format {int(z['format'][0])} is not {FORMAT}: retrain the model")
        texts = [_unpack_texts(z[f"{name}_offsets"], z[f"{name}_text"]) for name in _TEXTS]
        values = {}
        for name in _STORED:
            if name in _PER_LEVEL:
                values[name] = [z[f"{name}_{level}"] for level in range(4)]
            else:
                values[name] = z[name]
        # indexes kept before the persons were stored get them from the identities' names
        persons = z["persons"] if "persons" in z else person_codes(texts[0])
        # (indexes kept before the IPv4 networks were stored leave every count to the kernel's lookups)
        ipv4 = [(z[f"ipv4_keys_{k}"], z[f"ipv4_counts_{k}"]) for k in range(4)] if "ipv4_keys_0" in z else None
        return cls(*texts, History(**values), persons, ipv4)

    def code_day(
        self,
        table: pa.Table,
        entities: pa.DictionaryArray | None = None,
        addresses: tuple[np.ndarray, AddressBook] | None = None,
    ) -> DayCodes:
        """``table``'s (entity, source_ip) rows coded against this window; distinct values are coded
        once (the addresses without their owners: ``coded_addresses``). ``entities``: the entity
        column already ``encoded``; ``addresses``: its ``source_ip`` column already coded."""
        n = len(self.entities)
        entity_dict = encoded(table.column("entity")) if entities is None else entities
        names = entity_dict.dictionary.to_numpy(zero_copy_only=False)
        known = self.entities.get_indexer(names)
        new = known < 0
        known[new] = n + np.arange(int(new.sum()))
        address, book = coded_addresses(table.column("source_ip")) if addresses is None else addresses
        behaviour = Behaviour(
            *_coded_items(table, "event_names", self.actions),
            *_coded_items(table, "user_agents", self.agents),
            table.column("event_count").to_numpy().astype(np.float64)
            if "event_count" in table.column_names
            else np.ones(table.num_rows),
        )
        return DayCodes(
            known[indices(entity_dict)],
            address,
            book,
            behaviour,
            n + int(new.sum()),
            np.concatenate([self.persons, person_codes(names[new])]),
        )

    def address_counts(self, book: AddressBook, levels: Iterable[int] = range(4)) -> list[np.ndarray] | None:
        """How many of the window's identities used each of ``book``'s addresses' networks, at each
        of ``levels`` (``history.org_counts``), -1 where not counted here: the book's IPv4
        addresses, in ascending order (``ascending_v4``), are merged with the window's IPv4 networks
        (``ipv4``) in one pass each, and the judging kernel looks up only the rest. None for an
        index without them."""
        ascending = book.ascending_v4
        if self.ipv4 is None or ascending is None or not len(ascending):
            return None
        v4 = len(ascending)  # (the book's IPv4 addresses come first)
        columns = []
        for level in levels:
            (keys, counts), bits = self.ipv4[level], _IPV4_BITS[level]
            column = np.empty(len(book), np.int64)
            if bits <= _DENSE_BITS:  # every prefix's count in a table: read in the book's order, no merge
                dense = np.zeros(1 << bits, np.int64)
                dense[keys] = counts
                np.take(dense, book.lo[:v4] >> np.uint64(32 - bits), out=column[:v4], mode="clip")
            else:
                sorted_counts(keys, counts, book.ascending_v4_values, 32 - bits, column[:v4], ascending)
            column[v4:] = -1
            columns.append(column)
        return columns

    def history_for(self, identities: int) -> History:
        """The history with a default entry for each identity the window never saw (codes ``n..identities-1``)."""
        extra = identities - len(self.entities)
        if extra <= 0:
            return self.history
        values = {f.name: getattr(self.history, f.name) for f in fields(History)}
        for name in _PER_IDENTITY:
            value = values[name]
            fill = _ABSENT.get(name, 0)
            values[name] = np.concatenate([value, np.full(extra, fill, dtype=value.dtype)])
        return History(**values)


def ipv4_networks(book: AddressBook, history: History) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per level, the distinct IPv4 networks of ``book`` (a window's addresses; ascending uint32
    prefixes) and how many identities ``history`` (of that window) counts on each (int32): what
    ``WindowIndex.address_counts`` merges a day's addresses with."""
    values = distinct_keys(book.lo[~book.is6])
    keys = level_keys(np.zeros(len(values), bool), np.zeros(len(values), np.uint64), values)
    networks = []
    for level, bits in enumerate(_IPV4_BITS):
        prefix = values >> np.uint64(32 - bits)
        first = np.flatnonzero(np.r_[True, prefix[1:] != prefix[:-1]]) if len(prefix) else np.zeros(0, np.int64)
        # each network's key, of its first address
        counts = lookup_count(history.org_keys[level], history.org_counts[level], keys[level][first])
        networks.append((prefix[first].astype(np.uint32), counts.astype(np.int32)))
    return networks


def sorted_counts(
    keys: np.ndarray,
    counts: np.ndarray,
    values: np.ndarray,
    shift: int,
    out: np.ndarray | None = None,
    positions: np.ndarray | None = None,
) -> np.ndarray:
    """The count beside each value's prefix (``values >> shift``) among sorted distinct ``keys``, 0 where
    absent (into ``out``, int64, when given; with ``positions``, the i-th value's into
    ``out[positions[i]]``): one merge pass by the compiled ``kernels.sorted_counts`` for values in
    ascending order, else ``history.lookup_count``'s search."""
    out = np.empty(len(values), np.int64) if out is None else out
    if kernels is not None:
        kernels.sorted_counts(keys, counts, values, shift, out, positions)
        return out
    found = lookup_count(keys, counts, values >> np.uint64(shift))
    if positions is None:
        out[:] = found
    else:
        out[positions] = found
    return out


def encoded(column: pa.ChunkedArray | pa.Array) -> pa.DictionaryArray:
    """``column`` as a dictionary array: its distinct values in order of first appearance, and codes."""
    return dictionary_encoded(column.cast(pa.string()))


def indices(encoded: pa.DictionaryArray) -> np.ndarray:
    """The codes of a dictionary array as int64 (a null gets 0)."""
    return pc.fill_null(encoded.indices, 0).to_numpy(zero_copy_only=False).astype(np.int64)


def list_items(table: pa.Table, name: str) -> tuple[np.ndarray, pa.Array]:
    """(row index, value) of every item of a list column; nothing when the table lacks it."""
    if name not in table.column_names or table.num_rows == 0:
        return np.zeros(0, np.int64), pa.array([], pa.string())
    column = table.column(name).combine_chunks()
    return np.asarray(pc.list_parent_indices(column), np.int64), pc.list_flatten(column)


def coded_items(table: pa.Table, name: str) -> tuple[np.ndarray, np.ndarray, pa.Array]:
    """(row, code) of each non-null item of list column ``name``, and the distinct values the codes
    index (in order of first appearance)."""
    rows, values = list_items(table, name)
    coded = encoded(values)
    valid = coded.is_valid().to_numpy(zero_copy_only=False)
    return rows[valid], indices(coded)[valid], coded.dictionary


def _coded_items(table: pa.Table, name: str, vocabulary: pd.Index) -> tuple[np.ndarray, np.ndarray]:
    """(row, code) of each non-null item of list column ``name``, coded in ``vocabulary``; values the
    window never had get one code past it (they are all simply 'never seen')."""
    rows, code, distinct = coded_items(table, name)
    known = vocabulary.get_indexer(distinct.to_numpy(zero_copy_only=False))
    known[known < 0] = len(vocabulary)
    return rows, known[code].astype(np.int64)
