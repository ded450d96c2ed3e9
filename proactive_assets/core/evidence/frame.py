"""A training window's rows as codes: what ``train_detector`` computes everything from.

IP Insights needs only the rows' identity and address codes (``WindowCodes``); the evidence also
needs the addresses parsed and owned, the people behind the identities and what each row did
(``Frame``). ``train_detector`` builds the codes, starts IP Insights on them, and builds the rest
on the other core meanwhile.
"""

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa

from proactive_assets.core.evidence.history import Behaviour, History, build_history, extend_history
from proactive_assets.core.evidence.keys import AddressBook, address_book
from proactive_assets.core.evidence.networks import Networks
from proactive_assets.core.evidence.persons import person_codes
from proactive_assets.core.evidence.window import WindowIndex, coded_items, encoded, indices, ipv4_networks
from proactive_assets.core.sorting import sort_keys

#: What IP Insights' training reads of the window's rows, with either backend.
IP_INSIGHTS_COLUMNS = ("entity", "source_ip", "event_count", "day")


def _behaviour(table: pa.Table) -> tuple[Behaviour, dict[str, pd.Index]]:
    """The rows' API calls and user agents, each coded in its own vocabulary (returned too)."""
    pieces, vocabulary = {}, {}
    for name in ("event_names", "user_agents"):
        rows, code, distinct = coded_items(table, name)
        pieces[name] = (rows, code)
        vocabulary[name] = pd.Index(distinct.to_numpy(zero_copy_only=False), dtype=object)
    events = (
        table.column("event_count").to_numpy(zero_copy_only=False).astype(np.float64)
        if "event_count" in table.column_names
        else np.ones(table.num_rows)
    )
    return Behaviour(*pieces["event_names"], *pieces["user_agents"], events), vocabulary


@dataclass
class WindowCodes:
    """The window's rows as codes: identities and addresses (each in order of first appearance) and days."""

    entities: pd.Index
    entity: np.ndarray
    address: np.ndarray
    day: np.ndarray
    texts: tuple[pa.Array, pa.Array]  # the identities and the addresses as Arrow strings, by code

    @classmethod
    def of(cls, training_set: pa.Table) -> "WindowCodes":
        # the two columns are hashed on both cores (Arrow lets go of the GIL): 2.2M rows of each at
        # the IP Insights tutorial's scale take ~0.4 s apiece
        with ThreadPoolExecutor(1, thread_name_prefix="window-addresses") as pool:
            address_future = pool.submit(encoded, training_set.column("source_ip"))
            entity = encoded(training_set.column("entity"))
            address = address_future.result()
        n = training_set.num_rows
        days = training_set.column("day").cast(pa.int32()).to_numpy(zero_copy_only=False) if n else np.zeros(0, int)
        return cls(
            pd.Index(entity.dictionary.to_pandas()),
            indices(entity),
            indices(address),
            days.astype(np.int64),
            (entity.dictionary, address.dictionary),
        )

    def coded(self, training_set: pa.Table, rows: np.ndarray) -> pa.Table:
        """``training_set``'s ``rows`` (a mask), its ``IP_INSIGHTS_COLUMNS`` only, with entity and
        source_ip as dictionary arrays of these codes, each dictionary only the values those rows use:
        IP Insights then takes the codes (``ipinsights.factorize``) instead of hashing two million
        strings again. (The list columns, API calls and user agents, are most of a filter's time.)"""
        names = [name for name in IP_INSIGHTS_COLUMNS if name in training_set.column_names]
        table = training_set.select(names).filter(pa.array(rows))

        def column(codes: np.ndarray, texts: pa.Array) -> pa.DictionaryArray:
            used = np.zeros(len(texts), bool)
            used[codes] = True
            remap = np.cumsum(used) - 1
            return pa.DictionaryArray.from_arrays(pa.array(remap[codes].astype(np.int32)), texts.filter(used))

        for name, codes, texts in (("entity", self.entity, self.texts[0]), ("source_ip", self.address, self.texts[1])):
            table = table.set_column(table.column_names.index(name), name, column(codes[rows], texts))
        return table

    def established(self, before: int) -> np.ndarray:
        """Rows whose (identity, address) pair was first seen before day ``before``."""
        pair = self.entity * np.int64(max(len(self.texts[1]), 1)) + self.address
        early = sort_keys(pair[self.day < before])
        if len(early) == 0:
            return np.zeros(len(pair), bool)
        slot = np.minimum(np.searchsorted(early, pair), len(early) - 1)
        return early[slot] == pair


@dataclass
class Frame(WindowCodes):
    """The window's codes with its addresses parsed (``book``, in address code order), what each row
    did, and the person behind each identity."""

    book: AddressBook
    behaviour: Behaviour
    vocabulary: dict[str, pd.Index]
    persons: np.ndarray  # person code per identity code

    @classmethod
    def build(cls, training_set: pa.Table, networks: Networks, codes: WindowCodes | None = None) -> "Frame":
        """The frame of ``training_set`` (``codes``: its ``WindowCodes``, when already built)."""
        codes = codes or WindowCodes.of(training_set)
        behaviour, vocabulary = _behaviour(training_set)
        return cls(
            codes.entities,
            codes.entity,
            codes.address,
            codes.day,
            codes.texts,
            address_book(codes.texts[1], networks),
            behaviour,
            vocabulary,
            person_codes(codes.entities),
        )

    def history(self, before: int) -> History:
        """The history of the rows before day ``before``."""
        rows = np.flatnonzero(self.day < before)
        return build_history(
            self.entity[rows],
            self.address[rows],
            self.day[rows],
            self.book,
            len(self.entities),
            self.behaviour.take(rows),
        )

    def extended(self, history: History, day: int) -> History:
        """``history`` (of the rows before ``day``) with the rows of ``day`` added."""
        on = np.flatnonzero(self.day == day)
        return extend_history(history, self.entity[on], self.address[on], day, self.book, self.behaviour.take(on))

    def index(self, history: History | None = None) -> WindowIndex:
        """The whole window indexed for scoring the next day (``history``: already built)."""
        n = len(self.entities)
        if history is None:
            history = build_history(self.entity, self.address, self.day, self.book, n, self.behaviour)
        vocabulary = self.vocabulary
        return WindowIndex(
            self.entities,
            vocabulary["event_names"],
            vocabulary["user_agents"],
            history,
            self.persons,
            ipv4_networks(self.book, history),
        )
