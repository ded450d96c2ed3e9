"""Writing the bucket: sessions to records, records to ~5-minute gzip'd log files, then hourly digests.

Like CloudTrail, a log file may hold records from before its delivery day, a few records are
delivered twice, and every account and region gets one chained digest an hour, empty or not.
Files are gzip'd with mtime 0, so the same records give the same bytes.
"""

import gzip
import hashlib
import json
import re
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from proactive_assets.samples.cloudtrail.catalog import BUCKET, CATALOGS, EVENTS, GLOBAL_EVENT, HOME_REGION, REGIONS
from proactive_assets.samples.cloudtrail.clock import iso_time, stamp
from proactive_assets.samples.cloudtrail.seeded import ALNUM, HashedNames
from proactive_assets.samples.cloudtrail.sessions import Session
from proactive_assets.samples.cloudtrail.world import Account

_SLOT = 300
_GZIP_LEVEL = 6
_DUPLICATE_RATE = 0.002
_LATE_RATE = 0.01
_EVENT_VERSION = "1.09"
_HEX = "0123456789abcdef"
_MARK = "@@value@@"


def _action(name: str) -> str:
    """The IAM action of an event name (``ListFunctions20150331`` -> ``ListFunctions``)."""
    return re.sub(r"\d{8}(v\d)?$", "", name)


def _error(source: str, name: str, arn: str | None, region: str, account: str) -> tuple[str, str]:
    """The ``errorCode`` and ``errorMessage`` of a denied call, worded as each service words them."""
    service = source.split(".", 1)[0]
    action = _action(name)
    if service == "s3":
        return "AccessDenied", "Access Denied"
    detail = f"User: {arn} is not authorized to perform: {service}:{action}"
    if service == "ec2":
        return (
            "Client.UnauthorizedOperation",
            f"You are not authorized to perform this operation. {detail} because no identity-based policy "
            f"allows the {service}:{action} action",
        )
    return (
        "AccessDenied",
        f"{detail} on resource: arn:aws:{service}:{region}:{account}:* because no identity-based "
        f"policy allows the {service}:{action} action",
    )


def _uuids(rng: np.random.Generator, n: int) -> str:
    """``n`` random version-4 UUIDs concatenated (36 characters each), built in one vectorised pass."""
    nibbles = rng.integers(0, 16, size=(n, 32), dtype=np.uint8)
    nibbles[:, 12] = 4
    nibbles[:, 16] = 8 + (nibbles[:, 16] & 3)
    chars = np.frombuffer(_HEX.encode(), dtype=np.uint8)[nibbles]
    out = np.full((n, 36), ord("-"), dtype=np.uint8)
    out[:, 0:8] = chars[:, 0:8]
    out[:, 9:13] = chars[:, 8:12]
    out[:, 14:18] = chars[:, 12:16]
    out[:, 19:23] = chars[:, 16:20]
    out[:, 24:36] = chars[:, 20:32]
    return out.tobytes().decode("ascii")


def _store(path: Path, payload: bytes) -> str:
    """Gzip (mtime 0, so bytes are reproducible) and write one object; return the SHA-256 CloudTrail records."""
    digest = hashlib.sha256(payload).hexdigest()
    path.write_bytes(gzip.compress(payload, compresslevel=_GZIP_LEVEL, mtime=0))
    return digest


class Trails(Protocol):
    """What the writer needs to know of a scenario: its accounts and each trail's delivery timing.

    ``offsets`` and ``digest_offsets`` are seconds per (account, region); ``World`` is one.
    """

    accounts: list[Account]
    offsets: np.ndarray
    digest_offsets: np.ndarray


@dataclass
class _Batch:
    """Serialised records bound for one log file, with their time range."""

    records: list[str]
    oldest: str
    newest: str

    def then(self, later: "_Batch") -> "_Batch":
        return _Batch(self.records + later.records, min(self.oldest, later.oldest), max(self.newest, later.newest))


@dataclass
class _LogFile:
    account: int
    region: int
    delivered: int
    key: str
    digest: "Future[str]"  # the SHA-256 of the uncompressed file, once written
    oldest: str
    newest: str


class BucketWriter:
    """Turns sessions into records, groups them by delivery file, and writes files in worker threads.

    For each (day, ARN, address) in ``watch`` it collects the event names called; ``pairs``,
    ``travel``, ``arns`` and the counters describe what was written.
    """

    def __init__(
        self,
        out: Path,
        world: Trails,
        names: HashedNames,
        pool: ThreadPoolExecutor,
        workers: int,
        watch: dict[tuple[int, str, str], set[str]],
    ) -> None:
        self.out = out
        self.world = world
        self.names = names
        self.pool = pool
        self.workers = workers
        self.watch = watch
        self.inflight: list[Future[str]] = []
        self.folders: set[Path] = set()
        self.logs: list[_LogFile] = []
        self.digest_files = 0
        self.stash: dict[tuple[int, int, int], _Batch] = {}
        self.events = 0
        self.duplicates = 0
        self.service_events = 0
        self.pairs: set[tuple[int, str, str]] = set()
        self.arns: set[str] = set()
        self.travel: set[tuple[int, str, str]] = set()

    def _submit(self, key: str, payload: bytes) -> "Future[str]":
        path = self.out / key
        if path.parent not in self.folders:
            path.parent.mkdir(parents=True, exist_ok=True)
            self.folders.add(path.parent)
        future = self.pool.submit(_store, path, payload)
        self.inflight.append(future)
        if len(self.inflight) > 3 * self.workers:
            for done in self.inflight[: self.workers]:
                done.result()
            del self.inflight[: self.workers]
        return future

    def finish(self) -> None:
        """Wait for every file still being written."""
        for future in self.inflight:
            future.result()
        self.inflight.clear()

    @staticmethod
    def _arrays(s: Session, rng: np.random.Generator) -> tuple[np.ndarray, ...]:
        """The session's calls as arrays: time, event, region, denied."""
        if s.events is not None:
            n = len(s.events)
            gaps = rng.integers(s.gap[0], s.gap[1] + 1, n)
            gaps[0] = 0
            t = np.minimum(s.start + np.cumsum(gaps), max(s.start, s.end - 1))
            assert s.regions is not None and s.errors is not None
            return (
                t,
                np.array(s.events, dtype=np.int64),
                np.array(s.regions, dtype=np.int64),
                np.array(s.errors, dtype=bool),
            )
        n = s.n
        if n <= 0:
            empty = np.zeros(0, dtype=np.int64)
            return empty, empty, empty, np.zeros(0, dtype=bool)
        t = np.sort(rng.integers(s.start, max(s.start + 1, s.end), n))
        idx, cum = CATALOGS[s.catalog]
        ev = idx[np.minimum(np.searchsorted(cum, rng.random(n), side="right"), len(idx) - 1)]
        assert s.region_w is not None
        rcum = np.cumsum(s.region_w / s.region_w.sum())
        reg = np.minimum(np.searchsorted(rcum, rng.random(n), side="right"), len(REGIONS) - 1)
        reg[GLOBAL_EVENT[ev]] = 0
        err = rng.random(n) < s.err_rate if s.err_rate else np.zeros(n, dtype=bool)
        return t, ev, reg, err

    def _template(self, s: Session, ev: int, reg: int, err: bool) -> tuple[str, str, str, str]:
        """The record as JSON, cut where eventTime, requestID and eventID go.

        Serialising each distinct record shape once and pasting the three varying values in is
        byte-identical to ``json.dumps`` of the full dict and several times faster.
        """
        source, name, read_only, params, _ = EVENTS[ev]
        region = REGIONS[reg]
        account = s.account.id
        rec: dict[str, Any] = {
            "eventVersion": _EVENT_VERSION,
            "userIdentity": s.ui,
            "eventTime": _MARK,
            "eventSource": source,
            "eventName": name,
            "awsRegion": region,
            "sourceIPAddress": s.ip,
            "userAgent": s.ua,
        }
        if err:
            rec["errorCode"], rec["errorMessage"] = _error(source, name, s.arn, region, account)
        if s.params and name in s.params:
            params = s.params[name]
        rec["requestParameters"] = params
        rec["responseElements"] = None
        rec["requestID"] = _MARK
        rec["eventID"] = _MARK
        rec["readOnly"] = read_only
        rec["eventType"] = "AwsApiCall"
        rec["managementEvent"] = True
        rec["recipientAccountId"] = account
        if s.vpce:
            rec["vpcEndpointId"] = s.vpce
            rec["vpcEndpointAccountId"] = account
        rec["eventCategory"] = "Management"
        if s.from_ip:
            service = source.split(".", 1)[0]
            host = f"{service}.amazonaws.com" if GLOBAL_EVENT[ev] else f"{service}.{region}.amazonaws.com"
            rec["tlsDetails"] = {
                "tlsVersion": "TLSv1.3",
                "cipherSuite": "TLS_AES_128_GCM_SHA256",
                "clientProvidedHostHeader": host,
            }
        if s.console:
            rec["sessionCredentialFromConsole"] = "true"
        head, after_time, after_request, tail = json.dumps(rec, separators=(",", ":")).split(_MARK)
        return head, after_time, after_request, tail

    def day(self, day: int, sessions: list[Session], rng: np.random.Generator, day_end: int, final: bool) -> None:
        """Write the files delivered on ``day``; files delivered after midnight wait for the next day."""
        parts: list[tuple[np.ndarray, ...]] = []
        sids: list[np.ndarray] = []
        for sid, s in enumerate(sessions):
            arrays = self._arrays(s, rng)
            if len(arrays[0]) == 0:
                continue
            parts.append(arrays)
            sids.append(np.full(len(arrays[0]), sid, dtype=np.int64))
            if s.arn and s.from_ip:
                self.pairs.add((day, s.arn, s.ip))
                self.arns.add(s.arn)
                if s.travel:
                    self.travel.add((day, s.arn, s.ip))
                names = self.watch.get((day, s.arn, s.ip))
                if names is not None:
                    names.update(EVENTS[e][1] for e in set(arrays[1].tolist()))
        if not parts:
            self._flush(self.stash)
            self.stash = {}
            return
        t = np.concatenate([p[0] for p in parts])
        ev = np.concatenate([p[1] for p in parts])
        reg = np.concatenate([p[2] for p in parts])
        err = np.concatenate([p[3] for p in parts])
        sid = np.concatenate(sids)
        n = len(t)
        dup = rng.random(n) < _DUPLICATE_RATE
        late = rng.random(n) < _LATE_RATE
        acct = np.array([s.account.index for s in sessions], dtype=np.int64)[sid]
        service = np.array([not s.from_ip for s in sessions], dtype=bool)[sid]
        self.service_events += int(service.sum() + (service & dup).sum())
        offset = self.world.offsets[acct, reg]
        delivered = offset + ((t - offset) // _SLOT + 1 + late) * _SLOT
        group = (acct * len(REGIONS) + reg) * (1 << 36) + delivered
        order = np.lexsort((t, group))
        group = group[order]
        bounds = np.concatenate(([0], np.flatnonzero(np.diff(group)) + 1, [n])).tolist()
        code = ((((sid * len(EVENTS) + ev) * len(REGIONS) + reg) * 2) + err)[order].tolist()
        dups = dup[order].tolist()
        times = [x + "Z" for x in np.datetime_as_string(t[order].astype("datetime64[s]"), unit="s").tolist()]
        ids = _uuids(rng, 2 * n)
        group_l = group[bounds[:-1]].tolist()
        templates: dict[int, tuple[str, str, str, str]] = {}
        previous, self.stash = self.stash, {}
        for g, gkey in enumerate(group_l):
            records: list[str] = []
            repeated: list[str] = []
            lo, hi = bounds[g], bounds[g + 1]
            for j in range(lo, hi):
                c = code[j]
                template = templates.get(c)
                if template is None:
                    rest, e = divmod(c, 2)
                    rest, r = divmod(rest, len(REGIONS))
                    s, v = divmod(rest, len(EVENTS))
                    template = templates[c] = self._template(sessions[s], v, r, bool(e))
                base = 72 * j
                record = (
                    f"{template[0]}{times[j]}{template[1]}{ids[base : base + 36]}{template[2]}"
                    f"{ids[base + 36 : base + 72]}{template[3]}"
                )
                records.append(record)
                if dups[j]:
                    repeated.append(record)
            self.duplicates += len(repeated)
            file_key = (gkey >> 36) // len(REGIONS), (gkey >> 36) % len(REGIONS), gkey & ((1 << 36) - 1)
            batch = _Batch(records + repeated, times[lo], times[hi - 1])
            if file_key[2] >= day_end and not final:
                self.stash[file_key] = batch
                continue
            earlier = previous.pop(file_key, None)
            self._write_log(file_key, earlier.then(batch) if earlier else batch)
        self._flush(previous)
        if final:
            self._flush(self.stash)
            self.stash = {}

    def _flush(self, stash: "dict[tuple[int, int, int], _Batch]") -> None:
        for file_key in sorted(stash):
            self._write_log(file_key, stash[file_key])

    def _write_log(self, file_key: tuple[int, int, int], batch: "_Batch") -> None:
        a, r, delivered = file_key
        account = self.world.accounts[a]
        region = REGIONS[r]
        unique = self.names.chars(ALNUM, 16, "log", account.id, region, delivered)
        key = (
            f"{account.root}CloudTrail/{region}/{stamp(delivered, '%Y/%m/%d')}/"
            f"{account.id}_CloudTrail_{region}_{stamp(delivered, '%Y%m%dT%H%MZ')}_{unique}.json.gz"
        )
        payload = ('{"Records":[' + ",".join(batch.records) + "]}").encode()
        self.logs.append(_LogFile(a, r, delivered, key, self._submit(key, payload), batch.oldest, batch.newest))
        self.events += len(batch.records)

    def digests(self, start: int, days: int) -> None:
        """One digest per account, region and hour (also when no log file was delivered), chained."""
        by_trail: dict[tuple[int, int], list[_LogFile]] = {}
        for log in self.logs:
            by_trail.setdefault((log.account, log.region), []).append(log)
        for a, account in enumerate(self.world.accounts):
            for r, region in enumerate(REGIONS):
                logs = sorted(by_trail.get((a, r), []), key=lambda f: f.delivered)
                last = logs[-1].delivered if logs else start
                offset = int(self.world.digest_offsets[a, r])
                fingerprint = self.names.hex(32, "fingerprint", region)
                previous: tuple[str, str, str] | None = None
                lo, j, i = start, 1, 0
                while True:
                    hi = start + j * 3600 + offset
                    files = []
                    while i < len(logs) and logs[i].delivered < hi:
                        files.append(logs[i])
                        i += 1
                    key = (
                        f"{account.root}CloudTrail-Digest/{region}/{stamp(hi, '%Y/%m/%d')}/"
                        f"{account.id}_CloudTrail-Digest_{region}_{account.trail}_{HOME_REGION}_"
                        f"{stamp(hi, '%Y%m%dT%H%M%SZ')}.json.gz"
                    )
                    doc = {
                        "awsAccountId": account.id,
                        "digestStartTime": iso_time(lo),
                        "digestEndTime": iso_time(hi),
                        "digestS3Bucket": BUCKET,
                        "digestS3Object": key,
                        "digestPublicKeyFingerprint": fingerprint,
                        "digestSignatureAlgorithm": "SHA256withRSA",
                        "newestEventTime": max(f.newest for f in files) if files else None,
                        "oldestEventTime": min(f.oldest for f in files) if files else None,
                        "previousDigestS3Bucket": BUCKET if previous else None,
                        "previousDigestS3Object": previous[0] if previous else None,
                        "previousDigestHashValue": previous[1] if previous else None,
                        "previousDigestHashAlgorithm": "SHA-256" if previous else None,
                        "previousDigestSignature": previous[2] if previous else None,
                        "logFiles": [
                            {
                                "s3Bucket": BUCKET,
                                "s3Object": f.key,
                                "hashValue": f.digest.result(),
                                "hashAlgorithm": "SHA-256",
                                "newestEventTime": f.newest,
                                "oldestEventTime": f.oldest,
                            }
                            for f in files
                        ],
                    }
                    payload = json.dumps(doc, separators=(",", ":")).encode()
                    self._submit(key, payload)
                    self.digest_files += 1
                    previous = (key, hashlib.sha256(payload).hexdigest(), self.names.hex(512, "signature", key))
                    lo = hi
                    j += 1
                    if j > days * 24 and lo > last:
                        break
