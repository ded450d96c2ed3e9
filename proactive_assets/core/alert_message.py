"""An alert as a message: a JSON document for programs, the seed's ``KEY=value`` text for people.

One :class:`AlertMessage` per alert feeds every sink:

* ``document``: the alert as JSON data (schema :data:`DOCUMENT_SCHEMA`), values exactly as logged
  (JSON string escaping makes them data). SNS subscribers that parse (SQS, Lambda, HTTP(S),
  Firehose, email-json) receive it: the SNS ``Message`` is a ``MessageStructure=json`` object
  whose ``default`` is the document and whose ``email`` is the text.
* ``text``: the seed's lines (``ACCOUNT=``, ``ARN=``, ``SOURCE_IP=``...) for email readers and
  line parsers. Every value is :func:`escaping.one_line`-escaped, so a crafted ARN, event name,
  account or region cannot start a line of its own (no forged ``ALERT_ID=`` or ``INSIGHT=``); list
  items escape ``,`` too, so an item cannot split into two.
* ``subject`` (ASCII, one line, at most 100 characters) and SNS ``attributes`` (escaped, capped).

SNS refuses messages over 256 KiB (message and attributes). Log values can be long, so an alert
that would not fit is trimmed, never refused: long strings and lists are cut step by step until
it fits; the id, day, address, scores, severity and model are never cut; ``trimmed`` (document) and
``TRIMMED=`` (text) name what was shortened.
"""

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from proactive_assets.core.alerts import (
    DayLike,
    alert_id,
    alert_severity,
    as_day,
    as_name_list,
    optional_name_list,
    order_event_names,
    to_json_value,
)
from proactive_assets.core.escaping import one_line
from proactive_assets.core.sources import cloudtrail

#: SNS limits for ``Subject`` (100 printable ASCII characters, no line breaks).
SNS_SUBJECT_MAX = 100

#: SNS's limit on a message, attributes included (256 KiB).
SNS_MESSAGE_MAX_BYTES = 262_144

#: Room kept below :data:`SNS_MESSAGE_MAX_BYTES` for the request's own overhead.
SNS_SIZE_MARGIN = 2_048

#: At most this many ``CLOUDTRAIL=`` lines; the rest are counted in ``CLOUDTRAIL_MORE=``.
MAX_CLOUDTRAIL_LINES = 5

#: At most this many event names on the ``ACTION=`` line (writes first); the rest are counted.
MAX_ACTION_NAMES = 30

#: At most this many characters in one message attribute value taken from a log.
MAX_ATTRIBUTE_CHARS = 256

#: Names and version of the JSON document (consumers check it).
DOCUMENT_SCHEMA = "proactive_assets.alert/2"

#: Fields of the document taken from the alert row, in order (absent ones are null).
DOCUMENT_FIELDS = (
    "alert_id",
    "day",
    "severity",
    "entity",
    "source_ip",
    "insight",
    "threshold",
    "dot_product",
    "model_version",
    "event_count",
    "error_count",
    "access_denied_count",
    "event_names",
    "write_event_names",
    "user_agents",
    "accounts",
    "regions",
    "first_seen",
    "last_seen",
    "entity_in_window",
    "ip_seen_for_entity_in_window",
    "nearest_known_network",
    "other_identities_on_ip_today",
    "other_identities_on_ip_in_window",
    "ip_insights",
    "novelty",
    "address_owner",
    "identity_churn",
    "known_network_today",
    "evidence_for",
    "evidence_against",
    "explanation",
)

#: Fields never shortened to fit the SNS limit (short, and what identifies the alert).
UNTRIMMED = frozenset(
    {
        "alert_id",
        "source_ip",
        "model_version",
        "day",
        "severity",
        "insight",
        "threshold",
        "dot_product",
        "event_count",
        "error_count",
        "access_denied_count",
        "entity_in_window",
        "ip_seen_for_entity_in_window",
        "other_identities_on_ip_today",
        "other_identities_on_ip_in_window",
        "schema",
        "trimmed",
    }
)

#: (most list items, most characters per string) tried in turn until the message fits.
TRIM_STEPS: tuple[tuple[int | None, int | None], ...] = (
    (None, None),
    (20, 2_000),
    (10, 500),
    (5, 200),
    (3, 100),
    (1, 64),
)


def severity(insight: float) -> str:
    """``high`` / ``medium`` / ``low`` band of an insight alone (see ``alerts.alert_severity``)."""
    return alert_severity(insight)


def cloudtrail_prefixes(alert: Mapping[str, Any], day: DayLike) -> list[str]:
    """The day's CloudTrail prefixes (``AWSLogs/<acct>/CloudTrail/<region>/<YYYY/MM/DD>``) of an alert.

    Taken from ``source_files`` when present (exact, and right for organisation trails),
    otherwise every account x region of the pair in the standard single-account layout.
    """
    found = {cloudtrail.delivery_folder(key) for key in as_name_list(alert.get("source_files"))} - {None}
    if found:
        return sorted(found)
    accounts = as_name_list(alert.get("accounts")) or ["unknown"]
    regions = as_name_list(alert.get("regions")) or ["unknown"]
    return [cloudtrail.day_folder(a, r, as_day(day)) for a in sorted(set(accounts)) for r in sorted(set(regions))]


def _join_location(base: str | None, key: str) -> str:
    if not base:
        return key
    return f"{str(base).rstrip('/')}/{key}"


def short_identity(arn: str) -> str:
    """The readable tail of an ARN (``user/alice``, ``assumed-role/Admin/bob``)."""
    text = str(arn)
    if text.startswith("arn:"):
        pieces = text.split(":", 5)
        if len(pieces) == 6 and pieces[5]:
            return pieces[5]
    return text


def _fit(text: str, budget: int) -> str:
    if len(text) <= budget:
        return text
    if budget <= 3:
        return text[:budget]
    head = (budget - 3) // 2
    tail = budget - 3 - head
    return text[:head] + "..." + (text[-tail:] if tail else "")


def _number(value: Any, digits: int = 6) -> str:
    if value is None or pd.isna(value):
        return ""
    return f"{float(value):.{digits}f}"


def _item(value: Any) -> str:
    """One list item on a text line: escaped, and its commas too (the separator)."""
    return one_line(value).replace(",", "\\x2c")


def _items(values: list[str] | None) -> str:
    return ",".join(_item(v) for v in values or [])


def _location(location: str) -> str:
    """A CloudTrail location on a text line: the configured root as is, the log-derived folder escaped."""
    root, found, folder = location.partition("AWSLogs/")
    if not found:
        return one_line(location)
    return one_line(root, break_urls=False) + one_line(found + folder)


def format_subject(alert: Mapping[str, Any]) -> str:
    """SNS Subject: ASCII, no line breaks, at most 100 characters; the identity is shortened."""
    ip = one_line(alert.get("source_ip", ""), ascii_only=True)
    insight = alert.get("insight")
    score = f" (insight {float(insight):.2f})" if insight is not None and not pd.isna(insight) else ""
    prefix, middle = "proactive_assets alert: ", f" from {_fit(ip, 45)}"
    budget = SNS_SUBJECT_MAX - len(prefix) - len(middle) - len(score)
    who = _fit(one_line(short_identity(str(alert.get("entity", ""))), ascii_only=True), max(budget, 0))
    return (prefix + who + middle + score)[:SNS_SUBJECT_MAX]


@dataclass(frozen=True)
class AlertMessage:
    """One alert rendered for every sink (see the module docstring)."""

    subject: str
    text: str
    document: dict[str, Any]
    attributes: dict[str, dict[str, str]]
    trimmed: tuple[str, ...] = field(default=())

    def sns_message(self) -> str:
        """The SNS ``Message`` for ``MessageStructure=json``: the document by default, the text by email."""
        return json.dumps(
            {"default": json.dumps(self.document, sort_keys=False), "email": self.text, "sms": self.subject}
        )

    def sns_size(self) -> int:
        """Bytes SNS counts against its limit: the message, the subject and every attribute."""
        size = len(self.sns_message().encode("utf-8")) + len(self.subject.encode("utf-8"))
        for name, value in self.attributes.items():
            size += len(name.encode()) + len(value["DataType"].encode()) + len(value["StringValue"].encode())
        return size


def _values(alert: Mapping[str, Any], day: DayLike, cloudtrail_location: str | None) -> dict[str, Any]:
    """The alert's fields as plain JSON values (the untrimmed document without schema)."""
    the_day = as_day(day)
    record = {name: to_json_value(alert.get(name)) for name in DOCUMENT_FIELDS}
    writes = optional_name_list(alert.get("write_event_names"))
    record.update(
        alert_id=str(alert.get("alert_id") or alert_id(the_day, alert["entity"], alert["source_ip"])),
        day=the_day.isoformat(),
        entity=str(alert.get("entity", "")),
        source_ip=str(alert.get("source_ip", "")),
        event_names=order_event_names(alert.get("event_names"), writes),
        write_event_names=sorted(set(writes)) if writes is not None else None,
        user_agents=optional_name_list(alert.get("user_agents")),
        accounts=sorted(set(as_name_list(alert.get("accounts")))),
        regions=sorted(set(as_name_list(alert.get("regions")))),
        cloudtrail=[_join_location(cloudtrail_location, p) for p in cloudtrail_prefixes(alert, the_day)],
    )
    if not record.get("severity"):
        record["severity"] = alert_severity(record.get("insight"))
    return record


def _cut(values: dict[str, Any], max_items: int | None, max_chars: int | None) -> tuple[dict[str, Any], list[str]]:
    """``values`` with lists of at most ``max_items`` and strings of at most ``max_chars``; what was cut."""
    if max_items is None and max_chars is None:
        return values, []
    out: dict[str, Any] = {}
    cut: list[str] = []
    for name, value in values.items():
        if name in UNTRIMMED:
            out[name] = value
            continue
        new = value
        if isinstance(value, list):
            kept = value[:max_items] if max_items is not None else value
            new = [_shorten(v, max_chars) if isinstance(v, str) else v for v in kept]
            if len(value) > len(kept):
                new.append(f"... (+{len(value) - len(kept)} more)")
        elif isinstance(value, str):
            new = _shorten(value, max_chars)
        if new != value:
            cut.append(name)
        out[name] = new
    return out, cut


def _shorten(text: str, max_chars: int | None) -> str:
    if max_chars is None or len(text) <= max_chars:
        return text
    return text[:max_chars] + f"... (+{len(text) - max_chars} chars)"


def _text(values: Mapping[str, Any], trimmed: list[str]) -> str:
    """The human body: the seed's lines and order (leading space before ``ACCOUNT=`` kept), then the new ones."""
    names = values["event_names"] or []
    action = _items(names[:MAX_ACTION_NAMES])
    if len(names) > MAX_ACTION_NAMES:
        action += f" (+{len(names) - MAX_ACTION_NAMES} more)"
    count = values.get("event_count")
    writes = values.get("write_event_names")
    locations = values["cloudtrail"]
    lines = [
        "Possible malicious activity detected",
        "",
        f" ACCOUNT={_items(values['accounts'])}",
        f"REGION={_items(values['regions'])}",
        f"DAY={as_day(values['day']).strftime('%Y/%m/%d')}",
        f"ARN={one_line(values['entity'])}",
        f"ACTION={action}",
        f"COUNT={'' if count is None else int(count)}",
        f"INSIGHT={_number(values.get('insight'))}",
    ]
    lines += [f"CLOUDTRAIL={_location(loc)}" for loc in locations[:MAX_CLOUDTRAIL_LINES]]
    if len(locations) > MAX_CLOUDTRAIL_LINES:
        lines.append(f"CLOUDTRAIL_MORE={len(locations) - MAX_CLOUDTRAIL_LINES}")
    optional = {k: values.get(k) for k in ("error_count", "access_denied_count")}
    lines += [
        f"SOURCE_IP={one_line(values['source_ip'])}",
        f"DOT_PRODUCT={_number(values.get('dot_product'))}",
        f"MODEL_VERSION={one_line(values.get('model_version') or '')}",
        f"ALERT_ID={values['alert_id']}",
        f"SEVERITY={values['severity']}",
        f"THRESHOLD={_number(values.get('threshold'), 4)}",
        f"WRITES={_items(writes) if writes is not None else '(not known)'}",
        f"ERRORS={'' if optional['error_count'] is None else optional['error_count']}",
        f"ACCESS_DENIED={'' if optional['access_denied_count'] is None else optional['access_denied_count']}",
    ]
    lines += [f"USER_AGENT={one_line(agent)}" for agent in values.get("user_agents") or []]
    lines.append(f"EXPLANATION={one_line(values.get('explanation') or '')}")
    if trimmed:
        lines.append(f"TRIMMED={','.join(trimmed)} (shortened to fit the SNS size limit)")
    return "\n".join(lines)


def _attributes(values: Mapping[str, Any]) -> dict[str, dict[str, str]]:
    """String attributes for SNS filter policies; log values escaped and capped; empty ones left out."""
    found = {
        "alert_id": values["alert_id"],
        "account": _fit(_items(values["accounts"]), MAX_ATTRIBUTE_CHARS),
        "insight": _number(values.get("insight"), 4),
        "severity": values["severity"],
        "model_version": _fit(one_line(values.get("model_version") or ""), MAX_ATTRIBUTE_CHARS),
        "day": values["day"],
    }
    return {k: {"DataType": "String", "StringValue": v} for k, v in found.items() if v}


def _render(values: dict[str, Any], trimmed: list[str], subject: str) -> AlertMessage:
    document = {"schema": DOCUMENT_SCHEMA, **values, "trimmed": trimmed}
    return AlertMessage(subject, _text(values, trimmed), document, _attributes(values), tuple(trimmed))


def format_sns_message(
    alert: Mapping[str, Any],
    day: DayLike,
    cloudtrail_location: str | None,
    max_bytes: int = SNS_MESSAGE_MAX_BYTES - SNS_SIZE_MARGIN,
) -> AlertMessage:
    """The :class:`AlertMessage` of one alert row, trimmed to fit ``max_bytes`` when it must be.

    Text body (values escaped; ``USER_AGENT=`` once per agent; ``TRIMMED=`` only when cut)::

        Possible malicious activity detected
        <blank>
         ACCOUNT=<acct>[,<acct>...]
        REGION=<region>[,<region>...]
        DAY=YYYY/MM/DD
        ARN=<identity ARN>
        ACTION=<event names, writes first, comma-separated; "(+N more)" beyond 30>
        COUNT=<events of the pair that day>
        INSIGHT=<insight, 6 decimals>
        CLOUDTRAIL=<location>/AWSLogs/<acct>/CloudTrail/<region>/YYYY/MM/DD   (one line each, max 5)
        CLOUDTRAIL_MORE=<n>                       (only when more than 5 locations)
        SOURCE_IP=<ip>
        DOT_PRODUCT=<dot product, 6 decimals>
        MODEL_VERSION=<model version>
        ALERT_ID=<alert id>
        SEVERITY=<low|medium|high>
        THRESHOLD=<threshold, 4 decimals>
        WRITES=<event names with readOnly false, or "(not known)">
        ERRORS=<failed calls>   ACCESS_DENIED=<of which AccessDenied>
        USER_AGENT=<user agent>                   (one line each, at most 10)
        EXPLANATION=<explanation, one line>

    ``cloudtrail_location`` is the trail root (``s3://bucket[/prefix]`` or a local folder);
    ``None`` gives just the key, as the seed did. Attributes are all ``String``: alert_id,
    account (comma-joined if several), insight, severity, model_version, day.
    """
    values = _values(alert, day, cloudtrail_location)
    subject = format_subject(values)
    message = _render(values, [], subject)
    for max_items, max_chars in TRIM_STEPS[1:]:
        if message.sns_size() <= max_bytes:
            return message
        cut_values, cut = _cut(values, max_items, max_chars)
        message = _render(cut_values, cut, subject)
    if message.sns_size() > max_bytes:
        raise ValueError(f"alert {values['alert_id']} does not fit in {max_bytes} bytes even trimmed")
    return message
