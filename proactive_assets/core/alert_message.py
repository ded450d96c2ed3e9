"""An alert as a message: the SNS subject and body (the seed's ``KEY=value`` lines), severity.

The body keeps the seed's lines and adds the new fields; ``publish.py`` sends it to every sink.
"""

import re
from collections.abc import Mapping
from typing import Any

import pandas as pd

from proactive_assets.core.alerts import DayLike, alert_id, as_day, as_name_list, order_event_names
from proactive_assets.core.sources import cloudtrail

#: SNS limits for ``Subject`` (100 printable ASCII characters, no line breaks).
SNS_SUBJECT_MAX = 100

#: At most this many ``CLOUDTRAIL=`` lines; the rest are counted in ``CLOUDTRAIL_MORE=``.
MAX_CLOUDTRAIL_LINES = 5

#: At most this many event names on the ``ACTION=`` line (writes first); the rest are counted.
MAX_ACTION_NAMES = 30

#: Bands for the ``severity`` message attribute (by insight).
SEVERITY_BANDS: tuple[tuple[float, str], ...] = ((0.99, "high"), (0.9, "medium"), (0.0, "low"))


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


def _ascii_line(text: str) -> str:
    """Printable ASCII only: non-ASCII -> '?', control characters and line breaks -> space."""
    cleaned = str(text).encode("ascii", "replace").decode("ascii")
    return re.sub(r"[\x00-\x1f\x7f]+", " ", cleaned).strip()


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


def severity(insight: float) -> str:
    """``high`` / ``medium`` / ``low`` band of an insight (for SNS filter policies)."""
    for floor, name in SEVERITY_BANDS:
        if float(insight) >= floor:
            return name
    return "low"


def format_subject(alert: Mapping[str, Any]) -> str:
    """SNS Subject: ASCII, no line breaks, at most 100 characters; the identity is shortened."""
    ip = _ascii_line(str(alert.get("source_ip", "")))
    insight = alert.get("insight")
    score = f" (insight {float(insight):.2f})" if insight is not None and not pd.isna(insight) else ""
    prefix, middle = "proactive_assets alert: ", f" from {ip}"
    budget = SNS_SUBJECT_MAX - len(prefix) - len(middle) - len(score)
    who = _fit(_ascii_line(short_identity(str(alert.get("entity", "")))), max(budget, 0))
    return (prefix + who + middle + score)[:SNS_SUBJECT_MAX]


def format_sns_message(
    alert: Mapping[str, Any], day: DayLike, cloudtrail_location: str | None
) -> tuple[str, str, dict[str, dict[str, str]]]:
    """``(subject, message, message_attributes)`` for one alert row.

    The body keeps the seed's lines and order (including the leading space before
    ``ACCOUNT=``, so existing parsers and email filters keep working) and appends new ones::

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
        EXPLANATION=<explanation, one line>

    ``cloudtrail_location`` is the trail root (``s3://bucket[/prefix]`` or a local folder);
    ``None`` gives just the key, as the seed did. Attributes are all ``String``: alert_id,
    account (comma-joined if several), insight, severity, model_version, day.
    """
    the_day = as_day(day)
    accounts = sorted(set(as_name_list(alert.get("accounts"))))
    regions = sorted(set(as_name_list(alert.get("regions"))))
    names = order_event_names(alert.get("event_names"))
    action = ",".join(names[:MAX_ACTION_NAMES])
    if len(names) > MAX_ACTION_NAMES:
        action += f" (+{len(names) - MAX_ACTION_NAMES} more)"
    count = alert.get("event_count")
    the_id = alert.get("alert_id") or alert_id(the_day, alert["entity"], alert["source_ip"])
    locations = [_join_location(cloudtrail_location, p) for p in cloudtrail_prefixes(alert, the_day)]
    explanation = re.sub(r"[\r\n]+", " ", str(alert.get("explanation") or "")).strip()

    lines = [
        "Possible malicious activity detected",
        "",
        f" ACCOUNT={','.join(accounts)}",
        f"REGION={','.join(regions)}",
        f"DAY={the_day.strftime('%Y/%m/%d')}",
        f"ARN={alert.get('entity', '')}",
        f"ACTION={action}",
        f"COUNT={'' if count is None or pd.isna(count) else int(count)}",
        f"INSIGHT={_number(alert.get('insight'))}",
    ]
    lines += [f"CLOUDTRAIL={loc}" for loc in locations[:MAX_CLOUDTRAIL_LINES]]
    if len(locations) > MAX_CLOUDTRAIL_LINES:
        lines.append(f"CLOUDTRAIL_MORE={len(locations) - MAX_CLOUDTRAIL_LINES}")
    lines += [
        f"SOURCE_IP={alert.get('source_ip', '')}",
        f"DOT_PRODUCT={_number(alert.get('dot_product'))}",
        f"MODEL_VERSION={alert.get('model_version') or ''}",
        f"ALERT_ID={the_id}",
        f"EXPLANATION={explanation}",
    ]
    message = "\n".join(lines)

    insight = alert.get("insight")
    values = {
        "alert_id": str(the_id),
        "account": ",".join(accounts),
        "insight": _number(insight, 4),
        "severity": severity(insight) if insight is not None and not pd.isna(insight) else "",
        "model_version": str(alert.get("model_version") or ""),
        "day": the_day.isoformat(),
    }
    # SNS rejects empty attribute values, so empty ones are left out.
    attributes = {k: {"DataType": "String", "StringValue": v} for k, v in values.items() if v}
    return format_subject(alert), message, attributes
