"""The entry point: build the world, plan the incidents, write each day and the digests, then the labels."""

import datetime as dt
import json
import os
import shutil
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from proactive_assets.samples.cloudtrail.activity import DailyActivity
from proactive_assets.samples.cloudtrail.catalog import BUCKET, REGIONS
from proactive_assets.samples.cloudtrail.clock import day_start
from proactive_assets.samples.cloudtrail.incidents import IncidentPlan
from proactive_assets.samples.cloudtrail.seeded import HashedNames, random_stream
from proactive_assets.samples.cloudtrail.world import World, build_world
from proactive_assets.samples.cloudtrail.writer import BucketWriter

GROUND_TRUTH = "ground_truth.json"


@dataclass(frozen=True)
class SampleSummary:
    """What was written, so the CLI, demo and benchmarks can report it without re-reading."""

    out_dir: Path
    start: dt.date
    days: int
    seed: int
    scale: float
    log_files: int
    digest_files: int
    events: int
    duplicates: int
    service_events: int
    identities: int
    accounts: tuple[str, ...]
    regions: tuple[str, ...]
    org_id: str
    suspicious: int
    benign_novelties: int
    ground_truth: Path
    seconds: float

    def __str__(self) -> str:
        return (
            f"{self.days} days from {self.start} (seed {self.seed}, scale {self.scale:g}): "
            f"{self.log_files} log files + {self.digest_files} digests, {self.events} events "
            f"({self.duplicates} duplicates, {self.service_events} from AWS services), "
            f"{self.identities} identities, {len(self.accounts)} accounts, {len(self.regions)} regions; "
            f"ground truth: {self.suspicious} suspicious, {self.benign_novelties} benign novelties"
        )


def prepare_output(out: Path) -> None:
    """Make ``out`` ready for a sample: a previous sample's logs (it has a ``ground_truth.json``) are
    removed, any other ``AWSLogs`` folder is refused, never deleted."""
    logs = out / "AWSLogs"
    if logs.exists() and any(logs.iterdir()):
        if not (out / GROUND_TRUTH).exists():
            raise FileExistsError(f"{logs} holds logs that this generator did not write; choose an empty folder")
        shutil.rmtree(logs)
    out.mkdir(parents=True, exist_ok=True)


def generate_sample(out_dir: Path, start: dt.date, days: int = 21, seed: int = 7, scale: float = 1.0) -> SampleSummary:
    """Write a synthetic CloudTrail bucket and its ``ground_truth.json`` under ``out_dir``.

    Same arguments, same bytes. A previous sample in ``out_dir`` (recognised by its
    ``ground_truth.json``) is replaced; any other ``AWSLogs`` folder is refused, never deleted.
    """
    if days < 1:
        raise ValueError("days must be at least 1")
    if not scale > 0:
        raise ValueError("scale must be positive")
    if isinstance(start, dt.datetime):  # days are UTC calendar days, whatever the time of day given
        start = start.date()
    began = dt.datetime.now(dt.UTC)
    out = Path(out_dir)
    prepare_output(out)
    names = HashedNames(seed)
    world = build_world(seed, names)
    activity = DailyActivity(world, names, start, scale)
    plan = IncidentPlan(activity, days, seed)
    plan.draw()
    watch: dict[tuple[int, str, str], set[str]] = {(t.day, t.arn, t.ip): set() for t in plan.truth}
    workers = min(4, (os.cpu_count() or 1) + 2)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        writer = BucketWriter(out, world, names, pool, workers, watch)
        for day in range(days):
            rng = random_stream(seed, 3, day)
            sessions = activity.day_sessions(day, rng) + plan.forced.get(day, [])
            writer.day(day, sessions, rng, day_start(start, day + 1), final=day == days - 1)
        writer.digests(day_start(start, 0), days)
        writer.finish()
    missing = [t for t in plan.truth if (t.day, t.arn, t.ip) not in writer.pairs]
    if missing:  # pragma: no cover - an internal invariant of the plan
        raise RuntimeError(f"injected activity missing from the logs: {missing}")
    truth = _ground_truth(world, plan, writer, seed, scale)
    truth_path = out / GROUND_TRUTH
    truth_path.write_text(json.dumps(truth, indent=2) + "\n")
    return SampleSummary(
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
        accounts=tuple(a.id for a in world.accounts),
        regions=REGIONS,
        org_id=world.org_id,
        suspicious=len(truth["suspicious"]),
        benign_novelties=len(truth["benign_novelties"]),
        ground_truth=truth_path,
        seconds=(dt.datetime.now(dt.UTC) - began).total_seconds(),
    )


def _ground_truth(world: World, plan: IncidentPlan, writer: BucketWriter, seed: int, scale: float) -> dict:
    """The labels: what the plan injected, with the calls it made, and the travel found in the logs."""
    start = plan.start

    def entries(label: str) -> list[dict]:
        rows = {}
        for t in plan.truth:
            if t.label == label:
                rows.setdefault((t.day, t.arn, t.ip), t)
        calls = writer.watch
        return [_entry(start, t.day, t.arn, t.ip, t.kind, t.description, calls[key]) for key, t in sorted(rows.items())]

    travel = [
        _entry(start, day, arn, ip, "travel", "a real person working from a hotel or airport network", set())
        for day, arn, ip in sorted(writer.travel)
    ]
    return {
        "seed": seed,
        "start": start.isoformat(),
        "days": plan.days,
        "scale": scale,
        "accounts": [a.id for a in world.accounts],
        "account_names": {a.id: a.name for a in world.accounts},
        "regions": list(REGIONS),
        "org_id": world.org_id,
        "org_accounts": [a.id for a in world.accounts if a.org_id],
        "bucket": BUCKET,
        "first_incident_day": (start + dt.timedelta(days=plan.first_incident_day)).isoformat(),
        "suspicious": entries("suspicious"),
        "benign_novelties": entries("benign_novelty"),
        "travel": travel,
    }


def _entry(start: dt.date, day: int, arn: str, ip: str, kind: str, description: str, events: set[str]) -> dict:
    return {
        "day": (start + dt.timedelta(days=day)).isoformat(),
        "entity": arn,
        "source_ip": ip,
        "kind": kind,
        "description": description,
        "event_names": sorted(events),
    }
