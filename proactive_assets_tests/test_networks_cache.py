"""The provider ranges' flattened intervals kept between processes (``load_networks(cache=...)``)."""

import json
from pathlib import Path

import numpy as np
import pytest

from proactive_assets.core.evidence import networks as networks_module
from proactive_assets.core.evidence.networks import Networks

build = networks_module.load_networks.__wrapped__  # each call builds or reads; no in-process memo


def _same(a: Networks, b: Networks) -> bool:
    tables = all(
        np.array_equal(getattr(a._tables[v], f), getattr(b._tables[v], f))
        for v in (4, 6)
        for f in networks_module._TABLE_FIELDS
    )
    return tables and (a.names, a.source, a.date) == (b.names, b.source, b.date)


def test_the_cache_gives_the_built_ranges_and_follows_the_databases(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    built = build(None, None)
    first = build(None, str(cache))
    files = list(cache.glob("networks-*.npz"))
    assert len(files) == 1 and _same(first, built)
    assert _same(build(None, str(cache)), built)  # read back from the file
    assert not list(cache.glob("*.tmp"))
    # another AWS ip-ranges.json is another file; editing it is another again
    ranges = tmp_path / "ip-ranges.json"
    doc = {"createDate": "2026-11-01-00-00-00", "prefixes": [{"ip_prefix": "3.5.0.0/16", "region": "eu-west-1"}]}
    ranges.write_text(json.dumps(doc))
    custom = build(str(ranges), str(cache))
    assert _same(custom, build(str(ranges), None)) and len(list(cache.glob("networks-*.npz"))) == 2
    doc["prefixes"][0]["region"] = "us-east-2"
    ranges.write_text(json.dumps(doc))
    edited = build(str(ranges), str(cache))
    assert len(list(cache.glob("networks-*.npz"))) == 3 and "us-east-2" in edited.names


def test_a_torn_or_unwritable_cache_costs_only_time(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    build(None, str(cache))
    (path,) = cache.glob("networks-*.npz")
    path.write_bytes(b"torn")
    assert _same(build(None, str(cache)), build(None, None))  # rebuilt ...
    assert path.read_bytes() != b"torn"  # ... and rewritten
    blocked = tmp_path / "file"
    blocked.write_text("a file where the cache folder would be")
    assert _same(build(None, str(blocked / "cache")), build(None, None))


def test_a_write_that_fails_halfway_leaves_no_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def full_disk(*args, **kwargs) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(networks_module.np, "savez", full_disk)
    cache = tmp_path / "cache"
    assert _same(build(None, str(cache)), build(None, None))
    assert list(cache.iterdir()) == []
