"""CloudTrail records in the shapes real logs take, through the pipeline, against an independent reader.

Corpora (each a folder of ``.json`` files holding a record array, a ``{"Records": [...]}`` object or
one record, or ``.log``/``.jsonl`` files with one record a line):

* ``data/cloudtrail`` and ``data/cloudtrail_edge``: the suite's own (see ``data/PROVENANCE.md``);
  always present, so these tests run on a fresh clone.
* every folder named in ``PROACTIVE_REAL_CLOUDTRAIL`` (``os.pathsep``-separated): public logs a
  developer keeps outside the repository (Stratus Red Team detonation logs, Panther rule tests...).
  Nothing outside the repository is read unless named there, so a clone tests the same anywhere.

Each file becomes CloudTrail log objects as CloudTrail delivers them (``{"Records": [...]}``
gzip'd, one object per account and region, named ``<acct>_CloudTrail_<region>_<stamp>_<id>.json.gz``
under ``AWSLogs/``). They are parsed with ``parse_log_bytes`` and compared, record by record, with
what a plain ``json`` reader written here says CloudTrail means; then a day of them is run through
the ingest assets, which must finish without a failed step and agree with the same reader.
"""

import gzip
import ipaddress
import json
import os
import re
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest
from dagster import DagsterInstance, materialize

from proactive_assets.core.sources import cloudtrail_records as cloudtrail
from proactive_assets.core.storage import LocalStore
from proactive_assets.defs.resources import ProactiveResource
from proactive_assets_tests.cloudtrail_fixtures import log_key
from proactive_assets_tests.conftest import SAMPLES, project_assets, project_resource

DAY = date(2024, 3, 5)
FALLBACK_ACCOUNT = "111122223333"
FALLBACK_REGION = "us-east-1"
RECORD_SUFFIXES = (".json", ".log", ".jsonl", ".ndjson")

# Product bugs records expose, by file of data/cloudtrail_edge and stage ("parse" or "assets"): a
# strict xfail naming the bug. The eventTime export forms, empty ARNs and eventIDs shared by two
# identities (issue 12 item 5) were fixed; add an entry here when a new record shape finds a bug.
KNOWN_BUGS: dict[str, dict[str, str]] = {}


# ------------------------------------------------------------------------------- corpora


def corpus_dirs() -> list[tuple[str, Path]]:
    """(label, folder) of every corpus present; the suite's own come first and always exist."""
    dirs = [("data/cloudtrail", SAMPLES / "cloudtrail"), ("data/cloudtrail_edge", SAMPLES / "cloudtrail_edge")]
    for entry in filter(None, os.environ.get("PROACTIVE_REAL_CLOUDTRAIL", "").split(os.pathsep)):
        folder = Path(entry).expanduser()
        dirs.append((f"env/{folder.name}", folder))
    return dirs


def corpus_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix in RECORD_SUFFIXES)


def load_records(path: Path) -> list[Any]:
    """The records of one sample file, whatever the container."""
    text = path.read_text(encoding="utf-8")
    if path.suffix != ".json":
        return [json.loads(line) for line in text.splitlines() if line.strip()]
    doc = json.loads(text)
    if isinstance(doc, list):
        return doc
    if isinstance(doc, dict) and isinstance(doc.get("Records"), list):
        return doc["Records"]
    return [doc]


@dataclass(frozen=True)
class Case:
    corpus: str
    path: Path

    @property
    def id(self) -> str:
        return f"{self.corpus}/{self.path.name}"

    def bug(self, stage: str) -> str | None:
        if self.corpus != "data/cloudtrail_edge":
            return None
        return KNOWN_BUGS.get(self.path.name, {}).get(stage)


def file_cases() -> list[Case]:
    return [Case(label, path) for label, folder in corpus_dirs() for path in corpus_files(folder)]


def day_groups() -> list[tuple[str, list[Case]]]:
    """One day per edge-case file (each shows one behaviour); one day per whole corpus otherwise."""
    groups: list[tuple[str, list[Case]]] = []
    for label, folder in corpus_dirs():
        cases = [Case(label, path) for path in corpus_files(folder)]
        if label == "data/cloudtrail_edge":
            groups += [(case.id, [case]) for case in cases]
        else:
            groups.append((label, cases))
    return groups


def with_bug_marks(params: list[Any], stage: str) -> list[Any]:
    marked = []
    for param in params:
        cases = param[1] if isinstance(param, tuple) else [param]
        reasons = sorted({r for case in cases if (r := case.bug(stage))})
        label = param[0] if isinstance(param, tuple) else param.id
        marks = [pytest.mark.xfail(strict=True, reason="; ".join(reasons))] if reasons else []
        marked.append(pytest.param(param, id=label, marks=marks))
    return marked


# --------------------------------------------------------------- CloudTrail log objects


ACCOUNT_ID = re.compile(r"^\d{12}$")
REGION = re.compile(r"^[a-z0-9-]+$")


@dataclass(frozen=True)
class Delivery:
    """One log object: its key, the account and region the key names, and its records."""

    key: str
    account: str
    region: str
    records: list[Any]

    def body(self) -> bytes:
        return gzip.compress(json.dumps({"Records": self.records}).encode(), mtime=0)


def deliveries(cases: list[Case], day: date = DAY) -> list[Delivery]:
    """Each file's records as CloudTrail delivers them: one object per (account, region), in order."""
    out: list[Delivery] = []
    for case in cases:
        groups: dict[tuple[str, str], list[Any]] = {}
        for rec in load_records(case.path):
            fields = rec if isinstance(rec, dict) else {}
            account = fields.get("recipientAccountId")
            region = fields.get("awsRegion")
            account = account if isinstance(account, str) and ACCOUNT_ID.match(account) else FALLBACK_ACCOUNT
            region = region if isinstance(region, str) and REGION.match(region) else FALLBACK_REGION
            groups.setdefault((account, region), []).append(rec)
        for (account, region), records in groups.items():
            n = len(out)
            key = log_key(day, account=account, region=region, minute=n % 1440, uid=f"Sample{n:010d}")
            out.append(Delivery(key, account, region, records))
    return out


@pytest.fixture
def cloudtrail_bucket(tmp_path: Path):
    """A local folder laid out like a CloudTrail bucket; call it with cases to fill the day."""

    def fill(cases: list[Case]) -> tuple[LocalStore, list[Delivery]]:
        store = LocalStore(tmp_path / "bucket")
        objects = deliveries(cases)
        for obj in objects:
            store.put(obj.key, obj.body())
        return store, objects

    return fill


# ----------------------------------------------------------- the independent reference reader


TIME = re.compile(r"^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(?:\.(\d+))?(?:[Zz]|\+00:00)$")
STRING_FIELDS = (
    "eventTime",
    "eventName",
    "eventSource",
    "awsRegion",
    "sourceIPAddress",
    "userAgent",
    "errorCode",
    "eventID",
    "recipientAccountId",
)
IDENTITY_FIELDS = ("type", "arn", "accountId", "invokedBy")


def reference_time(text: str) -> datetime | None:
    """eventTime as CloudTrail and its exports write it: UTC, optional fraction (kept to the ms)."""
    match = TIME.match(text)
    if not match:
        return None
    y, mo, d, h, mi, s, frac = match.groups()
    micro = int((frac or "0")[:3].ljust(3, "0")) * 1000
    try:
        return datetime(int(y), int(mo), int(d), int(h), int(mi), int(s), micro, tzinfo=UTC)
    except ValueError:
        return None


def reference_source(value: str) -> tuple[str, str]:
    """(kind, text): addresses canonical (octets with leading zeros are decimal), the rest as given."""
    text = value.strip()
    lowered = text.lower()
    if lowered == "amazonaws.com" or lowered.endswith(".amazonaws.com"):
        return "aws_service", value
    if lowered == "aws internal":
        return "aws_internal", value
    try:
        if ":" in text:
            address = ipaddress.IPv6Address(text.split("%", 1)[0])
            return "ip", str(address.ipv4_mapped or address)
        octets = text.split(".")
        if len(octets) == 4 and all(o.isdigit() and len(o) <= 3 for o in octets):
            return "ip", str(ipaddress.IPv4Address(".".join(str(int(o)) for o in octets)))
    except ValueError:
        pass
    return "invalid", value


def reference_reason(rec: Any) -> str | None:
    """Why a record cannot be used at all (it is then quarantined), or None."""
    if not isinstance(rec, dict):
        return "not an object"
    identity = rec.get("userIdentity")
    if not isinstance(identity, dict):
        return "userIdentity"
    for name in STRING_FIELDS:
        if rec.get(name) is not None and not isinstance(rec[name], str):
            return f"{name} has the wrong type"
    for name in IDENTITY_FIELDS:
        if identity.get(name) is not None and not isinstance(identity[name], str):
            return f"userIdentity.{name} has the wrong type"
    if rec.get("eventTime") is None or reference_time(rec["eventTime"]) is None:
        return "eventTime"
    if rec.get("eventName") is None:
        return "eventName"
    if rec.get("sourceIPAddress") is None:
        return "sourceIPAddress"
    return None


def reference_row(rec: dict, account: str, region: str) -> dict[str, Any]:
    """What one usable record means: the fields the pipeline keeps, read with ``json`` only."""
    identity = rec["userIdentity"]
    entity = identity.get("arn") or None  # an empty arn names no one
    kind, source_ip = reference_source(rec["sourceIPAddress"])
    return {
        "event_time": reference_time(rec["eventTime"]),
        "event_name": rec["eventName"],
        "event_source": rec.get("eventSource"),
        "entity": entity,
        "identity_type": identity.get("type"),
        "account": rec.get("recipientAccountId") or account,
        "region": rec.get("awsRegion") or region,
        "source_ip": source_ip,
        "source_kind": kind,
        "is_pair": kind == "ip" and entity is not None,
        "user_agent": rec.get("userAgent"),
        "error_code": rec.get("errorCode"),
        "event_id": rec.get("eventID"),
    }


def reference(delivery: Delivery) -> tuple[list[dict[str, Any]], dict[int, str]]:
    """Rows of the usable records in order, and the index -> reason of the others."""
    rows, rejected = [], {}
    for index, rec in enumerate(delivery.records):
        reason = reference_reason(rec)
        if reason is None:
            rows.append(reference_row(rec, delivery.account, delivery.region))
        else:
            rejected[index] = reason
    return rows, rejected


def product_row(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "event_time": row["event_time"],
        "event_name": row["event_name"],
        "event_source": row["event_source"],
        "entity": row["identity_arn"] or None,
        "identity_type": row["identity_type"],
        "account": row["account"],
        "region": row["region"],
        "source_ip": row["source_ip"],
        "source_kind": row["source_kind"],
        "is_pair": row["is_pair"],
        "user_agent": row["user_agent"],
        "error_code": row["error_code"],
        "event_id": row["event_id"],
    }


def differences(got: list[dict], want: list[dict], label: str) -> list[str]:
    """Readable field-by-field differences, so a failure names the record and the field."""
    lines = []
    if len(got) != len(want):
        lines.append(f"{label}: {len(got)} rows kept, the reference keeps {len(want)}")
    for i, (g, w) in enumerate(zip(got, want, strict=False)):
        for name in w:
            if g[name] != w[name]:
                lines.append(f"{label} row {i}: {name} = {g[name]!r}, reference {w[name]!r}")
    return lines


# ---------------------------------------------------------------------------------- tests


def test_every_corpus_has_records() -> None:
    """A corpus folder that is present but empty (or a wrong path in the variable) fails loudly."""
    for label, folder in corpus_dirs():
        assert folder.is_dir(), f"{label}: {folder} is not a folder"
        files = corpus_files(folder)
        assert files, f"{label}: no {'/'.join(RECORD_SUFFIXES)} sample files in {folder}"
        assert all(load_records(p) for p in files), f"{label}: a sample file has no records"


@pytest.mark.parametrize("reader", ["scanner", "pyarrow"])
@pytest.mark.parametrize("case", with_bug_marks(file_cases(), "parse"))
def test_parse_matches_the_reference_reader(case: Case, reader: str, monkeypatch: pytest.MonkeyPatch) -> None:
    if reader == "pyarrow":
        monkeypatch.setattr(cloudtrail, "scanner", None)
    elif cloudtrail.scanner is None and not os.environ.get("CI"):
        pytest.skip("the C scanner is not built here")
    objects = deliveries([case])
    assert objects, f"no records in {case.path}"
    problems = []
    for obj in objects:
        parsed = cloudtrail.parse_log_bytes(obj.body(), obj.key, obj.account, obj.region)
        want_rows, want_rejected = reference(obj)
        got_rows = [product_row(r) for r in parsed.events.to_pylist()]
        problems += differences(got_rows, want_rows, obj.key.rsplit("/", 1)[-1])
        whole = [p.message() for p in parsed.problems if p.record_index < 0]
        problems += [f"object quarantined: {m}" for m in whole]
        got_rejected = {
            p.record_index: p.message() for p in parsed.problems if p.record_index >= 0 and p.record_rejected
        }
        for index in sorted(set(got_rejected) | set(want_rejected)):
            if (index in got_rejected) != (index in want_rejected):
                problems.append(
                    f"record #{index}: pipeline {got_rejected.get(index, 'kept it')!r}, "
                    f"reference {want_rejected.get(index, 'keeps it')!r}"
                )
    assert not problems, "\n".join(problems[:40])


def run_day(cases: list[Case], fill) -> tuple[Any, ProactiveResource, list[Delivery]]:
    store, objects = fill(cases)
    root = Path(store.root).parent
    res = project_resource(root, cloudtrail_uri=str(store.root))
    result = materialize(
        project_assets(res, "raw_cloudtrail", "cloudtrail_events", "learning_set"),
        partition_key=DAY.isoformat(),
        resources={"proactive": res},
        instance=DagsterInstance.ephemeral(),
        raise_on_error=False,
    )
    return result, res, objects


def metadata(result, asset: str) -> dict:
    mat = result.asset_materializations_for_node(asset)[-1]
    return {k: getattr(v, "value", v) for k, v in mat.metadata.items()}


@pytest.mark.parametrize("group", with_bug_marks(day_groups(), "assets"))
def test_a_day_of_them_runs_through_the_ingest_assets(group: tuple[str, list[Case]], cloudtrail_bucket) -> None:
    """raw_cloudtrail -> cloudtrail_events -> learning_set for one day: no failed step, and the
    counts and (entity, address) pairs the reference reader expects. The same event delivered twice
    (same id, identity, address, name and time) counts once; anything else with a shared id is two."""
    label, cases = group
    result, res, objects = run_day(cases, cloudtrail_bucket)
    failures = [e.step_failure_data.error.message.strip() for e in result.all_events if e.is_step_failure]
    assert result.success and not failures, f"{label}: failed step(s):\n" + "\n".join(failures)

    rows, rejected = [], 0
    for obj in objects:
        kept, dropped = reference(obj)
        rows += kept
        rejected += len(dropped)
    raw = metadata(result, "raw_cloudtrail")
    events = metadata(result, "cloudtrail_events")
    assert raw["objects"] == len(objects)
    assert events["quarantined_objects"] == 0, events["quarantine"]
    assert (events["events"], events["rejected_records"]) == (len(rows), rejected), events["quarantine"]
    assert events["pair_events"] == sum(r["is_pair"] for r in rows)

    seen, want = set(), Counter()
    for r in rows:
        if not r["is_pair"]:
            continue
        same_event = (r["event_id"], r["entity"], r["source_ip"], r["event_name"], r["event_time"])
        if r["event_id"] is not None and same_event in seen:
            continue
        seen.add(same_event)
        want[(r["entity"], r["source_ip"])] += 1
    table = res.warehouse().read_table("learning_set", DAY)
    got = {(r["entity"], r["source_ip"]): r["event_count"] for r in table.to_pylist()}
    missing = sorted(set(want) - set(got))
    extra = sorted(set(got) - set(want))
    counts = sorted((k, got[k], want[k]) for k in set(got) & set(want) if got[k] != want[k])
    assert not (missing or extra or counts), (
        f"{label}: pairs missing {missing[:10]}, unexpected {extra[:10]}, "
        f"event counts (pair, pipeline, reference) {counts[:10]}"
    )
