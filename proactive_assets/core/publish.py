"""Publishing alerts: sinks (JSON-lines file, SNS) and a publishing ledger.

What holds, per (alert, sink):

* **Never dropped.** Every alert has a deterministic ``alert_id`` (``alerts.alert_id``), so a
  re-run produces the same ids. :class:`ObjectStoreLedger` records ``(alert_id, sink)`` right
  after each successful publish (one object per record beside the warehouse, local or S3); a
  failed publish is reported, not raised, so the other alerts still go out; the caller then
  fails the run and the retry publishes only what the ledger lacks. No run reports success with
  an alert missing.
* **Exactly once** for the JSON-lines file (it also checks its own file) and for SNS FIFO topics
  (``MessageDeduplicationId`` = alert id: SNS drops a repeat within its 5-minute window, which
  covers every retry of this module; only a re-run, more than 5 minutes later, of a step whose
  last answer from SNS was lost can repeat that alert, with the same id).
* **At least once, with a de-duplication key** for standard SNS topics: when a response is lost
  (read timeout, closed connection, 5xx) SNS may or may not have accepted the message; the sink
  sends it again rather than risk losing it, so a consumer can see a repeat, always with the
  same ``alert_id`` message attribute (and document field) to drop it by.

Retries are decided here and only here: the SNS client makes one attempt per call
(:data:`SNS_CLIENT_CONFIG`; botocore's own retries resent accepted messages unseen), and
:class:`SnsSink` retries throttling, 5xx and connection failures with backoff and jitter. Two
runs of the same partition at the same moment are not coordinated (Dagster runs a partition once).
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
from botocore.config import Config
from botocore.exceptions import ClientError, HTTPClientError
from botocore.exceptions import ConnectionError as BotoConnectionError

from proactive_assets.core.alert_message import AlertMessage, format_sns_message
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

#: The SNS client's botocore settings: one attempt per call (the sink retries, knowing what a
#: retry can duplicate), and bounded waits so a lost response surfaces as an error, not a hang.
SNS_CLIENT_CONFIG = Config(retries={"total_max_attempts": 1, "mode": "standard"}, connect_timeout=5, read_timeout=15)


def sns_client(region: str | None = None, endpoint_url: str | None = None) -> Any:
    """A boto3 SNS client with :data:`SNS_CLIENT_CONFIG` (what :class:`SnsSink` requires)."""
    import boto3

    return boto3.client("sns", region_name=region or None, endpoint_url=endpoint_url, config=SNS_CLIENT_CONFIG)


def _botocore_attempts(client: Any) -> int | None:
    """Attempts per call a botocore client makes (None for an object that is not a botocore client)."""
    config = getattr(getattr(client, "meta", None), "config", None)
    if config is None or not hasattr(config, "retries"):
        return None
    retries = config.retries or {}
    if "total_max_attempts" in retries:
        return int(retries["total_max_attempts"])
    if "max_attempts" in retries:
        return int(retries["max_attempts"]) + 1
    return 0  # botocore's default: several attempts, taken from the environment or config file


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
    """One alert rendered once for every sink: the message (text, document, SNS fields) and the JSON record."""

    alert_id: str
    message: AlertMessage
    record: dict[str, Any]

    @property
    def subject(self) -> str:
        return self.message.subject

    @property
    def text(self) -> str:
        return self.message.text

    @property
    def attributes(self) -> dict[str, dict[str, str]]:
        return self.message.attributes


class Sink(Protocol):
    """A destination; ``name`` identifies it in the ledger (e.g. ``sns:<topic arn>``)."""

    name: str

    def publish(self, alert: OutgoingAlert) -> str | None:
        """Deliver one alert; return the destination's message id. Raise on failure."""
        ...


class JsonLinesSink:
    """Append-only JSON-lines file, one object per alert (the alert fields + subject + text ``message``).

    ``json.dumps`` escapes every control and non-ASCII character, so no value can add a line.

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
        record.update(alert_id=alert.alert_id, subject=alert.subject, message=alert.text)
        if alert.message.trimmed:
            record["message_trimmed"] = list(alert.message.trimmed)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        _append_line(self.path, json.dumps(record, sort_keys=True, default=str))
        self._ids_in_file().add(alert.alert_id)
        return alert.alert_id


def _retry_kind(exc: BaseException) -> str | None:
    """``"safe"`` (the request cannot have been accepted), ``"ambiguous"`` (it may have been), or None."""
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
        if error.get("Code") in RETRYABLE_CODES or status >= 500:
            return "ambiguous" if status >= 500 or error.get("Code") in _SERVER_CODES else "safe"
        return None
    if isinstance(exc, BotoConnectionError):  # could not connect: nothing was sent
        return "safe"
    if isinstance(exc, HTTPClientError):  # read timeout, connection closed: the response was lost
        return "ambiguous"
    return None


_SERVER_CODES = frozenset({"InternalError", "InternalFailure", "ServiceUnavailable"})


def _describe(exc: BaseException) -> str:
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        return f"{error.get('Code', 'ClientError')}: {error.get('Message', exc)}"
    return f"{type(exc).__name__}: {exc}"


class SnsSink:
    """SNS topic publisher: the JSON document and the text (``MessageStructure=json``), Subject, attributes.

    FIFO topics (ARN ending in ``.fifo``) get ``MessageDeduplicationId`` = alert id and a
    ``MessageGroupId`` (the alert's account when it has exactly one, else ``proactive_assets``).

    Retries throttling, 5xx and connection failures, including lost responses (read timeouts,
    closed connections), with exponential backoff and "equal jitter":
    ``delay = d/2 + U(0, d/2)`` with ``d = min(max_delay, base_delay * 2**(attempt-1))``. A retry
    after a lost response may repeat a message SNS had accepted: FIFO topics drop the repeat,
    standard topics deliver it with the same ``alert_id`` attribute (listed in
    ``possible_duplicates``). After ``max_attempts`` it raises :class:`PublishError` naming the
    topic and the alert. The client must make one attempt per call (:func:`sns_client`).
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
        attempts = _botocore_attempts(sns_client)
        if attempts is not None and attempts != 1:
            raise ValueError(
                "SnsSink needs an SNS client that makes one attempt per call (botocore's own retries "
                "resend messages SNS already accepted): create it with proactive_assets.core.publish.sns_client()"
            )
        self.client = sns_client
        self.topic_arn = topic_arn
        self.fifo = topic_arn.endswith(".fifo")
        self.name = f"sns:{topic_arn}"
        self.max_attempts = max_attempts
        self.base_delay = base_delay
        self.max_delay = max_delay
        self._sleep = sleep
        self._jitter = jitter
        self.possible_duplicates: list[str] = []

    def _request(self, alert: OutgoingAlert) -> dict[str, Any]:
        request: dict[str, Any] = {
            "TopicArn": self.topic_arn,
            "Message": alert.message.sns_message(),
            "MessageStructure": "json",
            "Subject": alert.subject,
            "MessageAttributes": alert.attributes,
        }
        if self.fifo:
            accounts = alert.message.document.get("accounts") or []
            single = accounts[0] if len(accounts) == 1 and str(accounts[0]).isdigit() else None
            request["MessageGroupId"] = single if single and len(single) == 12 else "proactive_assets"
            request["MessageDeduplicationId"] = alert.alert_id
        return request

    def publish(self, alert: OutgoingAlert) -> str | None:
        """Publish, retrying transient errors; return the SNS MessageId."""
        request = self._request(alert)
        lost_response = False
        for attempt in range(1, self.max_attempts + 1):
            try:
                response = self.client.publish(**request)
                if lost_response and not self.fifo:
                    self.possible_duplicates.append(alert.alert_id)
                return response.get("MessageId")
            except (ClientError, BotoConnectionError, HTTPClientError) as exc:
                kind = _retry_kind(exc)
                if kind is None:
                    raise PublishError(
                        f"SNS publish to {self.topic_arn} failed for alert {alert.alert_id}: "
                        f"{_describe(exc)} (not retryable)"
                    ) from exc
                lost_response = lost_response or kind == "ambiguous"
                if attempt == self.max_attempts:
                    raise PublishError(
                        f"SNS publish to {self.topic_arn} failed for alert {alert.alert_id} "
                        f"after {attempt} attempts: {_describe(exc)}"
                    ) from exc
                delay = min(self.max_delay, self.base_delay * 2 ** (attempt - 1))
                delay = delay / 2 + self._jitter() * delay / 2
                log.warning(
                    "SNS publish of %s failed (%s); retry %d/%d in %.2fs",
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
    return OutgoingAlert(str(the_id), format_sns_message(full, the_day, cloudtrail_location), alert_record(full))


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
