"""heap.retain_freed_memory: a batch's freed memory serves the next batch without new page faults,
in every process that builds the definitions."""

import json
import platform
import subprocess
import sys

import pytest

pytestmark = pytest.mark.skipif(
    platform.system() != "Linux" or platform.libc_ver()[0] != "glibc", reason="the thresholds are glibc's"
)

# Three batches of sixteen 4 MiB blocks (a batch of log texts): each batch's page faults.
BATCHES = """
import json, resource, sys
if sys.argv[1] == "retained":
    from proactive_assets.core.heap import retain_freed_memory
    assert retain_freed_memory()
elif sys.argv[1] == "definitions":
    from proactive_assets.config import Settings
    from proactive_assets.defs.definitions import build_definitions
    build_definitions(Settings.from_env({"PROACTIVE_HOME": sys.argv[2]}))
size = int(sys.argv[3]) if len(sys.argv) > 3 else 4 << 20
faults = []
for _ in range(3):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    blocks = [b"\\x01" * size for _ in range((64 << 20) // size)]
    del blocks
    faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
print(json.dumps(faults))
"""
PAGES = 16 * (4 << 20) // 4096


def _faults(mode: str, home: str = "", size: int = 4 << 20) -> list[int]:
    command = [sys.executable, "-c", BATCHES, mode, home, str(size)]
    return json.loads(subprocess.run(command, capture_output=True, text=True, check=True).stdout)


def test_a_batch_reuses_the_memory_the_one_before_freed(tmp_path):
    default = _faults("default")
    if min(default[1:]) < PAGES // 2:
        pytest.skip(f"this malloc keeps freed memory by itself ({default} faults a batch)")
    for mode in ("retained", "definitions"):
        first, *later = _faults(mode, str(tmp_path))
        assert first >= PAGES // 2, (mode, first)  # the first batch touches new memory ...
        assert max(later) < PAGES // 8, (mode, later)  # ... the next ones reuse it


def test_a_scored_days_large_blocks_are_reused_too(tmp_path):
    """Blocks of 16 and 30 MiB (a scored day's four keys an address come to 30 MiB a million
    addresses) are served from the heap and kept, not mapped afresh each batch."""
    for size in (16 << 20, 30 << 20):
        first, *later = _faults("retained", str(tmp_path), size)
        assert first >= PAGES // 2, (size, first)
        assert max(later) < PAGES // 8, (size, later)
