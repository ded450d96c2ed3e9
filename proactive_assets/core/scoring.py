"""Score a day's pairs with a model: the ``daily_insights`` table."""

from collections.abc import Callable
from datetime import date

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from proactive_assets.core.model import ScoreResult

EPOCH = date(1970, 1, 1)  # date32's day 0

Column = pa.Array | pa.ChunkedArray
Scorer = Callable[[Column, Column], ScoreResult]
"""Scores (entity, source_ip) pairs given as two pyarrow string columns of the same length, in
row order. The local model (``IPInsightsModel.score``) works on the Arrow buffers directly, so
no Python string is made per pair; the SageMaker backend's ``RemoteScorer`` converts them for its client."""

#: Learning-set columns an analyst needs in an alert, passed through when the learning set has them
#: (partitions written before a column existed simply lack it; the alerts then say "not known").
ANALYST_COLUMNS = ("error_count", "access_denied_count", "write_event_names", "user_agents")


def score_learning_set(learning_set: pa.Table, score: Scorer, model_version: str, day: date) -> pa.Table:
    """Every pair of the day scored by ``score`` alone (the IP Insights model's own insight)."""
    n = learning_set.num_rows
    result = (
        score(learning_set.column("entity"), learning_set.column("source_ip"))
        if n
        else ScoreResult(np.zeros(0, np.float32), np.zeros(0, np.float32), np.zeros(0, bool))
    )
    return insights_table(learning_set, result, model_version, day)


def insights_table(
    learning_set: pa.Table,
    result: ScoreResult,
    model_version: str,
    day: date,
    evidence: dict[str, pa.Array] | None = None,
) -> pa.Table:
    """The ``daily_insights`` table: every pair with its ``insight`` (higher = more suspicious).

    Rows stay in the learning set's order (by entity, then address), so the learning set's columns
    are passed through without a copy: sorting a million rows riskiest first cost more than
    scoring them, for readers that want only the top rows or only those past the threshold
    (``riskiest_first``). ``evidence`` adds columns (what the detector found about each pair), in
    the same order (``DayScores.evidence_columns``).
    """
    n = learning_set.num_rows
    columns = {
        "entity": learning_set.column("entity"),
        "source_ip": learning_set.column("source_ip"),
        "insight": pa.array(np.asarray(result.insight, dtype=np.float64)),
        "dot_product": pa.array(np.asarray(result.dot_product, dtype=np.float64)),
        "event_count": learning_set.column("event_count"),
        "event_names": learning_set.column("event_names"),
        "model_version": pa.repeat(pa.scalar(model_version, pa.string()), n),
        "entity_known": pa.array(np.asarray(result.entity_known, dtype=bool)),
        "first_seen": learning_set.column("first_seen"),
        "last_seen": learning_set.column("last_seen"),
        "accounts": learning_set.column("accounts"),
        "regions": learning_set.column("regions"),
        "sources": learning_set.column("sources"),
        "source_files": learning_set.column("source_files"),
        "day": pa.array(np.full(n, (day - EPOCH).days, np.int32)).view(pa.date32()),  # (pa.repeat: 4x as long)
    }
    for name in ANALYST_COLUMNS:
        if name in learning_set.column_names:
            columns[name] = learning_set.column(name)
    columns.update(evidence or {})
    return pa.table(columns)


#: The order people read insights in: the most suspicious first, ties by entity and address.
RISKIEST_FIRST = [("insight", "descending"), ("entity", "ascending"), ("source_ip", "ascending")]


def riskiest_first(insights: pa.Table, limit: int | None = None) -> pa.Table:
    """``insights`` (or its ``limit`` riskiest rows) riskiest first; a top-k selection when limited."""
    if limit is not None and limit < insights.num_rows:
        return insights.take(pc.select_k_unstable(insights, limit, RISKIEST_FIRST))
    return insights.take(pc.sort_indices(insights, RISKIEST_FIRST))


def insight_histogram(insights: pa.Table, bins: int = 20) -> tuple[list[float], list[int]]:
    """Counts of pairs per insight bin in [0, 1]: for the distribution plot."""
    values = np.asarray(insights.column("insight").to_numpy(zero_copy_only=False), dtype=np.float64)
    counts, edges = np.histogram(values, bins=bins, range=(0.0, 1.0))
    return [float(e) for e in edges], [int(c) for c in counts]


def count_at_or_above(insights: pa.Table, threshold: float) -> int:
    if insights.num_rows == 0:
        return 0
    return int(pc.sum(pc.greater_equal(insights.column("insight"), threshold)).as_py() or 0)
