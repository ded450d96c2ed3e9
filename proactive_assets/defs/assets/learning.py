"""learning_set: one row per (entity, source_ip) of the day, from every log source's event table."""

from contextlib import ExitStack

import pyarrow.compute as pc
import pyarrow.parquet as pq
from dagster import (
    AssetExecutionContext,
    AssetKey,
    AssetsDefinition,
    DailyPartitionsDefinition,
    DataVersion,
    Failure,
    MaterializeResult,
    asset,
)

from proactive_assets.core import pairs
from proactive_assets.core.evidence.networks import load_networks
from proactive_assets.defs import tables
from proactive_assets.defs.metadata import table_preview
from proactive_assets.defs.partitions import partition_day
from proactive_assets.defs.resources import ProactiveResource


def learning_assets(partitions: DailyPartitionsDefinition) -> list[AssetsDefinition]:
    @asset(
        name=tables.LEARNING_SET,
        partitions_def=partitions,
        deps=[AssetKey(name) for name in tables.EVENT_TABLES],
        group_name="ingest",
        code_version="4",
        description=(
            "One row per (entity, source_ip) of the day from every log source (CloudTrail, Security Lake): "
            "counts, first/last seen, event names, sources."
        ),
    )
    def learning_set(context: AssetExecutionContext, proactive: ProactiveResource) -> MaterializeResult:
        day = partition_day(context)
        warehouse = proactive.warehouse()
        pair_events: dict[str, int] = {}
        with ExitStack() as stack:
            sources = []
            for name in tables.EVENT_TABLES:
                # A source whose partition was never materialised (say, no Security Lake) adds nothing.
                if not warehouse.has(name, day):
                    context.log.info(f"no {name} partition for {day}: it adds no pairs")
                    pair_events[name] = 0
                    continue
                path = stack.enter_context(warehouse.local_file(name, day))
                pair_events[name] = int(pc.sum(pq.read_table(path, columns=["is_pair"]).column("is_pair")).as_py() or 0)
                sources.append(path)
            if not sources:
                raise Failure(f"no event table for {day}: materialise {', '.join(tables.EVENT_TABLES)} first")
            networks = load_networks(proactive.settings.aws_ip_ranges, proactive.settings.cache_folder)
            table, stats = pairs.build_learning_set(*sources, networks=networks)
        csv = pairs.sagemaker_csv(table)
        with warehouse.partition(tables.LEARNING_SET, day) as out:
            out.write_table(tables.LEARNING_SET, table)
            out.write_bytes(tables.SAGEMAKER_CSV, csv.data)
        if table.num_rows == 0:
            context.log.warning(f"learning set for {day} is empty")
        return MaterializeResult(
            data_version=DataVersion(pairs.table_digest(table)),
            metadata={
                **{k: int(v) for k, v in stats.items()},
                "pair_events_by_table": pair_events,
                "sources": sorted(pc.unique(pc.list_flatten(table.column("sources"))).to_pylist()),
                "table": warehouse.uri_for(tables.LEARNING_SET, day),
                "sagemaker_csv": warehouse.store.uri_for(warehouse.key(tables.LEARNING_SET, day, tables.SAGEMAKER_CSV)),
                "sagemaker_csv_lines": csv.lines,
                "sagemaker_csv_skipped_ipv6": csv.skipped_ipv6,
                "address_scopes": {
                    str(v["values"]): int(v["counts"])
                    for v in pc.value_counts(table.column("address_scope")).to_pylist()
                },
                "preview": table_preview(table, ["entity", "source_ip", "event_count", "event_names", "accounts"]),
            },
        )

    return [learning_set]
