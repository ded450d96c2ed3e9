"""Ingest benchmark: gz CloudTrail -> normalised events, against zlib on the same bytes, and peak RSS.

    python -m benchmarks.ingest              # throughput on ~250k events + peak RSS on a ~5M-event day
    python -m benchmarks.ingest --quick      # smaller, for a smoke run

Throughput is CPU time of this process (the parser is single-threaded, so: one core), reported
as a ratio to the CPU time zlib needs to decompress the same objects, measured in the same run,
because the machines are shared and noisy. Target: at most 3x. The ingest time includes the
decompression itself, so 1x is the floor. The pyarrow JSON reader (used where the C scanner was
not built) is timed on the same objects as a second baseline.

Peak RSS runs the real assets (raw_cloudtrail, cloudtrail_events, learning_set) for one day in a
child process, and reports it beside the RSS of a child that only imports the project (baseline).
The big day is built from the generator's files, copied under new object names until it holds
the requested number of events; the copies repeat event ids, which the learning set counts once.
"""

import argparse
import gzip
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import zlib
from datetime import date
from pathlib import Path

DAY = date(2024, 6, 1)


def _files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*.json.gz") if "CloudTrail-Digest" not in p.parts)


def _batches(blobs: list[bytes]) -> list[list[bytes]]:
    """The same grouping ``cloudtrail.read`` uses (about BATCH_BYTES of JSON per parse call)."""
    from proactive_assets.core.sources.cloudtrail_records import BATCH_BYTES

    groups: list[list[bytes]] = [[]]
    size = 0
    for blob in blobs:
        groups[-1].append(blob)
        size += len(blob) * 8
        if size >= BATCH_BYTES:
            groups.append([])
            size = 0
    return [g for g in groups if g]


def throughput(root: Path, repeats: int = 3) -> dict:
    """CPU seconds (this process, one core) of zlib alone and of the whole parse, best of ``repeats``.

    Also times the pyarrow reader the project falls back to where the C scanner was not built.
    """
    from proactive_assets.core.sources import cloudtrail_records as cloudtrail
    from proactive_assets.core.sources.cloudtrail_records import RawLog, decompress, parse_logs

    blobs = [p.read_bytes() for p in _files(root)]
    groups = _batches(blobs)
    compressed = sum(len(b) for b in blobs)
    raw_bytes = sum(len(zlib.decompress(b, 31)) for b in blobs)
    scanner = cloudtrail.scanner
    best_zlib = best_parse = best_pyarrow = float("inf")
    events = 0

    def parse_all() -> int:
        return sum(
            parse_logs([RawLog(decompress(b), f"f{i}") for i, b in enumerate(g)]).events.num_rows for g in groups
        )

    for _ in range(repeats):
        started = time.process_time()
        for blob in blobs:
            zlib.decompress(blob, 31)
        best_zlib = min(best_zlib, time.process_time() - started)
        started = time.process_time()
        events = parse_all()
        best_parse = min(best_parse, time.process_time() - started)
        cloudtrail.scanner = None
        try:
            started = time.process_time()
            parse_all()
            best_pyarrow = min(best_pyarrow, time.process_time() - started)
        finally:
            cloudtrail.scanner = scanner
    return {
        "reader": "C scanner" if scanner is not None else "pyarrow (the C scanner is not built)",
        "pyarrow_s": best_pyarrow,
        "pyarrow_ratio_to_zlib": best_pyarrow / best_zlib,
        "objects": len(blobs),
        "events": events,
        "compressed_mb": compressed / 1e6,
        "json_mb": raw_bytes / 1e6,
        "zlib_s": best_zlib,
        "ingest_s": best_parse,
        "events_per_s": events / best_parse,
        "json_mb_per_s": raw_bytes / 1e6 / best_parse,
        "ratio_to_zlib": best_parse / best_zlib,
    }


def _grow(root: Path, target_events: int) -> int:
    """Copy the day's log objects under new names until the day holds ``target_events``."""
    files = _files(root)
    per_round = sum(len(json.loads(gzip.decompress(p.read_bytes()))["Records"]) for p in files)
    rounds = max(1, -(-target_events // per_round))
    for r in range(1, rounds):
        for path in files:
            stem = path.name[: -len(".json.gz")]
            shutil.copyfile(path, path.with_name(f"{stem[:-16]}{r:04d}{stem[-12:]}.json.gz"))
    return per_round * rounds


CHILD = """
import resource, sys, time
from datetime import date
from dagster import AssetKey, DagsterInstance
from proactive_assets.config import Settings
from proactive_assets.defs.definitions import build_definitions
if sys.argv[1] == "run":
    defs = build_definitions(Settings(home=sys.argv[3], cloudtrail_uri=sys.argv[2]))
    job = defs.resolve_implicit_global_asset_job_def()
    started = time.perf_counter()
    result = job.execute_in_process(
        partition_key=sys.argv[4], instance=DagsterInstance.ephemeral(),
        asset_selection=[AssetKey(n) for n in ("raw_cloudtrail", "cloudtrail_events", "learning_set")],
    )
    assert result.success
    print(time.perf_counter() - started)
else:
    print(0.0)
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


def _child(*args: str) -> tuple[float, float]:
    out = subprocess.run(
        [sys.executable, "-c", CHILD, *args],
        check=True,
        capture_output=True,
        text=True,
        env={**os.environ, "DAGSTER_DISABLE_TELEMETRY": "1"},
    ).stdout.split()
    return float(out[-2]), int(out[-1]) / 1024  # seconds, MiB


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--scale", type=float, default=None, help="generator scale for the throughput day")
    parser.add_argument("--big-events", type=int, default=None, help="events in the peak-RSS day")
    args = parser.parse_args(argv)
    scale = args.scale or (10.0 if args.quick else 100.0)
    big = args.big_events or (500_000 if args.quick else 5_000_000)

    from proactive_assets.samples.cloudtrail import generate_sample

    with tempfile.TemporaryDirectory(prefix="bench-ingest-") as tmp:
        root = Path(tmp) / "bucket"
        started = time.perf_counter()
        generate_sample(root, start=DAY, days=1, seed=11, scale=scale)
        generated = time.perf_counter() - started
        t = throughput(root)
        print(
            f"throughput day: {t['objects']} objects, {t['events']:,} events, {t['compressed_mb']:.1f} MB gz, "
            f"{t['json_mb']:.1f} MB JSON (generated in {generated:.1f}s)"
        )
        print(f"  zlib decompress      {t['zlib_s']:.3f} s CPU (baseline, same bytes, same run)")
        print(
            f"  ingest (gunzip+parse+normalise) {t['ingest_s']:.3f} s   {t['events_per_s']:,.0f} events/s  "
            f"{t['json_mb_per_s']:.0f} MB/s JSON"
        )
        print(f"  ratio to zlib        {t['ratio_to_zlib']:.2f}x   (target <= 3x; reader: {t['reader']})")
        print(
            f"  pyarrow JSON reader  {t['pyarrow_s']:.3f} s   {t['pyarrow_ratio_to_zlib']:.2f}x zlib "
            "(the fallback without a C compiler, same run)"
        )

        events = _grow(root, big)
        _, base_rss = _child("baseline")
        seconds, peak_rss = _child("run", str(root), str(Path(tmp) / "home"), DAY.isoformat())
        print(f"peak-RSS day: {events:,} events through raw_cloudtrail -> cloudtrail_events -> learning_set")
        print(f"  wall time            {seconds:.1f} s   ({events / seconds:,.0f} events/s end to end)")
        print(
            f"  peak RSS             {peak_rss:,.0f} MiB  (import-only baseline {base_rss:,.0f} MiB, "
            f"ratio {peak_rss / base_rss:.2f}x; target < 1536 MiB)"
        )
    print(f"(this process peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:,.0f} MiB)")


if __name__ == "__main__":
    main()
