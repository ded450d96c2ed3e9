"""Synthetic scenario generators: log data with known answers, for demos, tests and benchmarks."""

from datetime import date
from pathlib import Path

from proactive_assets.samples.cloudtrail import SampleSummary


def generate(scenario: str, out_dir: Path, start: date, days: int, seed: int) -> SampleSummary:
    """Write the ``realistic`` or the ``classic`` scenario's CloudTrail bucket and ``ground_truth.json``."""
    if scenario == "realistic":
        from proactive_assets.samples.realistic import generate_realistic_sample

        return generate_realistic_sample(out_dir, start=start, days=days, seed=seed)
    if scenario == "classic":
        from proactive_assets.samples.cloudtrail import generate_sample

        return generate_sample(out_dir, start=start, days=days, seed=seed)
    raise ValueError(f"unknown scenario {scenario!r}: realistic or classic")
