"""Values from logs are data in every sink: crafted records try to forge lines, fields and links, and fail.

Each test plants what an attacker who can write one CloudTrail record controls (ARN, event name,
account, region, user agent) and checks one sink: the SNS text body, subject and attributes, the
JSON document, the JSON-lines file, Markdown metadata, the UI preview table, and log lines; the
last tests run the ``learning_set`` and ``alerts`` assets themselves on crafted data.
"""

import json
from datetime import date, timedelta
from pathlib import Path

import boto3
import pandas as pd
import pyarrow as pa
import pytest
from dagster import DagsterInstance, materialize
from markdown_it import MarkdownIt

from proactive_assets.core.alerts import add_alert_ids, explain_alerts, select_alerts
from proactive_assets.core.escaping import markdown_text, one_line, unescape_one_line
from proactive_assets.core.events import EventTally, Problem
from proactive_assets.core.publish import JsonLinesSink, ObjectStoreLedger, publish_alerts, render_alert
from proactive_assets.core.storage import LocalStore
from proactive_assets.defs.metadata import log_quarantined, record_preview, table_preview, text_list
from proactive_assets_tests.alert_fixtures import plant_alert_inputs
from proactive_assets_tests.cloudtrail_fixtures import log_key, put_log, record
from proactive_assets_tests.conftest import project_assets, project_resource

DAY = date(2024, 1, 15)
ACCT = "111122223333"
REAL_IP = "198.51.100.7"

#: Every character Python's ``str.splitlines`` (and most viewers) treat as a line break.
BREAKS = ["\n", "\r", "\r\n", "\v", "\f", "\x1c", "\x1d", "\x1e", "\x85", "\u2028", "\u2029"]

#: Lines an attacker would like to put ahead of the real ones.
FORGED_LINES = ["ACCOUNT=999999999999", "SOURCE_IP=6.6.6.6", "ALERT_ID=forged000000000000000000", "INSIGHT=0.000001"]

#: Markdown and HTML that must never render as a link, an image or markup.
MARKUP = [
    "[click here](https://evil.example/login)",
    "![pixel](https://evil.example/p.png)",
    "<img src=x onerror=alert(1)>",
    "<a href='https://evil.example'>docs</a>",
    "<https://evil.example/auto>",
    "www.evil.example/path",
    "https://evil.example/bare",
    "mallory@evil.example",
    "**bold** _em_ `code` ~~strike~~",
    "&#91;pre-encoded&#93;&#40;https://evil.example&#41;",
    "cell | injected | row",
]


def _crafted(br: str) -> dict[str, object]:
    forged = br + br.join(FORGED_LINES)
    return {
        "entity": f"arn:aws:iam::{ACCT}:user/mallory{forged}",
        "source_ip": REAL_IP,
        "insight": 0.97,
        "dot_product": -2.5,
        "event_count": 4,
        "event_names": [f"GetObject{forged}", "List,Users"],
        "write_event_names": [f"PutObject{br}ACTION=Nothing"],
        "user_agents": [f"aws-cli/2.15{br}USER_AGENT=forged", "Mozilla/5.0 (KHTML, like Gecko)"],
        "error_count": 1,
        "access_denied_count": 1,
        "accounts": [f"{ACCT}{br}ACCOUNT=999999999999", "444455556666"],
        "regions": [f"us-east-1{br}REGION=forged-1"],
        "first_seen": pd.Timestamp("2024-01-15T10:00Z"),
        "last_seen": pd.Timestamp("2024-01-15T11:00Z"),
        "model_version": "m-1",
    }


def _explained(rows: list[dict[str, object]]) -> pd.DataFrame:
    frame = add_alert_ids(select_alerts(pd.DataFrame(rows), 0.85), DAY)
    training = pd.DataFrame({"entity": [f"arn:aws:iam::{ACCT}:user/alice"], "source_ip": ["203.0.113.5"]})
    return explain_alerts(frame, training, frame, (DAY - timedelta(days=14), DAY - timedelta(days=1)))


def _fields(text: str) -> list[tuple[str, str]]:
    return [(line.strip().partition("=")[0], line.partition("=")[2]) for line in text.splitlines()[2:]]


@pytest.mark.parametrize("br", BREAKS, ids=[repr(b) for b in BREAKS])
def test_sns_text_body_keeps_one_line_per_field(br: str) -> None:
    alert = _explained([_crafted(br)]).iloc[0].to_dict()
    message = render_alert(alert, DAY, "s3://trail").message
    text = message.text
    assert len(text.splitlines()) == text.count("\n") + 1, "a value added a line break of its own"
    fields = _fields(text)
    keys = [k for k, _ in fields]
    for key in ("ACCOUNT", "REGION", "ARN", "ACTION", "INSIGHT", "SOURCE_IP", "ALERT_ID", "EXPLANATION", "WRITES"):
        assert keys.count(key) == 1, f"{key} appears {keys.count(key)} times"
    values = dict(fields)
    assert values["ALERT_ID"] == alert["alert_id"] and values["SOURCE_IP"] == REAL_IP
    assert values["INSIGHT"] == "0.970000"
    assert unescape_one_line(values["ARN"]) == alert["entity"]  # the value is all there, as data
    assert [unescape_one_line(v) for v in values["ACTION"].split(",")] == alert["event_names"]
    assert keys.count("USER_AGENT") == 2 and keys.index("USER_AGENT") > keys.index("ALERT_ID")
    assert all(line.isprintable() for line in text.splitlines())


@pytest.mark.parametrize("br", ["\n", "\u2028", "\x85"], ids=repr)
def test_sns_subject_attributes_and_document(br: str) -> None:
    alert = _explained([_crafted(br)]).iloc[0].to_dict()
    message = render_alert(alert, DAY, "s3://trail").message
    assert message.subject.isascii() and message.subject.isprintable() and len(message.subject) <= 100
    for name, value in message.attributes.items():
        assert value["StringValue"].isprintable(), name
    assert message.attributes["alert_id"]["StringValue"] == alert["alert_id"]
    assert [
        unescape_one_line(a.replace("\\x2c", ",")) for a in message.attributes["account"]["StringValue"].split(",")
    ] == sorted(alert["accounts"])
    body = message.sns_message()
    assert body.isascii() and body.isprintable()  # JSON escaping: no raw break anywhere in what SNS carries
    structured = json.loads(body)
    document = json.loads(structured["default"])
    assert document["alert_id"] == alert["alert_id"] and document["source_ip"] == REAL_IP
    assert document["entity"] == alert["entity"]  # exact, as logged: the document is data
    assert document["accounts"] == sorted(alert["accounts"])
    assert structured["email"] == message.text


def test_json_lines_file_has_one_parseable_line_per_alert(tmp_path: Path) -> None:
    rows = [_crafted(br) | {"source_ip": f"198.51.100.{i + 1}"} for i, br in enumerate(BREAKS)]
    alerts = _explained(rows)
    path = tmp_path / "alerts.jsonl"
    report = publish_alerts(alerts, [JsonLinesSink(path)], ObjectStoreLedger(LocalStore(tmp_path / "ledger")), day=DAY)
    assert report.ok and len(report.published) == len(BREAKS)
    content = path.read_text(encoding="utf-8")
    assert content.isascii()
    lines = content.splitlines()
    assert len(lines) == len(BREAKS)
    records = [json.loads(line) for line in lines]
    assert [r["alert_id"] for r in records] == list(alerts["alert_id"])
    assert [r["entity"] for r in records] == list(alerts["entity"])
    for r in records:
        assert _fields(r["message"]) and [k for k, _ in _fields(r["message"])].count("ALERT_ID") == 1


def _html(markdown: str) -> str:
    return MarkdownIt("commonmark").enable("table").render(markdown)


def _assert_inert(markdown: str) -> str:
    html = _html(markdown)
    for tag in ("<a ", "<img", "<script", "<strong", "<em>", "<code", "<del", "<s>"):
        assert tag not in html, f"{tag} rendered from {markdown!r}"
    # GitHub-flavoured autolinks (Dagster's renderer) need these in the source text
    assert "://" not in markdown and "www." not in markdown.lower() and "@" not in markdown
    return html


@pytest.mark.parametrize("payload", MARKUP)
def test_markdown_previews_render_log_values_as_text(payload: str) -> None:
    table = pa.table({"entity": [payload, "ok"], "event_names": [[payload, "x"], ["y"]]})
    html = _assert_inert(table_preview(table).value)
    assert html.count("<tr>") == 3 and html.count("<td") == 4  # no injected cell or row
    _assert_inert(text_list([payload, "AWSLogs/x"]).value)
    assert "&lt;" not in markdown_text(payload) and "<" not in markdown_text(payload)


def test_markdown_text_shows_the_value() -> None:
    rendered = _html(markdown_text("[click](https://evil.example) <b>x</b>"))
    assert "[click](https:\\x2f/evil.example) &lt;b&gt;x&lt;/b&gt;" in rendered


def test_ui_preview_table_and_log_lines_are_one_line_without_links() -> None:
    alerts = _explained([_crafted("\n") | {"entity": f"arn:aws:iam::{ACCT}:user/x\nhttps://evil.example/"}])
    preview = record_preview(alerts.to_dict("records"), [("entity", "identity"), ("explanation", "why")], "alert_id")
    values = [str(r.data["value"]) for r in preview.value.records]
    assert values and all(v.isprintable() and "://" not in v for v in values)

    class Log:
        def __init__(self) -> None:
            self.lines: list[str] = []

        def warning(self, message: str) -> None:
            self.lines.append(message)

    class Context:
        log = Log()

    tally = EventTally(problems=[Problem("AWSLogs/x.json.gz\nquarantined AWSLogs/innocent.json.gz", "bad\rjson", -1)])
    log_quarantined(Context(), tally)
    assert len(Context.log.lines) == 1 and len(Context.log.lines[0].splitlines()) == 1
    assert (
        unescape_one_line(Context.log.lines[0])
        == "quarantined AWSLogs/x.json.gz\nquarantined AWSLogs/innocent.json.gz: bad\rjson"
    )
    assert one_line("https://evil.example") == "https:\\x2f/evil.example"


# ---------------------------------------------------------------------------------------------
# through the assets


def test_learning_set_preview_from_crafted_records(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "bucket")
    crafted_arn = f"arn:aws:iam::{ACCT}:user/[click](https://evil.example/login)<img src=x>"
    day = date(2024, 3, 5)
    put_log(store, log_key(day), [record(arn=crafted_arn, name="**Get**[x](https://evil.example)")])
    # an object whose name forges a log line of its own when the listing reports it
    folder = log_key(day).rsplit("/", 1)[0]
    store.put(f"{folder}/x\nquarantined {folder}/innocent.json.gz: forged", b"not a log")
    res = project_resource(tmp_path / "home", cloudtrail_uri=str(tmp_path / "bucket"))
    instance = DagsterInstance.ephemeral()
    result = materialize(
        project_assets(res, "raw_cloudtrail", "cloudtrail_events", "learning_set"),
        partition_key=day.isoformat(),
        resources={"proactive": res},
        instance=instance,
    )
    logged = [e.user_message for e in instance.all_logs(result.run_id) if e.user_message.startswith("skipped")]
    assert len(logged) == 1 and len(logged[0].splitlines()) == 1, logged
    for asset in ("cloudtrail_events", "learning_set"):
        (mat,) = result.asset_materializations_for_node(asset)
        _assert_inert(mat.metadata["preview"].value)
    assert res.warehouse().read_table("learning_set", day).column("entity").to_pylist() == [crafted_arn]


def test_alerts_asset_with_crafted_values_forges_nothing(moto_endpoint: str, tmp_path: Path) -> None:
    sns, sqs = boto3.client("sns"), boto3.client("sqs")
    topic = sns.create_topic(Name="forgery")["TopicArn"]
    queue = sqs.create_queue(QueueName="forgery-q")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=queue_arn)
    res = project_resource(tmp_path / "home", sns_topic_arn=topic)
    rows = [_crafted(br) | {"source_ip": f"198.51.100.{i + 1}"} for i, br in enumerate(["\n", "\u2028", "\r"])]
    rows[0]["entity"] = (
        f"arn:aws:iam::{ACCT}:user/x\nalert (high): arn:aws:iam::1:user/ceo from 6.6.6.6 [click](https://e.example)"
    )
    plant_alert_inputs(res.warehouse(), DAY, rows)
    instance = DagsterInstance.ephemeral()
    result = materialize(
        project_assets(res, "alerts"), partition_key=DAY.isoformat(), resources={"proactive": res}, instance=instance
    )
    assert result.success
    table = res.warehouse().read_table("alerts", DAY).to_pylist()
    assert sorted(r["entity"] for r in table) == sorted(r["entity"] for r in rows)  # stored as data

    # the run's log: one line per alert, every value escaped
    messages = [
        e.user_message for e in instance.all_logs(result.run_id) if e.user_message.startswith(("alert", "supp"))
    ]
    alert_lines = [m for m in messages if "insight=" in m]
    assert len(alert_lines) == len(rows)
    assert all(len(m.splitlines()) == 1 and "://" not in m for m in alert_lines)

    # the UI preview: plain-text rows, no link
    (mat,) = result.asset_materializations_for_node("alerts")
    values = [str(r.data["value"]) for r in mat.metadata["preview"].value.records]
    assert all(v.isprintable() and "://" not in v for v in values)

    # the JSON-lines file and SNS: one record per alert, the real id and address
    lines = Path(res.settings.alerts_file).read_text().splitlines()
    assert len(lines) == len(rows)
    delivered = []
    while batch := sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10).get("Messages", []):
        for message in batch:
            delivered.append(json.loads(json.loads(message["Body"])["Message"]))
            sqs.delete_message(QueueUrl=queue, ReceiptHandle=message["ReceiptHandle"])
    assert sorted(d["alert_id"] for d in delivered) == sorted(r["alert_id"] for r in table)
    assert sorted(d["entity"] for d in delivered) == sorted(r["entity"] for r in rows)
