"""Alert selection, explanation, ids, SNS message format and suppression (pure Python)."""

import json
import re
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from proactive_assets.core.alert_message import SNS_SUBJECT_MAX, cloudtrail_prefixes, format_sns_message
from proactive_assets.core.alert_rows import day_alerts, window_context
from proactive_assets.core.alerts import (
    add_alert_ids,
    alert_id,
    alert_severity,
    explain_alerts,
    order_event_names,
    select_alerts,
)
from proactive_assets.core.suppressions import (
    SuppressionError,
    Suppressions,
    apply_suppressions,
    load_suppressions,
    parse_suppressions,
)
from proactive_assets.core.training import training_pairs

ACCT = "111122223333"
ALICE = f"arn:aws:iam::{ACCT}:user/alice"
BOB = f"arn:aws:iam::{ACCT}:user/bob"
CAROL = f"arn:aws:sts::{ACCT}:assumed-role/Admin/carol"
DAY = date(2024, 1, 15)
WINDOW = (date(2024, 1, 1), date(2024, 1, 14))


def _insights() -> pd.DataFrame:
    ts = pd.Timestamp
    return pd.DataFrame(
        {
            "entity": [ALICE, ALICE, BOB, CAROL],
            "source_ip": ["203.0.113.99", "198.51.100.7", "192.0.2.10", "192.0.2.10"],
            "insight": [0.95, 0.99, 0.10, 0.95],
            "dot_product": [-1.5, -4.0, 3.0, -1.5],
            "event_count": [4, 12, 30, 2],
            "event_names": [
                ["GetObject", "ListBuckets"],
                ["ListUsers", "CreateAccessKey", "DescribeInstances", "PutUserPolicy"],
                "GetCallerIdentity",
                "AssumeRole;GetCallerIdentity",
            ],
            "first_seen": [
                ts("2024-01-15T08:00Z"),
                ts("2024-01-15T09:13Z"),
                ts("2024-01-15T01:00Z"),
                ts("2024-01-15T10:00Z"),
            ],
            "last_seen": [
                ts("2024-01-15T08:30Z"),
                ts("2024-01-15T11:40Z"),
                ts("2024-01-15T23:00Z"),
                ts("2024-01-15T10:05Z"),
            ],
            "accounts": [[ACCT], [ACCT, "444455556666"], [ACCT], [ACCT]],
            "regions": [["us-east-1"], ["us-east-1", "eu-west-1"], ["us-east-1"], ["us-east-1"]],
            "model_version": "model-2024-01-14-abc",
            "entity_known": [True, True, True, False],
            # the learning set's readOnly-based columns (a learning set written before them lacks them)
            "write_event_names": [[], ["CreateAccessKey", "PutUserPolicy"], [], ["AssumeRole"]],
            "user_agents": [["aws-cli/2.15.0"], ["Boto3/1.34.0 md/Botocore#1.34.0"], [], ["console.amazonaws.com"]],
            "error_count": [0, 3, 0, 0],
            "access_denied_count": [0, 2, 0, 0],
        }
    )


def _legacy_insights() -> pd.DataFrame:
    """The same day from a learning set written before readOnly, user agents and AccessDenied were kept."""
    return _insights().drop(columns=["write_event_names", "user_agents", "error_count", "access_denied_count"])


def _training() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "entity": [ALICE, ALICE, ALICE, BOB, "arn:aws:iam::111122223333:user/dave"],
            "source_ip": ["203.0.113.5", "10.1.2.3", "203.0.113.99", "192.0.2.10", "198.51.100.7"],
            "event_count": [40, 10, 1, 50, 3],
        }
    )


def test_select_alerts_threshold_inclusive_and_sorted() -> None:
    insights = _insights()
    insights.loc[len(insights)] = insights.iloc[2].copy()
    insights.loc[len(insights) - 1, "insight"] = float("nan")
    alerts = select_alerts(insights, 0.95)
    assert list(alerts["insight"]) == [0.99, 0.95, 0.95]
    # ties broken by entity then ip: deterministic order
    assert list(alerts["entity"]) == [ALICE, ALICE, CAROL]
    assert select_alerts(insights, 1.01).empty


def test_select_alerts_records_the_threshold() -> None:
    alerts = select_alerts(_insights(), 0.95)
    assert list(alerts["threshold"]) == [0.95, 0.95, 0.95]


def test_writes_come_from_readonly_not_from_the_event_name() -> None:
    # FilterLogEvents reads and GetSecretValue reads a secret, whatever their names suggest: only
    # CloudTrail's readOnly (the learning set's write_event_names) decides what a write is.
    names = ["FilterLogEvents", "GetSecretValue", "CreateAccessKey", "ListUsers"]
    assert order_event_names(names, ["CreateAccessKey"]) == [
        "CreateAccessKey",
        "FilterLogEvents",
        "GetSecretValue",
        "ListUsers",
    ]
    assert order_event_names("ListUsers;CreateAccessKey", None) == ["CreateAccessKey", "ListUsers"]
    assert order_event_names(None) == []
    alerts = pd.DataFrame(
        {
            "entity": [ALICE],
            "source_ip": ["198.51.100.7"],
            "insight": [0.95],
            "event_count": [3],
            "event_names": [names],
            "write_event_names": [["CreateAccessKey"]],
        }
    )
    row = explain_alerts(alerts, _training(), alerts, WINDOW).iloc[0]
    assert row["write_event_names"] == ["CreateAccessKey"]
    assert "writes: CreateAccessKey;" in row["explanation"] and "3 read-only call types" in row["explanation"]
    assert "FilterLogEvents" not in row["explanation"]


def test_severity_bands_raised_by_writes_or_access_denied_from_a_new_ip() -> None:
    assert alert_severity(0.995) == "high" and alert_severity(0.93) == "medium" and alert_severity(0.86) == "low"
    assert alert_severity(0.86, wrote=True, ip_known=False) == "medium"
    assert alert_severity(0.93, denied=4, ip_known=False) == "high"
    assert alert_severity(0.995, wrote=True, ip_known=False) == "high"
    assert alert_severity(0.86, wrote=True, ip_known=True) == "low"  # a known address: the insight decides
    assert alert_severity(float("nan")) == "low"


def test_explanation_known_network_versus_never_seen() -> None:
    insights = _insights()
    alerts = add_alert_ids(select_alerts(insights, 0.5), DAY)
    out = explain_alerts(alerts, _training(), insights[["entity", "source_ip"]], WINDOW)
    rows = {(r["entity"], r["source_ip"]): r for r in out.to_dict("records")}

    # ALICE from 198.51.100.7: never seen for her; nearest known is 203.0.113.5 (/24 shown)
    new_ip = rows[(ALICE, "198.51.100.7")]
    assert new_ip["ip_seen_for_entity_in_window"] is False or not new_ip["ip_seen_for_entity_in_window"]
    assert new_ip["entity_in_window"]
    assert new_ip["entity_ips_in_window"] == 3
    # 198 = 0b11000110, 203 = 0b11001011 -> 4 common leading bits; 10.x shares 0 bits
    assert new_ip["nearest_known_network"] == "203.0.113.0/24 (shares /4)"
    assert new_ip["other_identities_on_ip_today"] == 0
    assert new_ip["other_identities_on_ip_in_window"] == 1  # dave used it in the window
    assert new_ip["event_names"][:2] == ["CreateAccessKey", "PutUserPolicy"]
    assert new_ip["write_event_names"] == ["CreateAccessKey", "PutUserPolicy"]
    assert new_ip["user_agents"] == ["Boto3/1.34.0 md/Botocore#1.34.0"]
    assert (new_ip["error_count"], new_ip["access_denied_count"]) == (3, 2)
    assert new_ip["severity"] == "high"  # 0.99, and writes from a never-seen address
    text = new_ip["explanation"]
    assert "never seen for this identity" in text
    # four shared bits name no network: every IPv4 address shares a few with some other
    assert "where it used 3 other IPs, none of them in its /8." in text and "nearest known" not in text
    assert "2024-01-01..2024-01-14" in text
    assert "writes: CreateAccessKey, PutUserPolicy" in text
    assert "3 failed calls (2 AccessDenied)" in text
    assert "09:13-11:40 UTC" in text
    assert "\n" not in text

    # ALICE from 203.0.113.99: seen in the window, and inside her usual /24
    seen = rows[(ALICE, "203.0.113.99")]
    assert seen["ip_seen_for_entity_in_window"]
    assert seen["events_for_pair_in_window"] == 1
    assert seen["nearest_known_network"].startswith("203.0.113.0/24 (shares /32)")
    assert "was seen for this identity" in seen["explanation"]
    assert "no writes" in seen["explanation"]

    # CAROL: identity never seen; the IP is shared with bob today and in the window
    carol = rows[(CAROL, "192.0.2.10")]
    assert not carol["entity_in_window"]
    assert carol["nearest_known_network"] is None
    assert carol["other_identities_on_ip_today"] == 1
    assert carol["other_identities_on_ip_in_window"] == 1
    assert "Identity not seen" in carol["explanation"]
    assert "1 today, 1 in the window" in carol["explanation"]
    assert carol["event_names"] == ["AssumeRole", "GetCallerIdentity"]
    assert carol["severity"] == "high"  # 0.95 raised: AssumeRole is a write, from an address new to her


def test_explanation_of_a_learning_set_without_readonly_columns() -> None:
    # Partitions written before the learning set kept readOnly, user agents and AccessDenied.
    insights = _legacy_insights()
    alerts = add_alert_ids(select_alerts(insights, 0.5), DAY)
    out = explain_alerts(alerts, _training(), insights, WINDOW)
    row = out.set_index("source_ip").loc["198.51.100.7"]
    assert row["write_event_names"] is None and row["user_agents"] is None
    assert pd.isna(row["error_count"]) and pd.isna(row["access_denied_count"])
    assert row["event_names"] == ["CreateAccessKey", "DescribeInstances", "ListUsers", "PutUserPolicy"]
    assert "writes not known" in row["explanation"] and "Check the writes" not in row["explanation"]
    assert row["severity"] == "high"  # 0.99: the insight alone
    assert set(out["severity"]) <= {"low", "medium", "high"}


def test_explanation_nearest_known_network_within_same_24() -> None:
    alerts = pd.DataFrame(
        {
            "entity": [ALICE],
            "source_ip": ["203.0.113.200"],
            "insight": [0.9],
            "event_count": [1],
            "event_names": ["ConsoleLogin"],
        }
    )
    training = pd.DataFrame(
        {
            "entity": [ALICE, ALICE, ALICE],
            "source_ip": ["203.0.113.5", "203.0.112.1", "2001:db8::1"],
            "event_count": [1, 1, 1],
        }
    )
    out = explain_alerts(alerts, training, alerts, WINDOW)
    # 200 = 0b11001000 vs 5 = 0b00000101: common prefix 24 bits
    assert out.loc[0, "nearest_known_network"] == "203.0.113.0/24 (shares /24)"
    assert out.loc[0, "nearest_known_ip"] == "203.0.113.5"
    assert out.loc[0, "common_prefix_bits"] == 24
    assert "nearest known network 203.0.113.0/24 (shares /24)." in out.loc[0, "explanation"]


def test_explanation_ipv6_and_empty_inputs() -> None:
    alerts = pd.DataFrame({"entity": [BOB], "source_ip": ["2001:db8:0:1::9"], "insight": [0.9]})
    training = pd.DataFrame({"entity": [BOB, BOB], "source_ip": ["2001:db8:0:1::5", "10.0.0.1"], "event_count": [2, 3]})
    out = explain_alerts(alerts, training, None, None)
    assert out.loc[0, "nearest_known_network"] == "2001:db8:0:1::/64 (shares /124)"
    assert out.loc[0, "other_identities_on_ip_today"] is None
    empty = explain_alerts(alerts.iloc[:0], training, alerts, WINDOW)
    assert empty.empty and "explanation" in empty.columns
    no_training = explain_alerts(alerts, None, alerts, WINDOW)
    assert not no_training.loc[0, "entity_in_window"]


def test_alerts_from_the_rows_they_need_are_those_of_the_whole_day() -> None:
    # The alerts asset converts to pandas only the rows at the threshold, the day's pairs on the
    # alerts' addresses and the window's rows of their identities and addresses: the same alerts,
    # explained the same, as from the whole day and window.
    day = _insights()
    day["event_names"] = [n if isinstance(n, list) else n.split(";") for n in day["event_names"]]
    day.loc[len(day)] = [ALICE, "192.0.2.77", float("nan"), *day.iloc[0, 3:]]  # NaN never alerts
    day.loc[len(day)] = [BOB, "198.51.100.7", 0.2, *day.iloc[0, 3:]]  # another identity on an alert's address
    day.loc[len(day)] = [BOB, "10.9.9.9", 0.1, *day.iloc[0, 3:]]
    window = pd.concat([_training()] * 2, ignore_index=True)  # a pair on several days of the window
    window.loc[len(window)] = ["arn:aws:iam::111122223333:user/erin", "010.1.2.3", 7]  # leading zeros
    window.loc[len(window)] = [ALICE, "2001:db8::7", 2]
    window.loc[len(window)] = [ALICE, "not an address", 1]
    table, window_rows = pa.Table.from_pandas(day, preserve_index=False), pa.Table.from_pandas(window)
    for threshold in (0.0, 0.5, 0.96, 1.0):
        whole = explain_alerts(
            add_alert_ids(select_alerts(table.to_pandas(), threshold), DAY),
            training_pairs(window_rows).to_pandas(),
            table.select(["entity", "source_ip"]).to_pandas(),
            WINDOW,
        )
        needed = day_alerts(table, window_rows, threshold, DAY, WINDOW)
        pd.testing.assert_frame_equal(needed, whole)
        assert window_context(window_rows, needed).num_rows < len(window) or threshold == 0.0
    assert len(whole) == 0 and len(needed) == 0  # the last threshold: none


def test_alert_ids_are_deterministic() -> None:
    first = alert_id(DAY, ALICE, "198.51.100.7")
    assert first == alert_id("2024-01-15", ALICE, "198.51.100.7")
    assert first == alert_id("2024/01/15", ALICE, " 198.51.100.7 ")
    assert first == alert_id(pd.Timestamp("2024-01-15T13:00Z"), ALICE, "198.051.100.007")
    assert re.fullmatch(r"[0-9a-f]{24}", first)
    assert first != alert_id("2024-01-16", ALICE, "198.51.100.7")
    assert first != alert_id(DAY, BOB, "198.51.100.7")
    assert first != alert_id(DAY, ALICE, "198.51.100.8")
    # pinned: changing the canonical string would re-send every past alert after an upgrade
    assert first == "cfdf41fe85ad8d75d6faceee"
    ids = add_alert_ids(_insights(), DAY)["alert_id"]
    assert ids.is_unique and list(ids) == list(add_alert_ids(_insights(), DAY)["alert_id"])


def _explained() -> pd.DataFrame:
    insights = _insights()
    alerts = add_alert_ids(select_alerts(insights, 0.5), DAY)
    return explain_alerts(alerts, _training(), insights, WINDOW)


def test_sns_message_has_every_field() -> None:
    alert = _explained().iloc[0].to_dict()
    assert alert["source_ip"] == "198.51.100.7"
    rendered = format_sns_message(alert, DAY, "s3://trail-bucket/org")
    subject, message, attributes = rendered.subject, rendered.text, rendered.attributes
    lines = message.split("\n")
    assert lines[0] == "Possible malicious activity detected"
    assert lines[1] == ""
    assert lines[2] == f" ACCOUNT={ACCT},444455556666"
    fields = {}
    for line in lines[2:]:
        key, _, value = line.strip().partition("=")
        fields.setdefault(key, []).append(value)
    keys = list(fields)
    assert keys == [
        "ACCOUNT",
        "REGION",
        "DAY",
        "ARN",
        "ACTION",
        "COUNT",
        "INSIGHT",
        "CLOUDTRAIL",
        "SOURCE_IP",
        "DOT_PRODUCT",
        "MODEL_VERSION",
        "ALERT_ID",
        "SEVERITY",
        "THRESHOLD",
        "WRITES",
        "ERRORS",
        "ACCESS_DENIED",
        "USER_AGENT",
        "EXPLANATION",
    ]
    assert fields["REGION"] == ["eu-west-1,us-east-1"]
    assert fields["DAY"] == ["2024/01/15"]
    assert fields["ARN"] == [ALICE]
    assert fields["ACTION"] == ["CreateAccessKey,PutUserPolicy,DescribeInstances,ListUsers"]
    assert fields["COUNT"] == ["12"]
    assert fields["INSIGHT"] == ["0.990000"]
    # no source_files: every account x region in the single-account layout
    assert fields["CLOUDTRAIL"] == [
        f"s3://trail-bucket/org/AWSLogs/{a}/CloudTrail/{r}/2024/01/15"
        for a in (ACCT, "444455556666")
        for r in ("eu-west-1", "us-east-1")
    ]
    assert fields["SOURCE_IP"] == ["198.51.100.7"]
    assert fields["DOT_PRODUCT"] == ["-4.000000"]
    assert fields["MODEL_VERSION"] == ["model-2024-01-14-abc"]
    assert fields["ALERT_ID"] == [alert_id(DAY, ALICE, "198.51.100.7")]
    assert fields["SEVERITY"] == ["high"] and fields["THRESHOLD"] == ["0.5000"]
    assert fields["WRITES"] == ["CreateAccessKey,PutUserPolicy"]
    assert fields["ERRORS"] == ["3"] and fields["ACCESS_DENIED"] == ["2"]
    assert fields["USER_AGENT"] == ["Boto3/1.34.0 md/Botocore#1.34.0"]
    assert "never seen for this identity" in fields["EXPLANATION"][0]
    # the same alert as data, for programs
    document = rendered.document
    assert document["schema"] == "proactive_assets.alert/2" and document["trimmed"] == []
    assert document["alert_id"] == alert_id(DAY, ALICE, "198.51.100.7") and document["entity"] == ALICE
    assert document["threshold"] == 0.5 and document["severity"] == "high"
    assert document["write_event_names"] == ["CreateAccessKey", "PutUserPolicy"]
    assert (document["error_count"], document["access_denied_count"]) == (3, 2)
    assert document["user_agents"] == ["Boto3/1.34.0 md/Botocore#1.34.0"]
    assert document["first_seen"] == "2024-01-15T09:13:00Z"
    structured = json.loads(rendered.sns_message())
    assert json.loads(structured["default"]) == document and structured["email"] == message

    assert subject == "proactive_assets alert: user/alice from 198.51.100.7 (insight 0.99)"
    assert {k: v["StringValue"] for k, v in attributes.items()} == {
        "alert_id": alert_id(DAY, ALICE, "198.51.100.7"),
        "account": f"{ACCT},444455556666",
        "insight": "0.9900",
        "severity": "high",
        "model_version": "model-2024-01-14-abc",
        "day": "2024-01-15",
    }
    assert all(v["DataType"] == "String" for v in attributes.values())


def test_cloudtrail_lines_from_source_files_and_cap() -> None:
    folder = f"AWSLogs/o-abc123defg/{ACCT}/CloudTrail/us-east-1/2024/01/15"
    files = [
        f"s3://org/{folder}/{ACCT}_CloudTrail_us-east-1_20240115T0005Z_{uid}.json.gz"
        for uid in ("AbCdEf0123456789", "ZyXwVu9876543210")
    ]
    alert = {"entity": ALICE, "source_ip": "192.0.2.1", "insight": 0.9, "source_files": files}
    assert cloudtrail_prefixes(alert, DAY) == [folder]
    message = format_sns_message(alert, DAY, None).text
    assert f"\nCLOUDTRAIL={folder}\n" in message

    many = {
        "entity": ALICE,
        "source_ip": "192.0.2.1",
        "insight": 0.9,
        "accounts": [ACCT],
        "regions": [f"r-{i}" for i in range(8)],
    }
    message = format_sns_message(many, DAY, "/data/trail/").text
    assert message.count("\nCLOUDTRAIL=/data/trail/AWSLogs/") == 5
    assert "\nCLOUDTRAIL_MORE=3\n" in message


def test_subject_obeys_sns_limits() -> None:
    long_arn = f"arn:aws:sts::{ACCT}:assumed-role/" + "VeryLongRoleName" * 8 + "/s\u00e9ssion\nname"
    alert = {"entity": long_arn, "source_ip": "2001:db8:aaaa:bbbb:cccc:dddd:eeee:ffff", "insight": 0.987}
    rendered = format_sns_message(alert, DAY, None)
    subject, message, attributes = rendered.subject, rendered.text, rendered.attributes
    assert len(subject) <= SNS_SUBJECT_MAX
    assert subject.isascii() and subject.isprintable()
    assert "\n" not in subject and "\r" not in subject
    assert subject.startswith("proactive_assets alert: assumed")  # shortened in the middle
    assert subject.endswith("from 2001:db8:aaaa:bbbb:cccc:dddd:eeee:ffff (insight 0.99)")
    assert "..." in subject and "\\nname from" in subject  # the line break and the accent shown escaped
    # missing optional fields: no empty attribute values (SNS rejects them), lines still present
    assert all(v["StringValue"] for v in attributes.values())
    assert "\nMODEL_VERSION=\n" in message and "\nCOUNT=\n" in message
    assert "\nWRITES=(not known)\n" in message and "\nUSER_AGENT=" not in message


SUPPRESSIONS = """
identities = [
  "arn:aws:iam::111122223333:role/ci-*",
  { arn = "arn:aws:iam::111122223333:user/bob", reason = "scanner account" },
]
cidrs = ["10.0.0.0/8", { cidr = "2001:db8::/32", reason = "office" }]
accounts = [{ account = "444455556666", reason = "sandbox" }]
"""


def _suppression_alerts() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "entity": [f"arn:aws:iam::{ACCT}:role/ci-runner", BOB, ALICE, ALICE, ALICE, ALICE, ALICE],
            "source_ip": [
                "198.51.100.1",
                "198.51.100.1",
                "10.9.8.7",
                "2001:db8::5",
                "198.51.100.1",
                "198.51.100.1",
                "198.51.100.2",
            ],
            "accounts": [[ACCT], [ACCT], [ACCT], [ACCT], ["444455556666"], ["444455556666", ACCT], [ACCT]],
            "insight": [0.9] * 7,
        }
    )


def test_suppression_by_identity_glob_cidr_and_account(tmp_path) -> None:
    path = tmp_path / "suppressions.toml"
    path.write_text(SUPPRESSIONS)
    suppressions = load_suppressions(path)
    assert len(suppressions) == 5
    out = apply_suppressions(_suppression_alerts(), suppressions)
    assert list(out["suppressed"]) == [True, True, True, True, True, False, False]
    assert list(out["suppressed_by"]) == [
        "identity:arn:aws:iam::111122223333:role/ci-*",
        "identity:arn:aws:iam::111122223333:user/bob (scanner account)",
        "cidr:10.0.0.0/8",
        "cidr:2001:db8::/32 (office)",
        "account:444455556666 (sandbox)",
        None,  # seen in a suppressed and a watched account: still alerts
        None,
    ]
    nothing = apply_suppressions(_suppression_alerts(), Suppressions())
    assert not nothing["suppressed"].any() and nothing["suppressed_by"].isna().all()


@pytest.mark.parametrize(
    ("content", "needle"),
    [
        ('cidrs = ["10.0.0.300/8"]', "cidrs[0]"),
        ('accounts = ["1234"]', "accounts[0]"),
        ("accounts = [111122223333]", "quote account ids"),
        ('identities = ["ok", ""]', "identities[1]"),
        ('identities = [{ pattern = "x" }]', "identities[0]: unknown key"),
        ('identity = ["x"]', "unknown section"),
        ('cidrs = "10.0.0.0/8"', "'cidrs' must be a list"),
        ("this is = not toml [", "not valid TOML"),
    ],
)
def test_invalid_suppression_file_names_file_and_entry(tmp_path, content: str, needle: str) -> None:
    path = tmp_path / "bad-suppressions.toml"
    path.write_text(content)
    with pytest.raises(SuppressionError) as info:
        load_suppressions(path)
    assert str(path) in str(info.value)
    assert needle in str(info.value)


def test_missing_suppression_file(tmp_path) -> None:
    with pytest.raises(SuppressionError, match="not found"):
        load_suppressions(tmp_path / "nope.toml")
    assert len(parse_suppressions({})) == 0


# --------------------------------------------------------------------------------------------
# what an analyst needs, from the learning set to the alert line


def _scored(learning_set: pa.Table) -> pa.Table:
    from proactive_assets.core.model import ScoreResult
    from proactive_assets.core.scoring import score_learning_set

    def score(entities, ips) -> ScoreResult:  # the pass-through is under test here, not the model
        n = len(entities)
        return ScoreResult(
            dot_product=np.full(n, -2.0, np.float32),
            insight=np.full(n, 0.95, np.float32),
            entity_known=np.zeros(n, bool),
        )

    return score_learning_set(learning_set, score, "m-1", DAY)


def _learning_set(with_readonly: bool) -> pa.Table:
    columns = {
        "entity": [ALICE],
        "source_ip": ["198.51.100.7"],
        "event_count": pa.array([4], pa.int64()),
        "error_count": pa.array([2], pa.int64()),
        "first_seen": pa.array([pd.Timestamp("2024-01-15T09:00Z")], pa.timestamp("ms", tz="UTC")),
        "last_seen": pa.array([pd.Timestamp("2024-01-15T10:00Z")], pa.timestamp("ms", tz="UTC")),
        "event_names": [["FilterLogEvents", "GetSecretValue", "PutRolePolicy"]],
        "accounts": [[ACCT]],
        "regions": [["us-east-1"]],
        "sources": [["cloudtrail"]],
        "source_files": [[]],
    }
    if with_readonly:
        columns |= {
            "write_event_names": [["PutRolePolicy"]],
            "user_agents": [["aws-cli/2.15.0", "Boto3/1.34.0"]],
            "access_denied_count": pa.array([1], pa.int64()),
        }
    return pa.table(columns)


def test_daily_insights_carry_the_learning_set_analyst_columns_when_present() -> None:
    with_columns = _scored(_learning_set(with_readonly=True))
    assert with_columns.column("write_event_names").to_pylist() == [["PutRolePolicy"]]
    assert with_columns.column("user_agents").to_pylist() == [["aws-cli/2.15.0", "Boto3/1.34.0"]]
    assert with_columns.column("access_denied_count").to_pylist() == [1]
    assert with_columns.column("error_count").to_pylist() == [2]
    older = _scored(_learning_set(with_readonly=False))
    assert "write_event_names" not in older.column_names and "user_agents" not in older.column_names
    assert older.column("error_count").to_pylist() == [2]


@pytest.mark.parametrize("with_readonly", [True, False], ids=["readOnly learning set", "older learning set"])
def test_alert_line_carries_what_an_analyst_needs(tmp_path, with_readonly: bool) -> None:
    from dagster import DagsterInstance, materialize

    from proactive_assets_tests.alert_fixtures import plant_alert_inputs
    from proactive_assets_tests.conftest import project_assets, project_resource

    res = project_resource(tmp_path / "home", insight_threshold=0.9)
    rows = _scored(_learning_set(with_readonly)).to_pandas().to_dict("records")
    plant_alert_inputs(res.warehouse(), DAY, rows)
    result = materialize(
        project_assets(res, "alerts"),
        partition_key=DAY.isoformat(),
        resources={"proactive": res},
        instance=DagsterInstance.ephemeral(),
    )
    assert result.success
    (line,) = [json.loads(x) for x in Path(res.settings.alerts_file).read_text(encoding="utf-8").splitlines()]
    assert line["threshold"] == 0.9 and line["insight"] == pytest.approx(0.95)
    assert line["error_count"] == 2
    if with_readonly:
        # FilterLogEvents and GetSecretValue are reads (readOnly true): not a prefix guess
        assert line["write_event_names"] == ["PutRolePolicy"]
        assert line["event_names"] == ["PutRolePolicy", "FilterLogEvents", "GetSecretValue"]
        assert line["user_agents"] == ["aws-cli/2.15.0", "Boto3/1.34.0"] and line["access_denied_count"] == 1
        assert line["severity"] == "high"  # 0.95 raised: a write from a never-seen address
        assert (
            "writes: PutRolePolicy;" in line["explanation"] and "2 failed calls (1 AccessDenied)" in line["explanation"]
        )
        assert "\nWRITES=PutRolePolicy\n" in line["message"] and "\nUSER_AGENT=Boto3/1.34.0\n" in line["message"]
    else:
        assert line["write_event_names"] is None and line["user_agents"] is None
        assert line["access_denied_count"] is None and line["severity"] == "medium"
        assert "writes not known" in line["explanation"] and "\nWRITES=(not known)\n" in line["message"]
    assert "\nSEVERITY=" in line["message"] and "\nTHRESHOLD=0.9000\n" in line["message"]
    table = res.warehouse().read_table("alerts", DAY).to_pylist()
    assert [r["severity"] for r in table] == [line["severity"]] and table[0]["threshold"] == 0.9


def test_explanation_names_the_evidence_and_where_it_disagrees() -> None:
    """The detector's evidence columns become a sentence, and the JSON document carries them as fields."""
    alert = {
        "entity": f"arn:aws:sts::{ACCT}:assumed-role/fn-role/ingest",
        "source_ip": "198.51.100.7",
        "insight": 0.97,
        "event_count": 4,
        "event_names": ["GetSecretValue"],
        "write_event_names": [],
        "evidence_for": ["off_provider", "novel_network", "novel_x_new_actions", "ip_insights"],
        "evidence_against": ["novel_x_others_today", "novel_x_ip_insights"],
        "address_owner": "",
        "novelty": "never-seen network",
    }
    train = pd.DataFrame({"entity": [alert["entity"]], "source_ip": ["3.80.1.2"], "event_count": [9]})
    today = pd.DataFrame({"entity": [alert["entity"], BOB], "source_ip": ["198.51.100.7", "198.51.100.7"]})
    [row] = explain_alerts(add_alert_ids(pd.DataFrame([alert]), DAY), train, today, (DAY, DAY)).to_dict("records")
    assert (
        "Evidence: a machine identity that only ever called from cloud addresses, now from elsewhere; "
        "a network this identity never used; API calls it never made in the window; "
        "IP Insights finds the address unlike this identity's networks; "
        "against it: other identities used this network today; "
        "IP Insights finds the address like this identity's networks." in row["explanation"]
    )
    message = format_sns_message(row, DAY, None)
    assert "Evidence: a machine identity" in message.text
    assert message.document["evidence_for"] == alert["evidence_for"]
    assert message.document["novelty"] == "never-seen network"


def test_explanation_of_an_identity_with_one_other_address() -> None:
    alerts = pd.DataFrame({"entity": [BOB, BOB], "source_ip": ["198.51.100.7", "2001:db8::9"], "insight": [0.9, 0.9]})
    training = pd.DataFrame({"entity": [BOB], "source_ip": ["10.0.0.1"], "event_count": [3]})
    out = explain_alerts(alerts, training, alerts, WINDOW).set_index("source_ip")["explanation"]
    assert "where it used 1 other IP, not in its /8." in out["198.51.100.7"]  # 198 and 10 share no bit
    assert "where it used 1 other IP, not IPv6." in out["2001:db8::9"]
