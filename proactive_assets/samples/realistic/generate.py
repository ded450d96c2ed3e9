"""The entry point: build the organisation, write every day and its attacks, then the labels.

Days go in order: the day's everyday sessions, then its attacks (chosen from what the ledger
knows), then the bucket writer of the CloudTrail sample turns them into ~5-minute gzip'd
delivery files and, at the end, the hourly digests.
"""

import datetime as dt
import json
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from proactive_assets.samples.cloudtrail.catalog import BUCKET, REGIONS
from proactive_assets.samples.cloudtrail.clock import day_start
from proactive_assets.samples.cloudtrail.generate import GROUND_TRUTH, SampleSummary, prepare_output
from proactive_assets.samples.cloudtrail.seeded import HashedNames, random_stream
from proactive_assets.samples.cloudtrail.writer import BucketWriter
from proactive_assets.samples.realistic.address_plan import AWS_EC2_RANGES, GITHUB_ACTIONS_RANGES
from proactive_assets.samples.realistic.attacks import ATTACK_CATEGORIES, AttackPlan
from proactive_assets.samples.realistic.behaviour import BENIGN_CATEGORIES, DayBuilder
from proactive_assets.samples.realistic.ledger import Ledger
from proactive_assets.samples.realistic.population import Organisation, build_organisation, is_weekday

SCENARIO = "realistic"


@dataclass(frozen=True)
class RealisticSummary(SampleSummary):
    """What was written (the CloudTrail sample's summary, plus the scenario's own figures)."""

    history_days: int = 14
    people: int = 0
    machines: int = 0

    def __str__(self) -> str:
        return (
            f"realistic scenario, {self.days} days from {self.start} (seed {self.seed}, scale {self.scale:g}; "
            f"the first {self.history_days} are history): {self.log_files} log files + {self.digest_files} "
            f"digests, {self.events} events, {self.identities} identities ({self.people} people, "
            f"{self.machines} machine identities), {len(self.accounts)} accounts, {len(self.regions)} regions; "
            f"ground truth: {self.suspicious} attacks, {self.benign_novelties} benign novel pairs"
        )


def history_days_for(days: int) -> int:
    """Days of history before the first test day: 14 (the training window) when the sample allows."""
    return min(14, max(1, days - max(1, days // 3)))


def generate_realistic_sample(
    out_dir: Path, start: dt.date, days: int = 28, seed: int = 11, scale: float = 1.0
) -> RealisticSummary:
    """Write the realistic scenario's CloudTrail bucket and ``ground_truth.json`` under ``out_dir``.

    Same arguments, same bytes. ``scale`` multiplies the people and machines (1.0: about 250
    identities). A previous sample in ``out_dir`` (recognised by its ``ground_truth.json``) is
    replaced; any other ``AWSLogs`` folder is refused, never deleted.
    """
    if days < 1:
        raise ValueError("days must be at least 1")
    if not scale > 0:
        raise ValueError("scale must be positive")
    if isinstance(start, dt.datetime):
        start = start.date()
    began = dt.datetime.now(dt.UTC)
    out = Path(out_dir)
    prepare_output(out)
    names = HashedNames(seed)
    history = history_days_for(days)
    org = build_organisation(seed, names, start, days, history, scale)
    builder = DayBuilder(org, names, start)
    plan = AttackPlan(org, builder, seed, start, days, history)
    ledger = Ledger()
    workers = min(4, (os.cpu_count() or 1) + 2)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        writer = BucketWriter(out, org, names, pool, workers, {})
        for day in range(days):
            tagged = builder.day(day, random_stream(seed, 13, day))
            for session, category in tagged:
                ledger.add(session, category)
            tagged += plan.inject(day, ledger)
            ledger.close_day(day)
            sessions = [session for session, _ in tagged]
            writer.day(day, sessions, random_stream(seed, 14, day), day_start(start, day + 1), final=day == days - 1)
        writer.digests(day_start(start, 0), days)
        writer.finish()
    missing = [(r.day, r.arn, r.ip) for r in ledger.rows if (r.day, r.arn, r.ip) not in writer.pairs]
    if missing:  # pragma: no cover - an internal invariant: every recorded pair was written
        raise RuntimeError(f"pairs missing from the logs: {missing[:5]}")
    truth = ground_truth(org, plan, ledger, start, days, seed, scale, history)
    truth_path = out / GROUND_TRUTH
    truth_path.write_text(json.dumps(truth, indent=1) + "\n")
    return RealisticSummary(
        out_dir=out,
        start=start,
        days=days,
        seed=seed,
        scale=scale,
        log_files=len(writer.logs),
        digest_files=writer.digest_files,
        events=writer.events,
        duplicates=writer.duplicates,
        service_events=writer.service_events,
        identities=len(writer.arns),
        accounts=tuple(a.id for a in org.accounts),
        regions=REGIONS,
        org_id=org.org_id,
        suspicious=len(truth["suspicious"]),
        benign_novelties=len(truth["benign_novelties"]),
        ground_truth=truth_path,
        seconds=(dt.datetime.now(dt.UTC) - began).total_seconds(),
        history_days=history,
        people=len(org.people),
        machines=len(org.machines),
    )


def ground_truth(
    org: Organisation,
    plan: AttackPlan,
    ledger: Ledger,
    start: dt.date,
    days: int,
    seed: int,
    scale: float,
    history: int,
) -> dict:
    """The labels: every attack pair, every benign novel pair (from day 1) by category, and the days."""

    def iso(day: int) -> str:
        return (start + dt.timedelta(days=day)).isoformat()

    attacks = sorted(plan.attacks, key=lambda a: (a.day, a.arn, a.ip))
    suspicious = [
        {
            "day": iso(a.day),
            "entity": a.arn,
            "source_ip": a.ip,
            "category": a.category,
            "kind": a.category,
            "description": a.description,
            "event_names": sorted(set(a.event_names)),
        }
        for a in attacks
    ]
    novel = sorted(
        (r for r in ledger.rows if r.novel and not r.attack and r.day > 0), key=lambda r: (r.day, r.arn, r.ip)
    )
    benign = [{"day": iso(r.day), "entity": r.arn, "source_ip": r.ip, "category": r.category} for r in novel]
    weekend = [d for d in range(days) if not is_weekday(start, d)]
    categories: dict[str, dict] = {}
    for name, description in ATTACK_CATEGORIES.items():
        count = sum(1 for a in attacks if a.category == name)
        categories[name] = {"kind": "attack", "description": description, "pairs": count}
    for name, description in BENIGN_CATEGORIES.items():
        rows = [r for r in novel if (r.day in weekend if name == "weekend" else r.category == name)]
        categories[name] = {
            "kind": "benign",
            "description": description,
            "pairs": len(rows),
            "test_day_pairs": sum(1 for r in rows if r.day >= history),
        }
    categories["weekend"]["days"] = [iso(d) for d in weekend]
    return {
        "scenario": SCENARIO,
        "seed": seed,
        "start": start.isoformat(),
        "days": days,
        "scale": scale,
        "history_days": history,
        "first_test_day": iso(history) if history < days else None,
        "test_days": [iso(d) for d in range(history, days)],
        "weekend_days": [iso(d) for d in weekend],
        "vpn_move_day": iso(org.vpn.move_day),
        "identities_per_day": {iso(d): n for d, n in enumerate(ledger.identities_per_day)},
        "accounts": [a.id for a in org.accounts],
        "account_names": {a.id: a.name for a in org.accounts},
        "regions": list(REGIONS),
        "org_id": org.org_id,
        "org_accounts": [a.id for a in org.accounts if a.org_id],
        "bucket": BUCKET,
        "address_sources": {
            "aws_ec2": {"source": "AWS ip-ranges.json, service EC2, createDate 2026-08-22-15-17-05", **AWS_EC2_RANGES},
            "github_actions": {"source": "GitHub /meta API, actions", "prefixes": list(GITHUB_ACTIONS_RANGES)},
        },
        "categories": categories,
        "missed_attacks": [{"category": c, "day": iso(d)} for c, d in plan.missed],
        "suspicious": suspicious,
        "benign_novelties": benign,
        "travel": [e for e in benign if e["category"] == "travel"],
    }
