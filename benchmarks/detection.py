"""Detection-quality and speed benchmark of the local IP Insights model on tutorial-style data.

    python -m benchmarks.detection [--users N] [--quick] [--set name=value ...]

Builds the IP Insights tutorial's synthetic logins (``benchmarks.tutorial_data``), trains on
the first 7 days (aggregated to (entity, ip, day) rows with event counts, as the pipeline's
training set is) with the default ``IPInsightsParams``, and evaluates on the last 3 days like
the tutorial: normal events of users seen in training (label 0) against the same number of
attacks, known users paired with an address from a uniformly random ASN (label 1).

Prints the AUC, the training time, a "new host in the usual /24 vs never-seen network" check,
and scoring throughput. The headline is what ``daily_insights`` does: the evaluation pairs as a
day's ``learning_set`` (distinct (entity, source_ip) rows with event counts, sorted as
``pairs.py`` writes them, written to and read back from a warehouse partition), scored from its
pyarrow ``entity`` and ``source_ip`` columns to dot products and insights. Beside it: the same
columns with the rows shuffled (no entity runs), the evaluation pairs from Python strings, and
the whole ``daily_insights`` table (scoring, output columns, riskiest-first sort). Because the
machine is noisy, these are reported next to baselines measured in the same run: a bare numpy
row-wise dot product of as many pre-gathered float32 rows, numpy gathers and dot products on
integer ids (the least an embedding scorer does once strings are ids), pyarrow's
dictionary-encoding of the two columns (strings to ids), and a pure-Python dict-lookup scorer
on a subset.
"""

import argparse
import dataclasses
import json
import resource
import tempfile
import time
from datetime import date

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from benchmarks import tutorial_data as td
from proactive_assets.core import scoring
from proactive_assets.core.heap import retain_freed_memory
from proactive_assets.core.ipnet import parse_ips
from proactive_assets.core.model import IPInsightsParams, roc_auc, train_ip_insights
from proactive_assets.core.model import ipinsights as ipi
from proactive_assets.core.pairs import LEARNING_SET_SCHEMA
from proactive_assets.core.storage import open_store
from proactive_assets.core.warehouse import Warehouse

REPEATS = 5  # every throughput figure, scorer and baseline alike, is the best of this many runs


def _parse_overrides(items: list[str]) -> dict:
    fields = {f.name: f for f in dataclasses.fields(IPInsightsParams)}
    out = {}
    for item in items:
        name, _, value = item.partition("=")
        if name not in fields:
            raise SystemExit(f"unknown parameter {name!r}")
        current = getattr(IPInsightsParams(), name)
        if isinstance(current, tuple):
            out[name] = tuple(int(v) for v in value.split(","))
        elif isinstance(current, bool):
            if value.lower() not in ("true", "false", "1", "0"):
                raise SystemExit(f"{name} takes true or false, not {value!r}")
            out[name] = value.lower() in ("true", "1")
        else:
            out[name] = type(current)(value)
    return out


def _best_of(fn, repeats: int) -> tuple[float, list[float], float]:
    """Best wall time, all wall times, and the process CPU time of the best run."""
    times, cpu = [], []
    for _ in range(repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        fn()
        times.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    best = int(np.argmin(times))
    return times[best], times, cpu[best]


def _learning_set(entities: np.ndarray, ips: np.ndarray, day: date) -> pa.Table:
    """The pairs as a day's ``learning_set`` partition, as ``daily_insights`` reads it: distinct
    (entity, source_ip) rows with their event counts, sorted by entity and address like
    ``pairs.py`` writes them, written to a warehouse (zstd parquet) and read back."""
    events = pa.table({"entity": pa.array(entities, pa.string()), "source_ip": pa.array(ips, pa.string())})
    rows = events.group_by(["entity", "source_ip"]).aggregate([([], "count_all")])
    rows = rows.sort_by([("entity", "ascending"), ("source_ip", "ascending")])
    n = rows.num_rows
    columns = {"entity": rows.column("entity"), "source_ip": rows.column("source_ip"), "event_count": rows.column(2)}
    table = pa.table(
        {f.name: columns[f.name] if f.name in columns else pa.nulls(n, f.type) for f in LEARNING_SET_SCHEMA},
        schema=LEARNING_SET_SCHEMA,
    )
    with tempfile.TemporaryDirectory() as tmp:
        warehouse = Warehouse(open_store(tmp))
        warehouse.write_tables("learning_set", day, {"learning_set": table})
        return warehouse.read_table("learning_set", day)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=10_000)
    parser.add_argument("--quick", action="store_true", help="1,000 users: a fast smoke run")
    parser.add_argument("--seed", type=int, default=0, help="data seed")
    parser.add_argument("--eval-pairs", type=int, default=None, help="normal + attack pairs to score")
    parser.add_argument("--set", action="append", default=[], metavar="NAME=VALUE", help="override a parameter")
    parser.add_argument("--json", help="also write the summary as JSON to this file")
    parser.add_argument("--save", help="also write the model artifact to this file")
    parser.add_argument("--model", help="score with this saved artifact (same --users/--seed) instead of training")
    args = parser.parse_args(argv)
    retain_freed_memory()  # as every process that runs the assets has it (build_definitions)
    users = 1_000 if args.quick else args.users
    params = IPInsightsParams(**_parse_overrides(args.set))
    rng = np.random.default_rng(args.seed + 1)

    t0 = time.perf_counter()
    data = td.generate(users, seed=args.seed)
    ev = data.events
    train = ev[ev.day < td.TRAIN_DAYS]
    test = ev[ev.day >= td.TRAIN_DAYS]
    rows = train.groupby(["user", "ip_int", "day"], sort=False).size().reset_index(name="event_count")
    train_entities = td.entity_name(rows.user.to_numpy())
    train_ips = td.ip_strings(rows.ip_int.to_numpy())
    gen_seconds = time.perf_counter() - t0
    print(
        f"data: {users} users, {len(ev):,} events ({len(train):,} train / {len(test):,} test), "
        f"{len(rows):,} training rows (entity, ip, day), {len(data.asn_start):,} synthetic ASN ranges; "
        f"generated in {gen_seconds:.1f}s"
    )

    if args.model:
        with open(args.model, "rb") as fh:
            model = ipi.IPInsightsModel.from_bytes(fh.read())
        params = model.params
        train_seconds = float(model.metadata["training_seconds"])
        train_cpu = float("nan")
        print(f"loaded {model.version} from {args.model} (trained in {train_seconds:.1f}s wall)")
    else:
        print(f"training with {json.dumps(params.to_sagemaker_hyperparameters())} ...", flush=True)
        t0, c0 = time.perf_counter(), time.process_time()
        model = train_ip_insights(train_entities, train_ips, rows.event_count.to_numpy(), params)
        train_seconds = time.perf_counter() - t0
        train_cpu = time.process_time() - c0
    meta = model.metadata
    print(
        f"trained {model.version} in {train_seconds:.1f}s wall, {train_cpu:.1f}s CPU; "
        f"validation AUC {meta['validation_auc']:.4f} "
        f"(shuffled {meta['validation_shuffled_auc']:.4f}); epoch losses {meta['epoch_losses']}"
    )

    # evaluation set, as in the tutorial: normal test events of known users vs random-ASN attacks
    known_users = np.unique(train.user.to_numpy())
    normal = test[np.isin(test.user.to_numpy(), known_users)]
    n_eval = args.eval_pairs or (1_000_000 if users >= 10_000 else 200_000)
    n_side = min(n_eval // 2, len(normal))
    normal = normal.iloc[np.sort(rng.choice(len(normal), n_side, replace=False))]
    atk_user, atk_ip = td.attacks(known_users, n_side, data, rng)
    # shuffled, as a day's pairs would arrive; the strings are made after shuffling, in row
    # order, as reading a parquet column makes them (pyarrow also shares repeated values)
    order = rng.permutation(2 * n_side)
    eval_entities = td.entity_name(np.r_[normal.user.to_numpy(), atk_user][order])
    eval_ips = td.ip_strings(np.r_[normal.ip_int.to_numpy(), atk_ip][order])
    label = np.r_[np.zeros(n_side, bool), np.ones(n_side, bool)][order]

    result = model.score(eval_entities, eval_ips)
    auc = roc_auc(result.insight[label], result.insight[~label])
    auc_dot = roc_auc(-result.dot_product[label].astype(np.float64), -result.dot_product[~label])
    thresholds = {}
    for thr in (0.5, 0.9, 0.99):
        flagged = result.insight >= thr
        tp = int((flagged & label).sum())
        thresholds[thr] = {
            "flagged": int(flagged.sum()),
            "precision": round(tp / max(int(flagged.sum()), 1), 4),
            "recall": round(tp / max(int(label.sum()), 1), 4),
            "fpr": round(int((flagged & ~label).sum()) / max(int((~label).sum()), 1), 4),
        }
    print(f"detection AUC (insight) {auc:.4f}, (-dot_product) {auc_dot:.4f} on {len(label):,} pairs")
    for thr, m in thresholds.items():
        print(f"  insight >= {thr}: {m}")

    # a benign new host in a user's usual /24 vs a never-seen network, per known user
    first = train.groupby("user", sort=True).ip_int.first()
    seen = set(zip(train.user.to_numpy().tolist(), train.ip_int.to_numpy().tolist(), strict=True))
    host = first.to_numpy().astype(np.int64)
    new_host = (host & ~0xFF) | ((host + 1 + rng.integers(0, 254, len(host))) & 0xFF)
    for i, (u, h) in enumerate(zip(first.index.tolist(), new_host.tolist(), strict=True)):
        while (u, h) in seen:
            h = (h & ~0xFF) | ((h + 1) & 0xFF)
        new_host[i] = h
    _, stranger_ip = td.attacks(known_users, len(first), data, rng)
    ents = td.entity_name(first.index.to_numpy())
    in_24 = model.score(ents, td.ip_strings(new_host.astype(np.uint32))).insight
    stranger = model.score(ents, td.ip_strings(stranger_ip)).insight
    slash24 = {
        "median_insight_new_host_in_24": round(float(np.median(in_24)), 4),
        "median_insight_never_seen_network": round(float(np.median(stranger)), 4),
        "fraction_users_new_host_below_never_seen": round(float((in_24 < stranger).mean()), 4),
    }
    print(f"new host in usual /24 vs never-seen network: {slash24}")

    # throughput. Headline: daily_insights' scoring, from the learning set's Arrow columns as read
    day = date(2024, 6, 1)
    learning_set = _learning_set(eval_entities, eval_ips, day)
    ent_col, ip_col = learning_set.column("entity"), learning_set.column("source_ip")
    n_pairs = learning_set.num_rows
    n_addresses = len(pc.unique(ip_col))
    print(
        f"learning set: {n_pairs:,} distinct pairs of {len(pc.unique(ent_col)):,} entities and "
        f"{n_addresses:,} addresses ({n_addresses / n_pairs:.1%} of the pairs), {ip_col.num_chunks} chunks"
    )
    best, all_times, best_cpu = _best_of(lambda: model.score(ent_col, ip_col), REPEATS)
    pairs_per_s = n_pairs / best
    shuffled = learning_set.select(["entity", "source_ip"]).take(rng.permutation(n_pairs))
    shuf_best, _, _ = _best_of(lambda: model.score(shuffled.column("entity"), shuffled.column("source_ip")), REPEATS)
    shuf_pairs_per_s = n_pairs / shuf_best
    n_eval_pairs = len(eval_entities)
    str_best, _, _ = _best_of(lambda: model.score(eval_entities, eval_ips), REPEATS)
    str_pairs_per_s = n_eval_pairs / str_best

    def daily_insights() -> pa.Table:
        return scoring.score_learning_set(learning_set, model.score, model.version, day)

    table_best, _, _ = _best_of(daily_insights, REPEATS)
    table_pairs_per_s = n_pairs / table_best
    # baselines, same run and same number of pairs
    dim = params.vector_dim
    rows_a = rng.standard_normal((n_pairs, dim)).astype(np.float32)
    rows_b = rng.standard_normal((n_pairs, dim)).astype(np.float32)
    base_best, _, _ = _best_of(lambda: np.einsum("ij,ij->i", rows_a, rows_b), REPEATS)
    base_pairs_per_s = n_pairs / base_best
    rows_a = rows_b = None
    # the least an embedding scorer does once strings are integer ids: two gathers and a dot
    ecodes = pc.dictionary_encode(ent_col).combine_chunks().indices.to_numpy()
    icodes = pc.dictionary_encode(ip_col).combine_chunks().indices.to_numpy()
    u_table = rng.standard_normal((int(ecodes.max()) + 1, dim)).astype(np.float32)
    v_table = rng.standard_normal((int(icodes.max()) + 1, dim)).astype(np.float32)
    gather_best, _, _ = _best_of(lambda: np.einsum("ij,ij->i", u_table[ecodes], v_table[icodes]), REPEATS)
    gather_pairs_per_s = n_pairs / gather_best
    u_table = v_table = None
    # strings to ids: pyarrow's dictionary-encoding of the two columns
    encode_best, _, _ = _best_of(lambda: (pc.dictionary_encode(ent_col), pc.dictionary_encode(ip_col)), REPEATS)
    encode_pairs_per_s = n_pairs / encode_best
    # where the headline's time goes (each stage's best of REPEATS)
    stages: dict[str, float] = {}

    def stage(name: str, t0: float) -> float:
        now = time.perf_counter()
        stages[name] = min(stages.get(name, float("inf")), now - t0)
        return now

    for _ in range(REPEATS):
        t0 = time.perf_counter()
        ent_codes, ent_uniques = ipi.factorize(ent_col)
        etable, _ = model._entity_table(ent_uniques)
        t0 = stage("entities: dictionary-encode + vectors", t0)
        parsed = parse_ips(ip_col)
        t0 = stage("addresses: parse", t0)
        head, levels = model._ip_rows(*parsed)
        t0 = stage("addresses: prefix rows", t0)
        head_rows = (model._head_table, head)
        dots = ipi.pair_dots(etable, ent_codes, model.ip_emb, levels, model.enc_w, model.enc_b, head_rows)
        t0 = stage("gathers + dot products", t0)
        model.insight(dots)
        stage("calibration", t0)
    print("scoring stages (s): " + ", ".join(f"{k} {v:.3f}" for k, v in stages.items()))

    sub = min(100_000, n_eval_pairs)
    evec = {e: model._entity_table(np.array([e], dtype=object))[0][0] for e in pd.unique(eval_entities[:sub])}
    uniq_ips = pd.unique(eval_ips[:sub])
    ivec = dict(zip(uniq_ips.tolist(), model.ip_vectors(uniq_ips), strict=True))

    def python_scorer() -> list[float]:
        return [float(evec[e] @ ivec[i]) for e, i in zip(eval_entities[:sub], eval_ips[:sub], strict=True)]

    py_best, _, _ = _best_of(python_scorer, REPEATS)
    py_pairs_per_s = sub / py_best
    print(
        f"scoring: learning set ({n_pairs:,} pairs, Arrow columns) in {best:.3f}s "
        f"(runs {[round(t, 3) for t in all_times]}) = {pairs_per_s / 1e6:.2f}M pairs/s "
        f"({n_pairs / best_cpu / 1e6:.2f}M per CPU-second); rows shuffled {shuf_pairs_per_s / 1e6:.2f}M/s; "
        f"{n_eval_pairs:,} pairs from Python strings {str_pairs_per_s / 1e6:.2f}M/s; "
        f"daily_insights table (scoring + output + sort) {table_pairs_per_s / 1e6:.2f}M/s; "
        f"bare numpy dot of pre-gathered {dim}-dim rows {base_pairs_per_s / 1e6:.1f}M/s; "
        f"numpy gather+dot on integer ids {gather_pairs_per_s / 1e6:.1f}M/s; "
        f"pyarrow dictionary-encode of both columns {encode_pairs_per_s / 1e6:.1f}M/s; "
        f"Python dict scorer {py_pairs_per_s / 1e6:.3f}M/s"
    )

    summary = {
        "users": users,
        "events": len(ev),
        "training_rows": len(rows),
        "model_version": model.version,
        "hyperparameters": params.to_dict(),
        "training_seconds": round(train_seconds, 1),
        "training_cpu_seconds": round(train_cpu, 1),
        "validation_auc": round(meta["validation_auc"], 4),
        "detection_auc": round(auc, 4),
        "eval_pairs": n_eval_pairs,
        "learning_set_pairs": n_pairs,
        "learning_set_distinct_addresses": n_addresses,
        "thresholds": {str(k): v for k, v in thresholds.items()},
        "slash24_check": slash24,
        "scoring_pairs_per_second": round(pairs_per_s),
        "scoring_pairs_per_cpu_second": round(n_pairs / best_cpu),
        "scoring_pairs_per_second_shuffled_rows": round(shuf_pairs_per_s),
        "scoring_pairs_per_second_python_strings": round(str_pairs_per_s),
        "daily_insights_table_pairs_per_second": round(table_pairs_per_s),
        "baseline_numpy_dot_pairs_per_second": round(base_pairs_per_s),
        "ratio_to_numpy_dot": round(pairs_per_s / base_pairs_per_s, 4),
        "baseline_numpy_gather_dot_pairs_per_second": round(gather_pairs_per_s),
        "ratio_to_numpy_gather_dot": round(pairs_per_s / gather_pairs_per_s, 4),
        "baseline_arrow_dictionary_encode_pairs_per_second": round(encode_pairs_per_s),
        "ratio_to_arrow_dictionary_encode": round(pairs_per_s / encode_pairs_per_s, 4),
        "scoring_stage_seconds": {k: round(v, 4) for k, v in stages.items()},
        "baseline_python_dict_pairs_per_second": round(py_pairs_per_s),
        "ratio_to_python_dict": round(pairs_per_s / py_pairs_per_s, 2),
        "artifact_bytes": len(model.to_bytes()),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
    }
    print()
    print("=" * 72)
    print("IP Insights detection benchmark (local numpy model)")
    print(f"  data            {users:,} users, {len(ev):,} events, {len(rows):,} training rows")
    print(f"  detection AUC   {auc:.4f}   (target >= 0.95; validation AUC {meta['validation_auc']:.4f})")
    print(
        f"  training        {train_seconds:.1f} s wall ({train_cpu:.1f} s CPU) with default parameters "
        "(target: minutes)"
    )
    print(
        f"  scoring         {pairs_per_s / 1e6:.2f}M pairs/s: the learning set's {n_pairs:,} pairs from its Arrow "
        f"columns to insights, one process ({n_pairs / best_cpu / 1e6:.2f}M per CPU-second; target >= 2M/s)"
    )
    print(
        f"                  same rows shuffled {shuf_pairs_per_s / 1e6:.2f}M/s; from Python strings "
        f"{str_pairs_per_s / 1e6:.2f}M/s; the whole daily_insights table (+ output columns, riskiest-first sort) "
        f"{table_pairs_per_s / 1e6:.2f}M/s"
    )
    print(
        f"  baselines       numpy row dot {base_pairs_per_s / 1e6:.1f}M/s (ratio {summary['ratio_to_numpy_dot']}); "
        f"numpy gather+dot on integer ids {gather_pairs_per_s / 1e6:.1f}M/s "
        f"(ratio {summary['ratio_to_numpy_gather_dot']}); "
        f"pyarrow dictionary-encode of both columns {encode_pairs_per_s / 1e6:.1f}M/s "
        f"(ratio {summary['ratio_to_arrow_dictionary_encode']}); "
        f"Python dict scorer {py_pairs_per_s / 1e6:.3f}M/s (ratio {summary['ratio_to_python_dict']})"
    )
    print(
        f"  /24 check       new host in usual /24 median insight {slash24['median_insight_new_host_in_24']} vs "
        f"never-seen network {slash24['median_insight_never_seen_network']} "
        f"({slash24['fraction_users_new_host_below_never_seen']:.1%} of users lower)"
    )
    print(
        f"  artifact        {summary['artifact_bytes'] / 1e6:.1f} MB ({model.version}); "
        f"benchmark peak RSS {summary['peak_rss_mb']} MB"
    )
    print("=" * 72)
    if args.save:
        with open(args.save, "wb") as fh:
            fh.write(model.to_bytes())
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(summary, fh, indent=2)
    return summary


if __name__ == "__main__":
    main()
