"""The rows of a day's tables the alerts step reads (no Dagster here).

A day's ``daily_insights`` table holds every pair (a million at the IP Insights tutorial's scale)
and its training window millions of rows; the alerts are a handful. Only the rows at the threshold,
the day's pairs on the alerts' addresses and the window's rows of the alerts' identities and
addresses become pandas for ``alerts.explain_alerts``: converting both whole cost 3.2 s before a
single alert was explained.
"""

from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from proactive_assets.core.alerts import DayLike, add_alert_ids, explain_alerts, select_alerts
from proactive_assets.core.training import training_pairs


def alert_candidates(insights: pa.Table, threshold: float) -> pd.DataFrame:
    """The rows of a ``daily_insights`` table that :func:`select_alerts` can keep, as pandas: the
    rows at or above ``threshold``, picked in Arrow (a million-pair day converted whole cost ~1.3 s
    for a few alerts)."""
    if "insight" not in insights.column_names:
        return insights.to_pandas()
    return insights.filter(pc.greater_equal(insights.column("insight"), float(threshold))).to_pandas()


def _is_in(column: pa.ChunkedArray, values: Any) -> pa.ChunkedArray:
    """Whether each row of ``column`` is one of ``values`` (a pandas column)."""
    value_type = column.type.value_type if pa.types.is_dictionary(column.type) else column.type
    return pc.is_in(column, value_set=pa.array(pd.unique(pd.Series(values, dtype=object)), value_type))


def pairs_on_addresses(table: pa.Table, alerts: pd.DataFrame) -> pd.DataFrame:
    """(entity, source_ip) of the rows of ``table`` on an alert's address: all that
    :func:`explain_alerts` reads of the day's pairs (``day_pairs``)."""
    pairs = table.select(["entity", "source_ip"])
    return pairs.filter(_is_in(pairs.column("source_ip"), alerts["source_ip"])).to_pandas()


def window_context(training_set: pa.Table, alerts: pd.DataFrame) -> pa.Table:
    """The rows of ``training_set`` :func:`explain_alerts` reads (through ``training_pairs``): the
    alerts' identities' and those on the alerts' addresses. A pair's rows share its identity and
    address, so every pair is kept whole or not at all."""
    mine = _is_in(training_set.column("entity"), alerts["entity"])
    theirs = _is_in(training_set.column("source_ip"), alerts["source_ip"])
    return training_set.filter(pc.or_(mine, theirs))


def day_alerts(
    insights: pa.Table,
    window_rows: pa.Table,
    threshold: float,
    day: DayLike,
    window: tuple[DayLike, DayLike] | None,
) -> pd.DataFrame:
    """A day's alerts, with ids and explained, from its ``daily_insights`` table and its training
    window's rows (``training.PAIR_COLUMNS`` at least): only the rows they need become pandas."""
    selected = add_alert_ids(select_alerts(alert_candidates(insights, threshold), threshold), day)
    context = training_pairs(window_context(window_rows, selected)).to_pandas()
    return explain_alerts(selected, context, pairs_on_addresses(insights, selected), window)
