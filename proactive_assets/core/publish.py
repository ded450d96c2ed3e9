"""Publishing alerts exactly once: sinks (JSON-lines file, SNS) and a publishing ledger.

Guarantee: re-running a day never sends an alert twice to a sink and never drops one.

* Every alert has a deterministic ``alert_id`` (``alerts.alert_id``), so a re-run produces the
  same ids.
* :class:`ObjectStoreLedger` records ``(alert_id, sink)`` right after each successful publish, one
  object per record beside the warehouse (local or S3); before publishing, :func:`publish_alerts`
  asks the ledger.
* A failure is reported, not raised, so the other alerts still go out; the caller then fails
  the run and the retry publishes only what is missing.

The remaining window is a crash between a sink accepting a message and the ledger append (at
most one duplicate per sink per crash); :class:`JsonLinesSink` closes it for the file by also
checking its own file, and FIFO SNS topics get ``MessageDeduplicationId=alert_id``. Two runs of
the same partition at the same moment are not coordinated (Dagster runs a partition once).
"""

import hashlib
import json
import logging
import os
import random
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

import pandas as pd
from botocore.exceptions import (
    ClientError,
    ConnectTimeoutError,
    EndpointConnectionError,
)

from proactive_assets.core.alert_message import format_sns_message
from proactive_assets.core.alerts import DayLike, alert_id, alert_record

log = logging.getLogger(__name__)

#: ClientError codes worth retrying: throttling and transient server-side failures.
RETRYABLE_CODES = frozenset(
    {
        "Throttling",
        "ThrottlingException",
        "ThrottledException",
        "InternalError",
        "InternalFailure",
        "KMSThrottling",
        "ServiceUnavailable",
    }
)


class PublishError(RuntimeError):
    """A sink could not publish one alert (the message names the destination and the alert)."""


class LedgerError(RuntimeError):
    """The ledger could not be read or written; publishing must stop (duplicates would follow)."""


# --------------------------------------------------------------------------------------------
# durable appends


def _append_line(path: Path, line: str) -> None:
    """Append one line with a single ``write`` on an O_APPEND descriptor, then fsync.

    A torn last line (crash mid-write) is terminated first so the new record stays parseable.
    """
    data = line.rstrip("\n").encode("utf-8") + b"\n"
    created = not path.exists()
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        size = os.fstat(fd).st_size
        if size:
            with open(path, "rb") as handle:
                handle.seek(size - 1)
                if handle.read(1) != b"\n":
                    data = b"\n" + data
        written = os.write(fd, data)
        if written != len(data):
            raise OSError(f"short write to {path}: {written} of {len(data)} bytes")
        os.fsync(fd)
    finally:
        os.close(fd)
    if created:
        _fsync_dir(path.parent)


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _read_json_lines(path: Path) -> Iterable[dict[str, Any]]:
    """Records of a JSON-lines file; an unparseable (torn) line is skipped with a warning."""
    if not path.exists():
        return
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                log.warning("%s:%d: skipping unparseable line", path, number)
                continue
            if isinstance(record, dict):
                yield record


def _now() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


# --------------------------------------------------------------------------------------------
# ledger


class LedgerStore(Protocol):
    """What :func:`publish_alerts` needs from a ledger (local file here; S3 can implement it too)."""

    def already_published(self, alert_id: str, sink: str) -> bool:
        """True if ``alert_id`` was already delivered to ``sink``."""
        ...

    def record(self, alert_id: str, sink: str, message_id: str | None) -> None:
        """Durably note that ``alert_id`` was delivered to ``sink``."""
        ...


class ObjectStoreLedger:
    """The ledger as one small object per ``(alert_id, sink)`` in an object store (local or S3).

    S3 has no append, and a ledger must outlive the machine that ran the day, so it lives beside
    the warehouse: ``<prefix>/<alert_id>/<sha1(sink)[:16]>.json``. A write is a single PUT.
    """

    def __init__(self, store: Any, prefix: str = "alerts_ledger") -> None:
        self.store = store
        self.prefix = prefix.strip("/")

    def _key(self, alert_id: str, sink: str) -> str:
        digest = hashlib.sha1(sink.encode()).hexdigest()[:16]
        return f"{self.prefix}/{alert_id}/{digest}.json"

    def already_published(self, alert_id: str, sink: str) -> bool:
        return bool(self.store.exists(self._key(alert_id, sink)))

    def get(self, alert_id: str, sink: str) -> dict[str, Any] | None:
        key = self._key(alert_id, sink)
        return json.loads(self.store.get(key)) if self.store.exists(key) else None

    def record(self, alert_id: str, sink: str, message_id: str | None) -> None:
        entry = {"alert_id": alert_id, "sink": sink, "message_id": message_id, "published_at": _now()}
        try:
            self.store.put(self._key(alert_id, sink), json.dumps(entry, sort_keys=True).encode())
        except Exception as exc:
            raise LedgerError(f"cannot write publishing ledger entry {self._key(alert_id, sink)}: {exc}") from exc


# --------------------------------------------------------------------------------------------
# sinks


@dataclass(frozen=True)
class OutgoingAlert:
    """One alert rendered once for every sink: SNS fields and the JSON record."""

    alert_id: str
    subject: str
    message: str
    attributes: dict[str, dict[str, str]]
    record: dict[str, Any]


class Sink(Protocol):
    """A destination; ``name`` identifies it in the ledger (e.g. ``sns:<topic arn>``)."""

    name: str

    def publish(self, alert: OutgoingAlert) -> str | None:
        """Deliver one alert; return the destination's message id. Raise on failure."""
        ...


class JsonLinesSink:
    """Append-only JSON-lines file, one object per alert (the alert fields + subject + message).

    It also remembers which alert ids its file already holds, so a crash between the append and
    the ledger record does not produce a second line on the re-run.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.name = f"file:{self.path}"
        self._seen: set[str] | None = None

    def _ids_in_file(self) -> set[str]:
        if self._seen is None:
            self._seen = {str(r["alert_id"]) for r in _read_json_lines(self.path) if "alert_id" in r}
        return self._seen

    def publish(self, alert: OutgoingAlert) -> str | None:
        """Append the alert unless the file already has it; the alert id is the message id."""
        if alert.alert_id in self._ids_in_file():
            return alert.alert_id
        record = dict(alert.record)
        record.update(alert_id=alert.alert_id, subject=alert.subject, message=alert.message)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        _append_line(self.path, json.dumps(record, sort_keys=True, default=str))
        self._ids_in_file().add(alert.alert_id)
        return alert.alert_id


def _is_retryable(exc: BaseException) -> bool:
    if isinstance(exc, ClientError):
        return exc.response.get("Error", {}).get("Code") in RETRYABLE_CODES
    # Only errors where the request cannot have reached SNS: a retry then cannot duplicate.
    return isinstance(exc, (EndpointConnectionError, ConnectTimeoutError))


def _describe(exc: BaseException) -> str:
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        return f"{error.get('Code', 'ClientError')}: {error.get('Message', exc)}"
    return f"{type(exc).__name__}: {exc}"


class SnsSink:
    """SNS topic publisher with Subject and MessageAttributes, retrying transient errors.

    Retries throttling / transient server errors and connection failures (not read timeouts,
    which may have delivered) with exponential backoff and "equal jitter":
    ``delay = d/2 + U(0, d/2)`` with ``d = min(max_delay, base_delay * 2**(attempt-1))``.
    After ``max_attempts`` it raises :class:`PublishError` naming the topic and the alert.
    """

    def __init__(
        self,
        sns_client: Any,
        topic_arn: str,
        max_attempts: int = 5,
        base_delay: float = 0.2,
        sleep: Callable[[float], None] = time.sleep,
        max_delay: float = 10.0,
        jitter: Callable[[], float] = random.random,
    ) -> None:
        if max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        self.client = sns_client
        self.topic_arn = topic_arn
        self.name = f"sns:{topic_arn}"
        self.max_attempts = max_attempts
        self.base_delay = base_delay
        self.max_delay = max_delay
        self._sleep = sleep
        self._jitter = jitter

    def _request(self, alert: OutgoingAlert) -> dict[str, Any]:
        request: dict[str, Any] = {
            "TopicArn": self.topic_arn,
            "Message": alert.message,
            "Subject": alert.subject,
            "MessageAttributes": alert.attributes,
        }
        if self.topic_arn.endswith(".fifo"):
            account = alert.attributes.get("account", {}).get("StringValue", "")
            request["MessageGroupId"] = account or "proactive_assets"
            request["MessageDeduplicationId"] = alert.alert_id
        return request

    def publish(self, alert: OutgoingAlert) -> str | None:
        """Publish once, retrying transient errors; return the SNS MessageId."""
        request = self._request(alert)
        for attempt in range(1, self.max_attempts + 1):
            try:
                response = self.client.publish(**request)
                return response.get("MessageId")
            except (ClientError, EndpointConnectionError, ConnectTimeoutError) as exc:
                if not _is_retryable(exc):
                    raise PublishError(
                        f"SNS publish to {self.topic_arn} failed for alert {alert.alert_id}: "
                        f"{_describe(exc)} (not retryable)"
                    ) from exc
                if attempt == self.max_attempts:
                    raise PublishError(
                        f"SNS publish to {self.topic_arn} failed for alert {alert.alert_id} "
                        f"after {attempt} attempts: {_describe(exc)}"
                    ) from exc
                delay = min(self.max_delay, self.base_delay * 2 ** (attempt - 1))
                delay = delay / 2 + self._jitter() * delay / 2
                log.warning(
                    "SNS publish of %s throttled/transient (%s); retry %d/%d in %.2fs",
                    alert.alert_id,
                    _describe(exc),
                    attempt,
                    self.max_attempts - 1,
                    delay,
                )
                self._sleep(delay)
        raise AssertionError("unreachable")  # pragma: no cover


# --------------------------------------------------------------------------------------------
# orchestration


@dataclass
class PublishReport:
    """Outcome of :func:`publish_alerts`; the caller fails the run when ``failed`` is not empty."""

    published: list[dict[str, Any]] = field(default_factory=list)
    skipped_already_published: list[dict[str, Any]] = field(default_factory=list)
    failed: list[dict[str, Any]] = field(default_factory=list)
    suppressed: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when nothing failed."""
        return not self.failed

    def summary(self) -> dict[str, Any]:
        """Counts and failure reasons, ready for Dagster metadata or a log line."""
        return {
            "published": len(self.published),
            "skipped_already_published": len(self.skipped_already_published),
            "failed": len(self.failed),
            "suppressed": len(self.suppressed),
            "failures": [f"{f['alert_id']} -> {f['sink']}: {f['reason']}" for f in self.failed],
        }

    def raise_for_failures(self) -> None:
        """Raise :class:`PublishError` listing the failures (a re-run retries only those)."""
        if self.failed:
            reasons = "; ".join(self.summary()["failures"][:10])
            more = f" (+{len(self.failed) - 10} more)" if len(self.failed) > 10 else ""
            raise PublishError(f"{len(self.failed)} alert publication(s) failed: {reasons}{more}")


def _row_day(row: Mapping[str, Any], day: DayLike | None) -> DayLike:
    if day is not None:
        return day
    value = row.get("day")
    if value is None or (not isinstance(value, str) and pd.isna(value)):
        raise ValueError("publish_alerts needs day= or a 'day' column in the alerts")
    return value


def render_alert(
    row: Mapping[str, Any], day: DayLike | None = None, cloudtrail_location: str | None = None
) -> OutgoingAlert:
    """Render one alert row (dict or Series) for the sinks."""
    the_day = _row_day(row, day)
    the_id = row.get("alert_id") or alert_id(the_day, row["entity"], row["source_ip"])
    full = {**dict(row), "alert_id": the_id}
    subject, message, attributes = format_sns_message(full, the_day, cloudtrail_location)
    return OutgoingAlert(str(the_id), subject, message, attributes, alert_record(full))


def publish_alerts(
    alerts: pd.DataFrame,
    sinks: Iterable[Sink],
    ledger: LedgerStore,
    *,
    day: DayLike | None = None,
    cloudtrail_location: str | None = None,
) -> PublishReport:
    """Publish each non-suppressed alert to each sink at most once, as recorded by ``ledger``.

    The ledger is written right after each successful publish. A sink failure is recorded in
    the report and publishing continues with the other alerts and sinks; a ledger failure
    raises :class:`LedgerError` at once (continuing could only create duplicates later).
    ``day`` (or a ``day`` column) is needed for ids and the message; ``cloudtrail_location``
    is the trail root shown in ``CLOUDTRAIL=``.
    """
    sinks = list(sinks)
    report = PublishReport()
    for row in alerts.to_dict("records"):
        try:
            outgoing = render_alert(row, day, cloudtrail_location)
        except Exception as exc:  # a malformed row must not stop the others
            the_id = str(row.get("alert_id") or "?")
            for sink in sinks:
                report.failed.append({"alert_id": the_id, "sink": sink.name, "reason": f"render: {exc}"})
            continue
        if bool(row.get("suppressed", False)):
            report.suppressed.append(outgoing.alert_id)
            continue
        for sink in sinks:
            if ledger.already_published(outgoing.alert_id, sink.name):
                report.skipped_already_published.append({"alert_id": outgoing.alert_id, "sink": sink.name})
                continue
            try:
                message_id = sink.publish(outgoing)
            except Exception as exc:  # any sink failure is reported, not raised
                reason = str(exc) if isinstance(exc, PublishError) else f"{type(exc).__name__}: {exc}"
                log.error("publishing %s to %s failed: %s", outgoing.alert_id, sink.name, reason)
                report.failed.append({"alert_id": outgoing.alert_id, "sink": sink.name, "reason": reason})
                continue
            ledger.record(outgoing.alert_id, sink.name, message_id)
            report.published.append({"alert_id": outgoing.alert_id, "sink": sink.name, "message_id": message_id})
    return report
