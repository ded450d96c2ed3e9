"""The evidence's compiled hot loops (``_evidence_kernels.c``, built by setup.py where a C compiler
is), or ``None``: the numpy code beside each use gives the same answers, only slower. Also how
``features.pair_features`` and ``features.judged_pairs`` lay their arrays out for the kernel, and
``one_blas_thread`` for code that keeps both cores busy with its own threads."""

import functools
from collections.abc import Callable
from concurrent.futures import Executor, ThreadPoolExecutor
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import TYPE_CHECKING, ParamSpec, TypeVar

import numpy as np
from threadpoolctl import ThreadpoolController

try:
    from proactive_assets.core.evidence import _evidence_kernels as kernels
except ImportError:  # pragma: no cover - depends on the install
    kernels = None

if TYPE_CHECKING:
    from proactive_assets.core.evidence.history import Day, History
    from proactive_assets.core.evidence.judgement import Judge, Judged
    from proactive_assets.core.evidence.keys import AddressBook

__all__ = [
    "KernelInputs",
    "feature_matrix",
    "judged_pairs",
    "kernel_inputs",
    "kernels",
    "on_free_core",
    "one_blas_thread",
    "with_one_blas_thread",
]

P = ParamSpec("P")
R = TypeVar("R")

#: From this many pairs the kernel runs on two threads (each builds its own lookup directories).
SPLIT_PAIRS = 200_000


@functools.cache
def _thread_pools() -> ThreadpoolController:
    return ThreadpoolController()  # the native libraries loaded now (numpy's BLAS): ~20 ms, once


def one_blas_thread() -> AbstractContextManager:
    """Within it, BLAS (numpy's matrix products) uses one thread: for code that runs its own threads."""
    return _thread_pools().limit(limits=1, user_api="blas")


def with_one_blas_thread(function: Callable[P, R]) -> Callable[P, R]:
    """``function`` run within ``one_blas_thread``."""

    @functools.wraps(function)
    def limited(*args: P.args, **kwargs: P.kwargs) -> R:
        with one_blas_thread():
            return function(*args, **kwargs)

    return limited


def on_free_core(pool: Executor | None, function: Callable[P, R], *args: P.args, **kwargs: P.kwargs) -> Callable[[], R]:
    """``function(*args)`` queued on ``pool``; the call returned gives its result, or computes it on
    the calling thread when the pool has not started it (it is then cancelled) or there is no pool:
    work queued behind a slow task is done by whichever core is free first."""
    future = pool.submit(function, *args, **kwargs) if pool is not None else None

    def result() -> R:
        if future is not None and not future.cancel():
            return future.result()
        return function(*args, **kwargs)

    return result


@dataclass(frozen=True)
class KernelInputs:
    """``kernels.pair_features``' arguments but the output: its four groups of buffers (per pair,
    per address, per identity, and the tables) and the provider category of AWS."""

    pairs: tuple[np.ndarray, ...]
    addresses: tuple[np.ndarray, ...]
    identities: tuple[np.ndarray, ...]
    tables: tuple[np.ndarray, ...]
    aws_category: int

    def args(self) -> tuple:
        return self.pairs, self.addresses, self.identities, self.tables, self.aws_category


def kernel_inputs(
    per_pair: tuple[np.ndarray, ...],
    events: np.ndarray,
    book: "AddressBook",
    category: np.ndarray,
    aws_category: int,
    history: "History",
    day: "Day",
    seen_24: np.ndarray | None = None,
    window_counts: tuple[np.ndarray, ...] | None = None,
) -> KernelInputs:
    """The kernel's buffers for ``features.pair_features``' pairs.

    ``per_pair`` is (entity, address, IP Insights, real, person's address, person's /24, new
    actions, new agents, has agents), ``events`` each pair's event count; ``category`` each
    address's provider category (``aws_category`` for AWS); ``seen_24`` each pair's /24 (/64)
    known to its identity, where the caller has it (``Day.seen_24`` of these very pairs);
    ``window_counts`` how many of the window's identities used each address's networks (4 levels,
    ``WindowIndex.address_counts``) and ``day.counted`` today's (2), -1 where not known, where the
    caller has them (the kernel looks up the rest)."""
    entity, address, ip_insights, real, person_address, person_24, new_actions, new_agents, has_agents = per_pair

    unknown = np.zeros(0, np.int64)  # counts the kernel looks up

    def buffers(*arrays: tuple[np.ndarray, type]) -> tuple[np.ndarray, ...]:
        return tuple(np.ascontiguousarray(a, dtype) for a, dtype in arrays)

    pairs = buffers(
        (entity, np.int64),
        (address, np.int64),
        (ip_insights, np.float64),
        (real, bool),
        (person_address, bool),
        (person_24, bool),
        (new_actions, np.float64),
        (new_agents, np.float64),
        (has_agents, bool),
        (events, np.float64),
        (seen_24 if seen_24 is not None else np.zeros(0, bool), bool),
    )
    addresses = buffers(
        *((k, np.uint64) for k in book.level_keys),
        (category, np.int64),
        (book.owner.region.astype(np.uint64), np.uint64),
        (book.is6, bool),
        *((a, np.int64) for a in (*(window_counts or (unknown,) * 4), *(day.counted or (unknown,) * 2))),
    )
    identities = buffers(
        (history.known, bool),
        *(
            (getattr(history, name), np.float64)
            for name in ("days", "churn_24", "churn_16", "networks_16", "aws_share", "cloud_share")
        ),
        (history.families, np.int64),
        (history.has_agents, bool),
        (day.known_pairs, np.float64),
    )
    tables = buffers(
        *((k, np.uint64) for k in history.seen),
        *(
            (a, dtype)
            for level in range(4)
            for a, dtype in ((history.org_keys[level], np.uint64), (history.org_counts[level], np.int64))
        ),
        *(
            (a, dtype)
            for level in range(2)
            for a, dtype in ((day.org_keys[level], np.uint64), (day.org_counts[level], np.int64))
        ),
        (day.sibling_keys, np.uint64),
        (day.sibling_counts, np.int64),
        (history.providers, np.uint64),
        (history.aws_regions, np.uint64),
    )
    return KernelInputs(pairs, addresses, identities, tables, aws_category)


def _by_parts(n: int, run: Callable[[np.ndarray | None], None]) -> None:
    """``run`` over all the pairs, or (from ``SPLIT_PAIRS``) on two cores at once, each taking the
    next chunk of pairs neither has taken from the shared counter ``run`` is given: the kernel lets
    go of the GIL, and each call builds its own lookup directories."""
    if n < SPLIT_PAIRS:
        run(None)
        return
    claim = np.zeros(1, np.int64)
    with ThreadPoolExecutor(2, thread_name_prefix="pair-features") as pool:
        list(pool.map(run, (claim, claim)))


def feature_matrix(inputs: KernelInputs) -> np.ndarray:
    """``features.pair_features``' matrix (pairs x ``kernels.PAIR_FEATURES``) by ``kernels.pair_features``."""
    n = len(inputs.pairs[0])
    matrix = np.empty((n, len(kernels.PAIR_FEATURES)), np.float64)  # a pair's features contiguous
    _by_parts(n, lambda claim: kernels.pair_features(*inputs.args(), matrix, None, claim))
    return matrix


def judged_pairs(inputs: KernelInputs, judge: "Judge") -> "Judged":
    """``judge``'s judgements of the pairs ``feature_matrix`` would give the rows of, each row
    judged by the kernel as it is built (the matrix is never written)."""
    n = len(inputs.pairs[0])
    out = judge.blank(n)
    judging = (
        judge.weights,
        judge.intercept,
        judge.bar,
        out.insight,
        out.codes[0],
        out.counts[0],
        out.codes[1],
        out.counts[1],
        tuple(out.shown.values()),
    )
    _by_parts(n, lambda claim: kernels.pair_features(*inputs.args(), None, judging, claim))
    return out
