"""A day's listing: delivery times read from object names, and the inventory table read back."""

from datetime import UTC, date, datetime

import pytest

from proactive_assets.core.sources import cloudtrail
from proactive_assets.core.storage import LocalStore

FOLDER = "AWSLogs/111122223333/CloudTrail/us-east-1/2024/06/01"


def key(stamp: str) -> str:
    return f"{FOLDER}/111122223333_CloudTrail_us-east-1_{stamp}_AbCd1234.json.gz"


@pytest.mark.parametrize("stamp", ["20240601T0000Z", "20240601T2359Z", "20240229T1230Z", "19991231T2305Z"])
def test_the_delivery_time_is_the_names_stamp(stamp: str) -> None:
    info = cloudtrail.parse_key(key(stamp))
    assert info is not None and info.day == date(2024, 6, 1)
    assert info.delivered_at == datetime.strptime(stamp + "+0000", "%Y%m%dT%H%MZ%z")
    assert info.delivered_at.utcoffset().total_seconds() == 0


@pytest.mark.parametrize(
    "stamp", ["20241301T0000Z", "20240230T0000Z", "20230229T0000Z", "20240601T2400Z", "20240601T0060Z"]
)
def test_a_stamp_that_is_no_time_is_not_a_log_object(stamp: str) -> None:
    assert cloudtrail.parse_key(key(stamp)) is None


def test_the_inventory_gives_back_the_objects(tmp_path) -> None:
    for i, stamp in enumerate(["20240601T0005Z", "20240601T0010Z", "20240601T0015Z"]):
        path = tmp_path / key(stamp).replace("AbCd1234", f"Obj{i}")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x" * (i + 1))
    objects = cloudtrail.list_day(LocalStore(tmp_path), date(2024, 6, 1)).objects
    assert len(objects) == 3 and objects[0].delivered_at == datetime(2024, 6, 1, 0, 5, tzinfo=UTC)
    inventory = cloudtrail.inventory_table(objects)
    rows = inventory.to_pylist()  # what each row holds, as Arrow gives it back (times to the millisecond)
    back = cloudtrail.objects_from_inventory(inventory)
    assert [(o.info.key, o.info.size, o.info.etag, o.info.last_modified) for o in back] == [
        (r["key"], r["size"], r["etag"], r["last_modified"]) for r in rows
    ]
    assert [(o.uri, o.org_id, o.account, o.region, o.delivered_at) for o in back] == [
        (o.uri, o.org_id, o.account, o.region, o.delivered_at) for o in objects
    ]


@pytest.mark.parametrize(
    "name", ["a", "a/b.json.gz", "a//b", "./a", "a/./b", "a/.", "a/..", "/abs/x", "a/", ".", ".x/y"]
)
def test_a_local_objects_uri_is_its_path_whatever_the_key(tmp_path, name: str) -> None:
    store = LocalStore(tmp_path)
    assert store.uri_for(name) == str(store.root / name) == store.local_path(name)


@pytest.mark.parametrize("size", [0, 1, 20_000, (1 << 20) + 3])
def test_a_local_object_is_read_whole(tmp_path, size: int) -> None:
    store = LocalStore(tmp_path)
    data = bytes(range(256)) * (size // 256) + b"x" * (size % 256)
    store.put(key("20240601T0000Z"), data)
    assert store.get(key("20240601T0000Z")) == data
    with pytest.raises(FileNotFoundError):
        store.get(key("20240601T0005Z"))
