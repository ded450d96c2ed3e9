"""Log sources: one module per source, each with the same three functions.

A source module (``cloudtrail``, ``security_lake``) provides:

* ``NAME``: its name in metadata and run tags;
* ``list_day(store, day, accounts, regions) -> DayListing``: the objects of one day partition,
  and what was found there but cannot be read (reported, never silently skipped);
* ``object_day(key, accounts, regions) -> date | None``: the partition an object key belongs to
  (what the sensors use; the key layout is written once, in the source module);
* ``read(store, objects) -> Iterator[EventBatch]``: the objects' rows in ``EVENTS_SCHEMA``, with a
  ``Problem`` for whatever cannot be used; one object's content never raises out of ``read``.

``events.write_events`` streams any source's batches into its partition with the quarantine. To
add a source (VPC Flow Logs delivered straight to S3, GuardDuty findings...), write one such
module and register it in ``proactive_assets/defs/sources.py``.
"""

from collections.abc import Iterable, Iterator
from datetime import date
from typing import Any, Protocol

from proactive_assets.core.events import DayListing, EventBatch
from proactive_assets.core.storage import ObjectStore


class LogSource(Protocol):
    """The shape every source module has (a module satisfies it as it is)."""

    NAME: str

    def list_day(
        self, store: ObjectStore, day: date, accounts: Iterable[str] = (), regions: Iterable[str] = ()
    ) -> DayListing: ...

    def object_day(self, key: str, accounts: Iterable[str] = (), regions: Iterable[str] = ()) -> date | None: ...

    def read(self, store: ObjectStore, objects: Any) -> Iterator[EventBatch]: ...
