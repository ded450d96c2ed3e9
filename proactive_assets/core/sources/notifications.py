"""S3 object-created notifications as an SQS queue delivers them: which objects were written.

Security Lake announces each new object on its subscriber queue in the S3 notification shape or
the EventBridge shape (either may arrive wrapped in an SNS notification).
"""

import json
from collections.abc import Mapping
from typing import Any
from urllib.parse import unquote_plus


class MalformedNotification(ValueError):
    """An SQS body that is neither an S3 notification nor an EventBridge S3 event.

    The caller logs it and leaves the message on the queue, so the queue's redrive policy
    moves it to the dead-letter queue instead of it being silently lost.
    """


def parse_sqs_message_body(
    body: str | bytes | Mapping[str, Any],
) -> list[tuple[str, str]]:
    """``(bucket, key)`` of every created object announced by one SQS message body.

    Accepts the body as SQS delivers it (a JSON string) or already decoded (a dict, as in
    the workshop's Lambda test event), in the S3 event-notification shape
    (``Records[].s3``; keys are URL-encoded, so they are ``unquote_plus``-decoded), the
    EventBridge shape (``detail.bucket``/``detail.object``; decoded the same way, as the
    workshop does - Security Lake keys contain neither ``+`` nor ``%``) or wrapped in an
    SNS notification (``{"Type": "Notification", "Message": "<json>"}``).

    Rule for everything else: the S3 ``s3:TestEvent`` (sent once when the notification is
    configured) and well-formed events about something other than a created object give an
    empty list; a body that is not JSON or has neither shape raises
    ``MalformedNotification``.
    """
    doc = _load_json(body, "SQS body")
    if isinstance(doc, dict) and doc.get("Type") == "Notification" and "Message" in doc:
        doc = _load_json(doc["Message"], "SNS Message")
    if not isinstance(doc, dict):
        raise MalformedNotification(f"notification is a {type(doc).__name__}, not an object")
    if doc.get("Event") == "s3:TestEvent":
        return []
    detail = doc.get("detail")
    records = doc.get("Records")
    if isinstance(detail, dict):
        objects = _eventbridge_objects(doc, detail)
    elif records is not None:
        objects = _s3_notification_objects(records)
    else:
        raise MalformedNotification(
            "body has neither 'Records' (S3 notification) nor 'detail' (EventBridge); "
            f"top-level fields: {sorted(doc)[:10]}"
        )
    return list(dict.fromkeys(objects))


def _load_json(value: Any, what: str) -> Any:
    if isinstance(value, (bytes, bytearray)):
        value = value.decode("utf-8", errors="replace")
    if isinstance(value, str):
        try:
            return json.loads(value)
        except json.JSONDecodeError as exc:
            raise MalformedNotification(f"{what} is not JSON: {exc}") from None
    if isinstance(value, Mapping):
        return dict(value)
    raise MalformedNotification(f"{what} is a {type(value).__name__}, not JSON text or a dict")


def _eventbridge_objects(doc: dict[str, Any], detail: dict[str, Any]) -> list[tuple[str, str]]:
    detail_type = doc.get("detail-type")
    if detail_type is not None and detail_type != "Object Created":
        return []
    bucket = _nested_str(detail, "bucket", "name")
    key = _nested_str(detail, "object", "key")
    if bucket is None or key is None:
        raise MalformedNotification("EventBridge event without detail.bucket.name/object.key")
    return [(bucket, unquote_plus(key))]


def _s3_notification_objects(records: Any) -> list[tuple[str, str]]:
    if not isinstance(records, list) or not records:
        raise MalformedNotification("'Records' is not a non-empty list")
    objects = []
    for index, record in enumerate(records):
        if not isinstance(record, dict):
            raise MalformedNotification(f"Records[{index}] is not an object")
        event_name = record.get("eventName")
        if isinstance(event_name, str) and not event_name.startswith("ObjectCreated"):
            continue
        s3 = record.get("s3")
        bucket = _nested_str(s3, "bucket", "name")
        key = _nested_str(s3, "object", "key")
        if bucket is None or key is None:
            raise MalformedNotification(
                f"Records[{index}] has no s3.bucket.name/s3.object.key (eventSource={record.get('eventSource')!r})"
            )
        objects.append((bucket, unquote_plus(key)))
    return objects


def _nested_str(doc: Any, *path: str) -> str | None:
    for name in path:
        if not isinstance(doc, dict):
            return None
        doc = doc.get(name)
    return doc if isinstance(doc, str) and doc else None
