"""The evidence about one (identity, address) pair of a day, from what the organisation's own logs say.

History is the training window (rows of (identity, address, day)); the day is every pair of the
day being judged (both indexed in ``history.py``). For each pair:

* how novel the address is for this identity, graded by level (the address, its /24 (/64), its
  /16 (/48), its /12 (/32)) - a first-seen rule's signal;
* how many *other* identities used the address or its network in the window and today (a VPN
  egress move is many identities at once, a stolen key one);
* how much this identity churns: the share of its active days on which it used a new /24 or
  /16 (mobile carriers and CI runner pools do every day, two fixed NAT addresses never);
* who owns the address (AWS region and service, another cloud, private) against whom the
  identity's addresses belonged to so far (an instance role calling from outside AWS, or from
  another AWS region; a CI role from a residential network);
* whether the identity is also active from a network it knows today (stolen credentials are
  used while their owner works as usual);
* whether the same person's other identity (``persons.py``) used the address or its /24 (/64) in
  the window: a person switching roles, not an intruder. Only the past vouches: two of one
  person's identities new on the same address today is what a stolen laptop's credentials
  look like too;
* the IP Insights model's own judgement of the pair.

``FEATURES`` names the columns of the matrix ``pair_features`` returns, in order.
"""

from typing import TYPE_CHECKING

import numpy as np

from proactive_assets.core.evidence import compiled
from proactive_assets.core.evidence.compiled import kernels
from proactive_assets.core.evidence.history import (
    ACTION_TAG,
    AGENT_TAG,
    Behaviour,
    Day,
    History,
    lookup_count,
    member,
    pair_member,
    provider_category,
    runs,
)
from proactive_assets.core.evidence.keys import AddressBook, pair_key
from proactive_assets.core.evidence.networks import AWS

if TYPE_CHECKING:
    from proactive_assets.core.evidence.judgement import Judge, Judged

FEATURES = (
    "novel_24",  # the /24 (/64) is known to the identity, the address is not
    "novel_16",  # only the /16 (/48) is known
    "novel_12",  # only the /12 (/32) is known
    "novel_network",  # nothing of it is known to this (known) identity
    "new_identity",  # the identity has no history in the window
    "history_days",
    "churn_24",
    "churn_16",
    "networks_16",
    "others_address_window",
    "others_24_window",
    "others_16_window",
    "others_12_window",
    "others_address_today",
    "others_24_today",
    "known_network_today",
    "sibling_known_today",  # a known /24 of the same /16 is active today, this pair's /24 is new
    "person_address",  # new to the identity, used by the same person's other identity in the window
    "person_24",  # the /24 (/64) is new to the identity, not to the same person's other identities
    "aws_address",
    "cloud_address",
    "private_address",
    "aws_share",
    "cloud_share",
    "provider_new",
    "off_provider",  # an identity that only ever called from cloud or AWS addresses, now elsewhere
    "aws_region_new",
    "family_new",
    "ip_insights",
    "ip_insights_missing",
    "new_actions",  # share of the pair's API calls this identity never made in the window
    "new_user_agent",  # share of the pair's user agents this identity never used
    "events",
    "novel_x_churn_24",
    "novel_x_churn_16",
    "novel_x_known_today",
    "novel_x_others_window",
    "novel_x_others_today",
    "novel_x_provider_new",
    "novel_x_ip_insights",
    "off_provider_x_others",  # a shared address vouches for people, not for a machine identity
    "novel_x_new_actions",
    "novel_x_new_user_agent",
)

_DAYS_SCALE = np.log1p(14.0)
_NETS_SCALE = np.log1p(16.0)


def _unseen_share(
    entity: np.ndarray, pair: np.ndarray, code: np.ndarray, seen: np.ndarray, tag: np.uint64, n: int
) -> tuple[np.ndarray, np.ndarray]:
    """Per pair: the share of its codes the identity never had, and whether it has any."""
    unseen = ~member(seen, pair_key(entity[pair], code.astype(np.uint64) ^ tag))
    total = np.bincount(pair, minlength=n)
    return np.bincount(pair, weights=unseen, minlength=n) / np.maximum(total, 1), total > 0


def _person_vouches(
    entity: np.ndarray, address: np.ndarray, book: AddressBook, history: History, persons: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray]:
    """Per pair: is the address (its /24 (/64)) in the window of another identity of the same
    person? Looked up in those identities' own history, so a person with one identity costs
    nothing and the index stores nothing more. (It vouches only where the address is new to the
    identity itself: ``pair_features`` masks it by the pair's own novelty.)"""
    n = len(entity)
    out = [np.zeros(n, bool), np.zeros(n, bool)]
    if persons is None or n == 0:
        return out[0], out[1]
    linked = np.flatnonzero(persons != 0)
    by_person = linked[np.argsort(persons[linked], kind="stable")]  # identity codes grouped by person
    grouped = persons[by_person]
    # each identity's run in by_person, then each pair's (the pairs are many, the identities few)
    starts = np.searchsorted(grouped, persons)
    sizes = np.where(persons != 0, np.searchsorted(grouped, persons, side="right") - starts, 0)
    first, count = starts[entity], sizes[entity]
    rows = np.flatnonzero(count > 1)
    if len(rows) == 0:
        return out[0], out[1]
    repeats = count[rows]
    pair = np.repeat(rows, repeats)
    other = by_person[runs(first[rows], repeats)]
    keep = other != entity[pair]
    pair, other = pair[keep], other[keep]
    for level in (0, 1):
        hit = pair[pair_member(history.seen[level], other, book.level_keys[level], address[pair])]
        out[level][hit] = True
    return out[0], out[1]


def pair_context(
    entity: np.ndarray,
    address: np.ndarray,
    book: AddressBook,
    history: History,
    behaviour: Behaviour,
    persons: np.ndarray | None,
) -> tuple[np.ndarray, ...]:
    """What the evidence of each pair takes besides lookups and IP Insights: (person's address,
    person's /24, new actions, new agents, has agents). Scoring a day computes it while IP Insights
    scores (``judged_pairs``' ``context``)."""
    n = len(entity)
    person_address, person_24 = _person_vouches(entity, address, book, history, persons)
    new_actions, _ = _unseen_share(entity, behaviour.action_pair, behaviour.action_code, history.actions, ACTION_TAG, n)
    new_agents, has_agents = _unseen_share(
        entity, behaviour.agent_pair, behaviour.agent_code, history.agents, AGENT_TAG, n
    )
    return person_address, person_24, new_actions, new_agents, has_agents


def _kernel_inputs(
    args: tuple,
    seen_24: np.ndarray | None = None,
    context: tuple[np.ndarray, ...] | None = None,
    window_counts: tuple[np.ndarray, ...] | None = None,
) -> compiled.KernelInputs:
    """``pair_features``' arguments (in its order) as the compiled kernel takes them; ``window_counts``:
    the window's identities on each address's networks (``WindowIndex.address_counts``), where known."""
    entity, address, ip_insights, real, book, history, day, behaviour, persons = args
    if context is None:
        context = pair_context(entity, address, book, history, behaviour, persons)
    per_pair = (entity, address, ip_insights, real, *context)
    category = provider_category(book)
    return compiled.kernel_inputs(
        per_pair, behaviour.events, book, category, AWS + 2, history, day, seen_24, window_counts
    )


def judged_pairs(
    entity: np.ndarray,
    address: np.ndarray,
    ip_insights: np.ndarray,
    real: np.ndarray,
    book: AddressBook,
    history: History,
    day: Day,
    behaviour: Behaviour,
    persons: np.ndarray | None,
    judge: "Judge",
    day_pairs: bool = False,
    context: tuple[np.ndarray, ...] | None = None,
    window_counts: tuple[np.ndarray, ...] | None = None,
) -> "Judged":
    """``judge``'s judgements of the rows ``pair_features`` gives (the compiled kernel judges each
    row as it builds it, and no matrix is kept). ``day_pairs``: these are the very pairs ``day``
    was built from, in its order, so the kernel reads whether each one's /24 (/64) is known to its
    identity from ``day.seen_24`` instead of looking it up again. ``context``: their
    ``pair_context``, where the caller has it (numpy's path computes it again). ``window_counts``: the
    window's identities on each address's networks (``WindowIndex.address_counts``), where the caller
    has them (the kernel then reads them instead of looking them up; numpy's path looks them up)."""
    args = (entity, address, ip_insights, real, book, history, day, behaviour, persons)
    if not _COMPILED:
        return judge.of_matrix(pair_features(*args))
    inputs = _kernel_inputs(args, day.seen_24 if day_pairs else None, context, window_counts)
    return compiled.judged_pairs(inputs, judge)


def pair_features(
    entity: np.ndarray,
    address: np.ndarray,
    ip_insights: np.ndarray,
    real: np.ndarray,
    book: AddressBook,
    history: History,
    day: Day,
    behaviour: Behaviour,
    persons: np.ndarray | None = None,
) -> np.ndarray:
    """The evidence matrix (rows: pairs, columns: ``FEATURES``).

    ``real`` marks pairs that belong to the day (they count themselves among the day's pairs);
    synthetic pairs judged as if added to the day do not. ``behaviour`` is what each pair did;
    ``persons`` the person code of each identity code (as given to ``build_history``).
    """
    if _COMPILED:
        return compiled.feature_matrix(
            _kernel_inputs((entity, address, ip_insights, real, book, history, day, behaviour, persons))
        )
    n = len(entity)
    person_address, person_24, new_actions, new_agents, has_agents = pair_context(
        entity, address, book, history, behaviour, persons
    )
    levels = [pair_key(entity, book.level_keys[level][address]) for level in range(4)]
    seen = np.stack([member(history.seen[level], levels[level]) for level in range(4)], axis=1)
    known = history.known[entity]
    exact, l24, l16, l12 = (seen[:, i] for i in range(4))
    novel_24 = ~exact & l24
    novel_16 = ~l24 & l16
    novel_12 = ~l16 & l12
    novel_network = known & ~l12
    novel = (~exact).astype(float)
    keys = [book.level_keys[level][address] for level in range(4)]
    window = [lookup_count(history.org_keys[i], history.org_counts[i], keys[i]) for i in range(4)]
    window = [np.maximum(w - seen[:, i], 0) for i, w in enumerate(window)]  # others, not this identity
    if day.counted is not None:
        today = [day.counted[i][address] for i in range(2)]
    else:
        today = [lookup_count(day.org_keys[i], day.org_counts[i], keys[i]) for i in range(2)]
    today = [np.maximum(t - real, 0) for t in today]
    own_known_24 = (real & l24).astype(float)
    known_today = (day.known_pairs[entity] - own_known_24) > 0
    siblings = lookup_count(day.sibling_keys, day.sibling_counts, levels[2]) - own_known_24
    sibling_known_today = ~l24 & (siblings > 0)
    person_address &= ~exact
    person_24 &= ~l24
    category = provider_category(book)[address]
    provider_new = known & ~member(history.providers, pair_key(entity, category.astype(np.uint64)))
    concentration = np.maximum(history.aws_share[entity], history.cloud_share[entity])
    off_provider = provider_new * concentration * (concentration >= 0.9)
    aws = category == AWS + 2
    region_new = aws & known & (history.aws_share[entity] > 0)
    region_new &= ~member(history.aws_regions, pair_key(entity, book.owner.region[address].astype(np.uint64)))
    family_bit = np.where(book.is6[address], 2, 1)
    family_new = known & ((history.families[entity] & family_bit) == 0)
    missing = ~np.isfinite(ip_insights)
    clipped = np.clip(np.where(missing, 0.5, ip_insights), 1e-4, 1 - 1e-4)
    ipi = np.log(clipped / (1 - clipped)) / 5.0
    others_window = np.log1p(window[0]) + 0.5 * np.log1p(window[1])
    others_today = np.log1p(today[0]) + 0.5 * np.log1p(today[1])
    churn_24 = np.where(known, history.churn_24[entity], 0.0)
    churn_16 = np.where(known, history.churn_16[entity], 0.0)
    new_actions = np.where(known, new_actions, 0.0)
    new_agents = np.where(known & has_agents & history.has_agents[entity], new_agents, 0.0)
    columns = {
        "novel_24": novel_24,
        "novel_16": novel_16,
        "novel_12": novel_12,
        "novel_network": novel_network,
        "new_identity": ~known,
        "history_days": np.log1p(history.days[entity]) / _DAYS_SCALE,
        "churn_24": churn_24,
        "churn_16": churn_16,
        "networks_16": np.log1p(history.networks_16[entity]) / _NETS_SCALE,
        "others_address_window": np.log1p(window[0]),
        "others_24_window": np.log1p(window[1]),
        "others_16_window": np.log1p(window[2]),
        "others_12_window": np.log1p(window[3]),
        "others_address_today": np.log1p(today[0]),
        "others_24_today": np.log1p(today[1]),
        "known_network_today": known_today,
        "sibling_known_today": sibling_known_today,
        "person_address": person_address,
        "person_24": person_24,
        "aws_address": aws,
        "cloud_address": category >= 2,
        "private_address": category == 0,
        "aws_share": history.aws_share[entity],
        "cloud_share": history.cloud_share[entity],
        "provider_new": provider_new,
        "off_provider": off_provider,
        "aws_region_new": region_new,
        "family_new": family_new,
        "ip_insights": ipi,
        "ip_insights_missing": missing,
        "new_actions": new_actions,
        "new_user_agent": new_agents,
        "events": np.log1p(behaviour.events) / np.log(1001.0),
        "novel_x_churn_24": novel * churn_24,
        "novel_x_churn_16": novel * churn_16,
        "novel_x_known_today": novel * known_today,
        "novel_x_others_window": novel * others_window,
        "novel_x_others_today": novel * others_today,
        "novel_x_provider_new": novel * provider_new,
        "novel_x_ip_insights": novel * ipi,
        "off_provider_x_others": off_provider * (others_window + others_today),
        "novel_x_new_actions": novel * new_actions,
        "novel_x_new_user_agent": novel * new_agents,
    }
    matrix = np.empty((len(FEATURES), n), dtype=np.float64)  # filled a feature (a contiguous row) at a time
    for i, name in enumerate(FEATURES):
        matrix[i] = columns[name]
    return matrix.T


#: The compiled kernel builds the matrix when it was built for these features (``_evidence_kernels.c``).
_COMPILED = kernels is not None and tuple(kernels.PAIR_FEATURES) == FEATURES
