"""Train and apply the detector: IP Insights as the core signal, the evidence around it, one ``insight``.

Training for day D (``train_detector``) on the window D-W..D-1:

1. The last days of the window (up to ``EVAL_DAYS``, at most half) are the temporal validation. Pairs first seen
   on those days are kept out of IP Insights' training, so the model judges them as it will
   judge new pairs of D; everything seen before trains it (any backend).
2. For each validation day, every real pair and synthetic attacker-like pairs for the same
   identities (``negatives.py``) get their evidence against the window before that day.
3. The combiner is fitted on them (``combiner.py``); its insights of the real pairs and
   the synthetic ones set the default threshold from the alert budget.

Scoring D (``score_day``): the evidence of D's pairs against the whole window, through the same
model and combiner. No leakage: nothing of D is used to train the model that scores D.
"""

import functools
import hashlib
import json
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from datetime import date
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from proactive_assets.core.backends import ModelBackend, TrainedModel
from proactive_assets.core.evidence.combiner import MIN_THRESHOLD, Combiner
from proactive_assets.core.evidence.compiled import on_free_core, one_blas_thread, with_one_blas_thread
from proactive_assets.core.evidence.features import FEATURES, judged_pairs, pair_context, pair_features
from proactive_assets.core.evidence.fitting import EVAL_DAYS, PRIOR, fit_folds
from proactive_assets.core.evidence.folds import Fold, folds_to_bytes, reusable
from proactive_assets.core.evidence.frame import Frame, WindowCodes
from proactive_assets.core.evidence.history import Behaviour, Day, History, build_day
from proactive_assets.core.evidence.judgement import Judge, Judged
from proactive_assets.core.evidence.keys import AddressBook, coded_addresses, level_keys
from proactive_assets.core.evidence.negatives import Negatives, draw_negatives, draw_other
from proactive_assets.core.evidence.networks import PROVIDERS, Networks
from proactive_assets.core.evidence.window import DayCodes, WindowIndex, encoded
from proactive_assets.core.ipnet import parsed_once, string_array
from proactive_assets.core.model import IPInsightsParams, ScoreResult
from proactive_assets.core.model.warm import RetrainPlan
from proactive_assets.core.scoring import Scorer

#: At most this many identities get synthetic pairs per validation day (large organisations).
MAX_NEGATIVE_IDENTITIES = 20_000


def _with_negatives(book: AddressBook, negatives: Negatives, networks: Networks) -> tuple[AddressBook, np.ndarray]:
    """``book`` extended by the synthetic addresses; their codes."""
    keys = level_keys(negatives.is6, negatives.hi, negatives.lo)
    owner = networks.lookup(negatives.is6, negatives.hi, negatives.lo)
    merged = AddressBook(
        np.concatenate([book.is6, negatives.is6]),
        np.concatenate([book.hi, negatives.hi]),
        np.concatenate([book.lo, negatives.lo]),
        [np.concatenate([a, b]) for a, b in zip(book.level_keys, keys, strict=True)],
        type(book.owner)(
            *(
                np.concatenate([getattr(book.owner, f), getattr(owner, f)])
                for f in ("provider", "region", "service", "private")
            )
        ),
    )
    return merged, len(book) + np.arange(len(negatives))


def _ip_insights(scorer: Scorer, entities: pa.Array, entity: np.ndarray, addresses: pa.Array) -> np.ndarray:
    """IP Insights' insight of each (identity code into ``entities``, address text) pair."""
    if len(entity) == 0:
        return np.zeros(0)
    result = scorer(entities.take(pa.array(entity)), addresses)
    return np.asarray(result.insight, dtype=np.float64)


@dataclass
class FoldPairs:
    """A validation day's real pairs and synthetic ones, with all their evidence needs but IP Insights."""

    day: int
    entity: np.ndarray
    address: np.ndarray  # into ``book``: the window's addresses, then the synthetic ones
    texts: pa.Array  # each pair's address as text, for IP Insights
    real: np.ndarray
    kind: np.ndarray  # ``negatives.KINDS`` code of the synthetic pairs, -1 for real ones
    book: AddressBook
    history: History
    counts: Day
    behaviour: Behaviour
    identities: int  # identities active that day


#: The share of synthetic pairs that copy one of the victim's user agents (``_intruder_behaviour``).
COPIED_USER_AGENT = 0.5


def _fold_pairs(frame: Frame, networks: Networks, d: int, seed: int, history: History) -> FoldPairs | None:
    """Day ``d``'s pairs against ``history`` (of the rows before ``d``); its synthetic pairs are drawn
    from ``seed`` and the day alone, so a fold is the same whether it is computed with the others
    or alone (a warm start's newest day). None when the day or the window before it has no rows."""
    rng = np.random.default_rng([seed, d])
    before, on = np.flatnonzero(frame.day < d), np.flatnonzero(frame.day == d)
    if not len(before) or not len(on):
        return None
    n = len(frame.entities)
    entity, address = frame.entity[on], frame.address[on]  # one row per (identity, address) and day
    day = build_day(entity, address, frame.book, history, n)
    active = np.unique(entity)
    active = active[history.known[active]]
    if len(active) > MAX_NEGATIVE_IDENTITIES:
        active = np.sort(rng.choice(active, MAX_NEGATIVE_IDENTITIES, replace=False))
    # the window's distinct (identity, address) pairs before d, in order of first appearance
    pair = frame.entity[before] * np.int64(max(len(frame.texts[1]), 1)) + frame.address[before]
    past = before[np.sort(np.unique(pair, return_index=True)[1])]
    negatives = draw_negatives(
        active,
        frame.entity[past],
        frame.address[past],
        entity,
        address,
        frame.book,
        history,
        networks,
        rng,
    )
    book, negative_address = _with_negatives(frame.book, negatives, networks)
    behaviour = Behaviour.concat(
        [frame.behaviour.take(on), _intruder_behaviour(frame.behaviour, on, entity, negatives.entity, rng)]
    )
    return FoldPairs(
        d,
        np.concatenate([entity, negatives.entity]),
        np.concatenate([address, negative_address]),
        pa.concat_arrays([frame.texts[1].take(pa.array(address)), negatives.texts()]),
        np.concatenate([np.ones(len(entity), bool), np.zeros(len(negatives), bool)]),
        np.concatenate([np.full(len(entity), -1, np.int8), negatives.kind]),
        book,
        history,
        day,
        behaviour,
        len(np.unique(entity)),
    )


def _fold(frame: Frame, pairs: FoldPairs, scorer: Scorer) -> Fold:
    """The fold of ``pairs``: their evidence, IP Insights' judgement (``scorer``) included."""
    p = pairs
    ipi = _ip_insights(scorer, frame.texts[0], p.entity, p.texts)
    x = pair_features(p.entity, p.address, ipi, p.real, p.book, p.history, p.counts, p.behaviour, frame.persons)
    # A synthetic pair on a network of the same person's other identity is that person, not an intruder.
    keep = p.real | (x[:, [FEATURES.index("person_address"), FEATURES.index("person_24")]] == 0).all(axis=1)
    kept = np.ascontiguousarray(x.T[:, keep], np.float32).T  # each feature's values contiguous, as stored
    return Fold(p.day, kept, ~p.real[keep], p.kind[keep], p.identities)


def _validation_day(
    frame: Frame, networks: Networks, scorer: Scorer, d: int, seed: int, history: History
) -> Fold | None:
    """Day ``d``'s fold against ``history`` (of the rows before ``d``): ``_fold_pairs``, then ``_fold``."""
    pairs = _fold_pairs(frame, networks, d, seed, history)
    return _fold(frame, pairs, scorer) if pairs is not None else None


def _intruder_behaviour(
    behaviour: Behaviour, on: np.ndarray, day_entity: np.ndarray, negative_entity: np.ndarray, rng: np.random.Generator
) -> Behaviour:
    """What each synthetic pair did: the API calls and volume of a real pair of the day by *another*
    identity (stolen credentials are used by someone else, for someone else's ends), and the user
    agents of that pair or, for every other synthetic pair, of one of the victim's own pairs of the
    day: a user agent is a header the caller writes, and a careful intruder copies the victim's."""
    donors = on[draw_other(day_entity, negative_entity, rng)]
    order = np.argsort(day_entity, kind="stable")
    start = np.searchsorted(day_entity[order], negative_entity)
    count = np.searchsorted(day_entity[order], negative_entity, side="right") - start
    pick = np.minimum(start + np.floor(rng.random(len(negative_entity)) * count).astype(np.int64), len(on) - 1)
    own = on[order[pick]]
    copied = (rng.random(len(negative_entity)) < COPIED_USER_AGENT) & (count > 0)  # (each is active on the day)
    done, agents = behaviour.take(donors), behaviour.take(np.where(copied, own, donors))
    return Behaviour(done.action_pair, done.action_code, agents.agent_pair, agents.agent_code, done.events)


@dataclass
class _Prepared:
    """What ``train_detector`` prepares while IP Insights trains (``_prepare``)."""

    frame: Frame
    reused: dict[int, Fold]  # model D-1's folds a warm day reuses (``folds.reusable``)
    first: int  # the index of the first validation day whose fold is computed here ...
    history: History | None  # ... the history of the window before it (of all of it when every fold is reused)
    pairs: FoldPairs | None  # ... its pairs, all but IP Insights' judgement
    after: History | None  # ... and the history with that day added


def _prepare(
    training_set: pa.Table,
    codes: WindowCodes,
    networks: Networks,
    ordinal: list[int],
    seed: int,
    plan: RetrainPlan | None,
    provenance: dict[str, Any],
) -> _Prepared:
    """The frame, the folds a warm day reuses, and the history, pairs and extended history of the first
    fold to compute: none of it depends on IP Insights."""
    frame = Frame.build(training_set, networks, codes)
    reused = reusable(plan.previous_folds if plan and plan.warm else None, ordinal, FEATURES, provenance)
    first = next((i for i, d in enumerate(ordinal) if d not in reused), len(ordinal))
    if not ordinal:
        return _Prepared(frame, reused, 0, None, None, None)
    if first == len(ordinal):
        return _Prepared(frame, reused, first, frame.history(ordinal[-1] + 1), None, None)
    d = ordinal[first]
    history = frame.history(d)
    pairs = _fold_pairs(frame, networks, d, seed, history)
    return _Prepared(frame, reused, first, history, pairs, frame.extended(history, d))


def _digest(doc: Any) -> str:
    return hashlib.sha256(json.dumps(doc, sort_keys=True, default=str).encode()).hexdigest()[:8]


# Training keeps both cores busy with its own threads; BLAS's threads on top of them only contend
# (a warm day of the realistic scenario: 0.083 s against 0.110 s with two).
@with_one_blas_thread
def train_detector(
    training_set: pa.Table,
    backend: ModelBackend,
    params: IPInsightsParams,
    day: date,
    networks: Networks,
    alert_budget: float,
    plan: RetrainPlan | None = None,
    window_days: int | None = None,
) -> TrainedModel:
    """IP Insights on the established pairs, the combiner on the validation days, the budget threshold.

    ``plan``: warm-start IP Insights from model D-1 or retrain it fully (``core.model.warm``).
    ``window_days``: the window's configured length; while fewer days have data, a window short of
    ``EVAL_DAYS`` validation days is held nearer the prior combiner (``fit_folds``)."""
    days = sorted(set(pc.unique(training_set.column("day")).to_pylist())) if training_set.num_rows else []
    # At most half the window validates: IP Insights keeps the other half to learn from (a 7-day
    # window with five validation days left it two, and the tutorial-scale AUC fell to 0.951).
    k = min(EVAL_DAYS, max(0, len(days) - 2), len(days) // 2) if len(days) >= 3 else (1 if len(days) == 2 else 0)
    eval_days = days[-k:] if k else []
    codes = WindowCodes.of(training_set)
    ordinal = [pa.scalar(d, pa.date32()).cast(pa.int32()).as_py() for d in eval_days]
    # IP Insights learns the pairs established before the validation days; the days' new pairs stay new to it
    kept = codes.established(ordinal[0]) if eval_days else np.ones(training_set.num_rows, bool)
    if not kept.any():
        kept[:] = True
    established = codes.coded(training_set, kept)
    # what the folds were computed with: a warm day reuses none of model D-1's folds computed otherwise
    provenance = {
        "networks": {"source": networks.source, "date": networks.date},
        "synthetic_pairs": {"copied_user_agent": COPIED_USER_AGENT},
    }
    # The address book, model D-1's folds, the window's history and the first computed fold's pairs
    # do not depend on IP Insights: they are built on the other core while it trains (mostly numpy
    # and Arrow, which let go of the GIL). A warm day's history starts where model D-1's folds stop.
    with ThreadPoolExecutor(1, thread_name_prefix="window-history") as pool:
        prepared = pool.submit(_prepare, training_set, codes, networks, ordinal, params.seed, plan, provenance)
        model = backend.train(established, params, day, plan)
        ready = prepared.result()
    frame, history, first, reused, pairs, after = (
        ready.frame,
        ready.history,
        ready.first,
        ready.reused,
        ready.pairs,
        ready.after,
    )
    scorer = backend.scorer(model, lambda: established)
    warm = bool(plan and plan.warm and (model.metadata.get("retraining") or {}).get("mode") == "warm")
    if not warm and reused:  # IP Insights fell back to a full retrain: every fold is computed afresh
        history, first, reused, after = (frame.history(ordinal[0]) if ordinal else None), 0, {}, None
    # Each validation day's history is the one before plus that day, so the window is indexed once
    # (``extend_history``), and the last day's extension is the history the model scores against.
    folds = [reused[d] for d in ordinal[:first]]
    for d in ordinal[first:]:
        prepared = after is not None and d == ordinal[first]  # while IP Insights trained
        if d in reused:
            folds.append(reused[d])
        elif prepared:
            folds.append(_fold(frame, pairs, scorer) if pairs is not None else None)
        else:
            folds.append(_validation_day(frame, networks, scorer, d, params.seed, history))
        history = after if prepared else frame.extended(history, d)
    folds = [f for f in folds if f is not None]
    start = Combiner.from_dict(plan.previous_combiner) if warm and plan and plan.previous_combiner else None
    # the model's files are written on the other core while the combiner is fitted
    with ThreadPoolExecutor(1, thread_name_prefix="model-files") as pool:
        window = pool.submit(lambda: frame.index(history).to_bytes())
        folds_file = pool.submit(folds_to_bytes, folds, FEATURES, provenance)
        earlier = plan.earlier_false_alerts if plan else None
        lacking = max(0.0, 1.0 - len(days) / window_days) if window_days else 0.0
        combiner, budget, auc = fit_folds(
            folds, alert_budget, [d.isoformat() for d in eval_days], start, day, earlier, lacking
        )
    evidence = {
        "combiner": combiner.to_dict(),
        "budget": budget.to_dict(),
        "evidence_auc": auc,
        "validation_days": [d.isoformat() for d in eval_days],
        # the share of the configured window without data yet: with fewer than EVAL_DAYS validation
        # days, the prior combiner weighs as much as that share of the pairs
        "window_lacking": round(lacking, 4),
        "established_rows": established.num_rows,
        **provenance,
        "features": list(FEATURES),
        # model D-1's folds of the days both validate on (``folds.py``); the rest were computed here
        "folds_reused": [d.isoformat() for d, o in zip(eval_days, ordinal, strict=True) if o in reused],
    }
    metadata = {**model.metadata, "ip_insights_version": model.version, "evidence": evidence}
    metadata["version"] = f"{model.version}+{_digest(evidence['combiner'])}"
    metadata["threshold"] = budget.threshold
    return TrainedModel(metadata, model.artifact, window.result(), folds_file.result())


def _small_unique(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``np.unique(values, return_inverse=True)`` of integers in a narrow range, by marking them in
    a table of the range (sorting a million costs 65 ms)."""
    low = int(values.min(initial=0))
    span = int(values.max(initial=0)) - low + 1
    if span > 4 * len(values) + 4096:
        distinct, inverse = np.unique(values, return_inverse=True)
        return distinct, inverse.reshape(-1)
    present = np.zeros(span, bool)
    present[values - low] = True
    return np.flatnonzero(present) + low, (np.cumsum(present) - 1)[values - low]


def _owner_names(book: AddressBook, address: np.ndarray, networks: Networks) -> tuple[pa.Array, np.ndarray]:
    """Each pair's address owner as text ("aws us-east-1 EC2", "private", ""): the distinct texts,
    built once per kind of owner, and each pair's index into them."""
    owner = book.owner
    names = networks.names
    width = np.int64(len(names) + 1)
    kind = ((owner.provider.astype(np.int64) + 2) * width + owner.region + 1) * width + owner.service + 1
    kind = np.where(owner.private, -1, kind)
    distinct, inverse = _small_unique(kind)
    providers = ("", *PROVIDERS)
    text = []
    for k in distinct.tolist():
        if k < 0:
            text.append("private")
            continue
        rest, service = divmod(k, int(width))
        provider, region = divmod(rest, int(width))
        parts = (providers[provider - 1], names[region - 1], names[service - 1])
        text.append(" ".join(part for part in parts if part))
    return pa.array(text, pa.string()), inverse.astype(np.int32)[address]  # (the column's int32 codes)


@dataclass
class DayScores:
    """What ``score_day`` gives for each pair of the day, in the learning set's row order."""

    insight: np.ndarray
    dot_product: np.ndarray
    ip_insights: np.ndarray
    entity_known: np.ndarray
    judged: Judged  # the named evidence and the features shown
    owner_texts: pa.Array  # the distinct owners ...
    owner: np.ndarray  # ... and each pair's index into them (int32)

    def evidence_columns(self) -> dict[str, pa.Array]:
        """The columns ``daily_insights`` keeps beside ``insight``, for explanations and audits."""
        with ThreadPoolExecutor(1, thread_name_prefix="named-evidence") as pool:  # the compiled pass frees the GIL
            against = pool.submit(self.judged.named_side, 1)
            support = self.judged.named_side(0)
            shown = self.judged.shown_columns()
            against = against.result()
        return {
            "ip_insights": pa.array(self.ip_insights, pa.float64()),
            **shown,
            # (dictionary-encoded, as the names of the evidence: a few hundred owners' texts)
            "address_owner": pa.DictionaryArray.from_arrays(pa.array(self.owner, pa.int32()), self.owner_texts),
            "evidence_for": support,
            "evidence_against": against,
        }


@dataclass
class DayEvidence:
    """A day's pairs coded against a window, with the window's history, the day's own counts and
    IP Insights' scores: what each pair's evidence is built from (``pair_args``)."""

    coded: DayCodes
    history: History
    day: Day
    scored: ScoreResult | None  # None for a day without pairs
    owners: tuple[pa.Array, np.ndarray]  # each pair's address owner (``_owner_names``)
    context: tuple[np.ndarray, ...]  # the pairs' ``pair_context``
    window_counts: tuple[np.ndarray, ...] | None  # ``WindowIndex.address_counts`` of the day's book

    @functools.cached_property
    def ip_insights(self) -> np.ndarray:
        """IP Insights' insight per pair as float64 (made once: the kernel and the table read it)."""
        return np.asarray(self.scored.insight, np.float64) if self.scored is not None else np.zeros(0)

    def pair_args(self) -> tuple:
        """``pair_features``' arguments for the day's pairs."""
        c = self.coded
        real = np.ones(len(c.entity), bool)
        return c.entity, c.address, self.ip_insights, real, c.book, self.history, self.day, c.behaviour, c.persons


def _with_owners(
    book: AddressBook, address: np.ndarray, networks: Networks
) -> tuple[AddressBook, tuple[pa.Array, np.ndarray]]:
    """``book`` with its addresses' owners, and each pair's owner as text (``_owner_names``)."""
    book = book.with_owners(networks)
    return book, _owner_names(book, address, networks)


def day_evidence(
    scorer: Scorer, window: WindowIndex | Callable[[], WindowIndex], learning_set: pa.Table, networks: Networks
) -> DayEvidence:
    """The day's pairs coded against ``window`` and counted, while on the other core their
    identities are coded and IP Insights scores them (the addresses are parsed once, for both:
    ``parsed_once``), and then their addresses' owners are looked up and the day's addresses
    counted, by whichever core is free first (the other when IP Insights is quick, this one when it
    is not), as is the pairs' ``pair_context``. ``window`` may be the call that reads it: it is
    then read once the other core has started (IP Insights does not need it)."""
    ips = pa.chunked_array([string_array(learning_set.column("source_ip"))])  # (one chunk: both parse its bytes)
    with parsed_once(), ThreadPoolExecutor(1, thread_name_prefix="ip-insights") as pool:
        # (IP Insights reads the dictionary's codes: the identities are not coded twice)
        entities = pool.submit(encoded, learning_set.column("entity"))
        scored = pool.submit(lambda: scorer(entities.result(), ips)) if learning_set.num_rows else None
        addresses = coded_addresses(ips)  # (while the identities are coded)
        window = window if isinstance(window, WindowIndex) else window()
        coded = window.code_day(learning_set, entities.result(), addresses)
        owned = on_free_core(pool, _with_owners, coded.book, coded.address, networks)
        history = window.history_for(coded.identities)
        in_context = on_free_core(
            pool, pair_context, coded.entity, coded.address, coded.book, history, coded.behaviour, coded.persons
        )
        # (the window's counts in two parts, so that both cores can share them at the end)
        counted_addresses = on_free_core(pool, window.address_counts, coded.book, (0,))
        counted_networks = on_free_core(pool, window.address_counts, coded.book, (1, 2, 3))
        day = build_day(coded.entity, coded.address, coded.book, history, coded.identities, pool, only_real=True)
        networks = counted_networks()  # the last queued first: most likely still to do, and then done here
        addresses = counted_addresses()
        window_counts = None if addresses is None else (*addresses, *networks)
        book, owners = owned()
        context = in_context()
        result = scored.result() if scored is not None else None
        return DayEvidence(replace(coded, book=book), history, day, result, owners, context, window_counts)


def window_index(model: TrainedModel, training_set: Callable[[], pa.Table], networks: Networks) -> WindowIndex:
    """The index of the window ``model`` judges against: stored with it, else built from ``training_set()``
    (models trained before the index was kept)."""
    if model.window is not None:
        return WindowIndex.from_bytes(model.window)
    return Frame.build(training_set(), networks).index()


def score_day(
    model: TrainedModel,
    scorer: Scorer,
    window: WindowIndex | Callable[[], WindowIndex],
    learning_set: pa.Table,
    networks: Networks,
) -> DayScores:
    """The day's pairs judged against the window (``window_index``, or the call that reads it: it is
    read while IP Insights scores the day) by ``model``'s combiner."""
    evidence = model.metadata.get("evidence") or {}
    combiner = Combiner.from_dict(evidence["combiner"]) if evidence else PRIOR
    with one_blas_thread():  # it keeps both cores busy itself
        found = day_evidence(scorer, window, learning_set, networks)
        judged = judged_pairs(
            *found.pair_args(),
            judge=Judge.of(combiner),
            day_pairs=True,
            context=found.context,
            window_counts=found.window_counts,
        )
    owner_texts, owner = found.owners
    result = found.scored
    return DayScores(
        insight=judged.insight,
        dot_product=np.asarray(result.dot_product, np.float64) if result is not None else np.zeros(0),
        ip_insights=found.ip_insights,
        entity_known=np.asarray(result.entity_known, bool) if result is not None else np.zeros(0, bool),
        judged=judged,
        owner_texts=owner_texts,
        owner=owner,
    )


def threshold_for(model_metadata: dict[str, Any], override: float | None) -> float:
    """``INSIGHT_THRESHOLD`` when set, else the model's budget threshold."""
    if override is not None:
        return float(override)
    return float(model_metadata.get("threshold", MIN_THRESHOLD))
