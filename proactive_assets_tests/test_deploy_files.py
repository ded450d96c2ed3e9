"""The production files under deploy/ (see deploy/README.md), checked without AWS.

* IAM policies: the policy grammar, least privilege (no wildcard actions, ``"Resource": "*"``
  only for actions that support nothing else), every ``${Placeholder}`` documented, size limits.
* Every AWS operation the code performs is allowed by the policy of the role that performs it,
  and nothing obviously outside its job is: the S3 calls of ``storage.py`` are *recorded* while
  the real listing, warehouse and ledger code runs against an in-memory bucket, then evaluated
  against the rendered policy (action, ARN, condition keys). The SageMaker, SNS and SQS calls
  are taken from the source (an explicit operation -> IAM action map, so a new call fails here
  until the policy and the map are updated).
* The instance (``dagster.yaml``) and workspace files validate against Dagster's own schemas and
  name dagster-postgres and ``dagster_aws.ecs.EcsRunLauncher``; the ECS task definitions validate
  against the ECS API model in botocore; the Dockerfile, the task definitions and the Helm values
  agree with each other and with the code (module, port, environment variables).

None of this proves the files work against real AWS (they have not been run there); it proves
they are well-formed and consistent with what the code does.
"""

import io
import json
import re
import string
import tempfile
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from botocore.exceptions import ClientError

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"
IAM = DEPLOY / "iam"
ECS = DEPLOY / "ecs"
README = DEPLOY / "README.md"
PLACEHOLDER = re.compile(r"\$\{([A-Za-z][A-Za-z0-9]*)\}")

# One sample value per placeholder (deploy/README.md documents them all).
SAMPLE = {
    "Region": "eu-west-1",
    "AccountId": "111122223333",
    "CloudTrailBucket": "org-cloudtrail-logs",
    "CloudTrailPrefix": "",
    "KmsKeyArn": "arn:aws:kms:eu-west-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab",
    "WarehouseBucket": "proactive-data",
    "WarehousePrefix": "warehouse",
    "ArtifactsBucket": "proactive-data",
    "ArtifactsPrefix": "sagemaker",
    "SageMakerRoleName": "proactive-sagemaker-execution",
    "IpInsightsImageAccount": "438346466558",
    "TopicName": "proactive-alerts",
    "QueueName": "AmazonSecurityLake-1234-Main-Queue",
    "SecurityLakeBucket": "aws-security-data-lake-eu-west-1-abcdefghijklmnopqrstuvwxyz12",
    "SecurityLakeDatabase": "amazon_security_lake_glue_db_eu_west_1",
    "AthenaWorkgroup": "proactive",
    "AthenaResultsBucket": "proactive-data",
    "AthenaResultsPrefix": "athena-results",
    "EcsCluster": "proactive",
    "RunTaskRoleName": "proactive-run",
    "EcsExecutionRoleName": "proactive-ecs-execution",
    "DagsterTaskRoleName": "proactive-dagster",
    "CodeLocationTaskRoleName": "proactive-code-location",
    "LogGroup": "/proactive/dagster",
    "DbHost": "dagster.abcdefghijkl.eu-west-1.rds.amazonaws.com",
    "DbSecretArn": "arn:aws:secretsmanager:eu-west-1:111122223333:secret:proactive-dagster-db-AbCdEf",
    "CodeServerHost": "proactive-code.dagster.internal",
    "ImageUri": "111122223333.dkr.ecr.eu-west-1.amazonaws.com/proactive-assets:0a1b2c3",
}
REGION, ACCOUNT = SAMPLE["Region"], SAMPLE["AccountId"]

POLICY_FILES = sorted(p.name for p in IAM.glob("*.json"))
TRUST_FILES = [name for name in POLICY_FILES if name.endswith("-trust.json")]
PERMISSION_FILES = [name for name in POLICY_FILES if name not in TRUST_FILES]

STATEMENT_KEYS = {"Sid", "Effect", "Principal", "Action", "Resource", "Condition"}
CONDITION_OPERATORS = {
    "StringEquals",
    "StringLike",
    "StringLikeIfExists",
    "ArnEquals",
    "ArnLike",
}
# Actions with no resource-level permissions: "Resource": "*" is the only possible grant.
STAR_RESOURCE_ACTIONS = {
    "ecr:GetAuthorizationToken",
    "ecs:RegisterTaskDefinition",
    "ecs:DescribeTaskDefinition",
    "ec2:DescribeNetworkInterfaces",
    "lakeformation:GetDataAccess",
    "cloudwatch:PutMetricData",
}
MANAGED_POLICY_MAX_CHARS = 6144  # IAM quota, counted without whitespace


def render(text: str, values: dict[str, str] | None = None) -> str:
    return string.Template(text).substitute(values or SAMPLE)


def policy(name: str, **overrides: str) -> dict[str, Any]:
    return json.loads(render((IAM / name).read_text(), {**SAMPLE, **overrides}))


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


# ------------------------------------------------------------------ a small policy evaluator


def _wildcard(pattern: str, value: str) -> bool:
    """IAM wildcard match: ``*`` any run of characters (``/`` and ``:`` included), ``?`` one."""
    regex = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.fullmatch(regex, value, flags=re.DOTALL) is not None


def _condition_holds(condition: dict[str, Any], context: dict[str, str]) -> bool:
    for operator, tests in condition.items():
        base = operator.removesuffix("IfExists")
        for key, expected in tests.items():
            if key not in context:
                if operator.endswith("IfExists"):
                    continue
                return False
            actual, wanted = context[key], as_list(expected)
            if base in ("StringEquals", "ArnEquals"):
                ok = actual in wanted
            elif base in ("StringLike", "ArnLike"):
                ok = any(_wildcard(w, actual) for w in wanted)
            else:  # pragma: no cover - the grammar test only lets known operators through
                raise AssertionError(f"condition operator {operator} not understood")
            if not ok:
                return False
    return True


def allowed(doc: dict[str, Any], action: str, resource: str, context: dict[str, str] | None = None) -> bool:
    """True if some Allow statement grants ``action`` on ``resource`` in ``context`` (no Deny is used)."""
    for statement in doc["Statement"]:
        if action not in as_list(statement["Action"]):
            continue
        if not any(_wildcard(pattern, resource) for pattern in as_list(statement["Resource"])):
            continue
        if _condition_holds(statement.get("Condition", {}), context or {}):
            return True
    return False


def test_evaluator_sanity() -> None:
    doc = {
        "Statement": [
            {
                "Effect": "Allow",
                "Action": "s3:ListBucket",
                "Resource": "arn:aws:s3:::b",
                "Condition": {"StringLike": {"s3:prefix": ["AWSLogs/*"]}},
            }
        ]
    }
    assert allowed(doc, "s3:ListBucket", "arn:aws:s3:::b", {"s3:prefix": "AWSLogs/"})
    assert not allowed(doc, "s3:ListBucket", "arn:aws:s3:::b", {"s3:prefix": "other/"})
    assert not allowed(doc, "s3:ListBucket", "arn:aws:s3:::b", {})
    assert not allowed(doc, "s3:ListBucket", "arn:aws:s3:::bb", {"s3:prefix": "AWSLogs/"})
    assert not allowed(doc, "s3:GetObject", "arn:aws:s3:::b", {"s3:prefix": "AWSLogs/"})
    assert _wildcard("a/*/c/*", "a/x/y/c/z") and not _wildcard("a/*/c/*", "a/x/c-d/z")


# --------------------------------------------------------------------------- policy grammar


def test_the_expected_policy_files_exist() -> None:
    assert set(POLICY_FILES) >= {
        "cloudtrail-read.json",
        "cloudtrail-kms-decrypt.json",
        "warehouse-readwrite.json",
        "sagemaker-orchestration.json",
        "sagemaker-execution-role.json",
        "sagemaker-execution-trust.json",
        "sns-publish.json",
        "sqs-subscriber.json",
        "security-lake-athena-read.json",
        "run-task-role.json",
        "code-location-task-role.json",
        "dagster-daemon-webserver.json",
        "ecs-tasks-trust.json",
        "ecs-task-execution.json",
    }


@pytest.mark.parametrize("name", POLICY_FILES)
def test_policy_grammar_and_least_privilege(name: str) -> None:
    raw = json.loads((IAM / name).read_text())  # valid JSON before rendering, too
    assert set(raw) <= {"Version", "Id", "Statement"}
    assert raw["Version"] == "2012-10-17"
    statements = raw["Statement"]
    assert isinstance(statements, list) and statements
    sids = [s.get("Sid") for s in statements]
    assert all(sid and re.fullmatch(r"[A-Za-z0-9]+", sid) for sid in sids), sids
    assert len(set(sids)) == len(sids), f"duplicate Sid in {name}"
    trust = name in TRUST_FILES
    for statement in statements:
        where = f"{name}:{statement.get('Sid')}"
        assert set(statement) <= STATEMENT_KEYS, where
        assert statement["Effect"] == "Allow", where
        actions = as_list(statement["Action"])
        assert actions and all(isinstance(a, str) for a in actions), where
        for action in actions:
            assert "*" not in action and "?" not in action, f"{where}: wildcard action {action}"
            assert re.fullmatch(r"[a-z0-9-]+:[A-Za-z0-9]+", action), f"{where}: {action}"
        for operator in statement.get("Condition", {}):
            assert operator in CONDITION_OPERATORS, f"{where}: {operator}"
        if trust:
            assert "Resource" not in statement and "Principal" in statement, where
            assert actions == ["sts:AssumeRole"], where
            assert list(statement["Principal"]) == ["Service"], where
            continue
        assert "Principal" not in statement, where
        resources = as_list(statement["Resource"])
        assert resources and all(isinstance(r, str) for r in resources), where
        if "*" in resources:
            assert resources == ["*"], where
            assert set(actions) <= STAR_RESOURCE_ACTIONS, f"{where}: Resource * for {actions}"


@pytest.mark.parametrize("name", POLICY_FILES)
def test_policy_renders_to_arns_within_the_size_quota(name: str) -> None:
    text = render((IAM / name).read_text())
    assert "${" not in text and "$" not in text, f"{name}: unrendered placeholder or policy variable"
    doc = json.loads(text)
    for statement in doc["Statement"]:
        for resource in as_list(statement.get("Resource", [])):
            assert resource == "*" or resource.startswith("arn:aws:"), f"{name}: {resource}"
    assert len("".join(text.split())) <= MANAGED_POLICY_MAX_CHARS, f"{name} exceeds the managed policy size quota"


def _placeholders(paths: list[Path]) -> set[str]:
    return {name for path in paths for name in PLACEHOLDER.findall(path.read_text())}


def test_every_placeholder_is_documented_and_has_a_sample() -> None:
    templates = [*IAM.glob("*.json"), *ECS.glob("*.json")]
    used = _placeholders(templates)
    readme = README.read_text()
    undocumented = sorted(name for name in used if f"${{{name}}}" not in readme)
    assert not undocumented, f"placeholders missing from deploy/README.md: {undocumented}"
    assert used == set(SAMPLE), f"SAMPLE out of date: missing {used - set(SAMPLE)}, unused {set(SAMPLE) - used}"


def test_every_policy_file_is_assigned_in_the_readme() -> None:
    readme = README.read_text()
    missing = [name for name in POLICY_FILES if name not in readme]
    assert not missing, f"policy files deploy/README.md never mentions: {missing}"


def test_trust_policies_name_the_services_that_assume_the_roles() -> None:
    sagemaker = policy("sagemaker-execution-trust.json")["Statement"][0]
    assert sagemaker["Principal"] == {"Service": "sagemaker.amazonaws.com"}
    ecs = policy("ecs-tasks-trust.json")["Statement"][0]
    assert ecs["Principal"] == {"Service": "ecs-tasks.amazonaws.com"}
    assert ecs["Condition"]["StringEquals"]["aws:SourceAccount"] == ACCOUNT


# ------------------------------------------------------- S3: record what the code really calls

# boto3 S3 client operations of storage.py -> the IAM action that authorises each.
S3_OPERATION_ACTIONS = {
    "list_objects_v2": "s3:ListBucket",
    "get_object": "s3:GetObject",
    "put_object": "s3:PutObject",
    "delete_object": "s3:DeleteObject",
    "head_object": "s3:GetObject",
    "download_file": "s3:GetObject",
    "upload_file": "s3:PutObject",
}


def test_the_s3_map_covers_every_operation_storage_calls() -> None:
    source = (ROOT / "proactive_assets" / "core" / "storage.py").read_text()
    called = set(re.findall(r"self\.client\.(\w+)", source)) - {"get_paginator"}
    called |= set(re.findall(r'get_paginator\("(\w+)"\)', source))
    assert called == set(S3_OPERATION_ACTIONS), "storage.py calls changed: update the map and the S3 policies"


class FakeS3:
    """An in-memory bucket with the boto3 methods storage.py uses; records every call."""

    def __init__(self, objects: dict[tuple[str, str], bytes] | None = None) -> None:
        self.objects = dict(objects or {})
        self.calls: list[tuple[str, dict[str, Any]]] = []

    def _missing(self, operation: str, code: str = "NoSuchKey") -> ClientError:
        return ClientError({"Error": {"Code": code, "Message": "not found"}}, operation)

    def get_paginator(self, name: str) -> Any:
        assert name == "list_objects_v2"
        fake = self

        class Paginator:
            def paginate(self, **kwargs: Any) -> Any:
                fake.calls.append(("list_objects_v2", kwargs))
                return iter([fake._list(**kwargs)])

        return Paginator()

    def _list(self, Bucket: str, Prefix: str = "", Delimiter: str | None = None) -> dict[str, Any]:
        contents, prefixes = [], set()
        for (bucket, key), data in sorted(self.objects.items()):
            if bucket != Bucket or not key.startswith(Prefix):
                continue
            rest = key[len(Prefix) :]
            if Delimiter and Delimiter in rest:
                prefixes.add(Prefix + rest.split(Delimiter, 1)[0] + Delimiter)
                continue
            contents.append({"Key": key, "Size": len(data), "ETag": '"e"', "LastModified": datetime.now(UTC)})
        return {"Contents": contents, "CommonPrefixes": [{"Prefix": p} for p in sorted(prefixes)]}

    def get_object(self, Bucket: str, Key: str) -> dict[str, Any]:
        self.calls.append(("get_object", {"Bucket": Bucket, "Key": Key}))
        if (Bucket, Key) not in self.objects:
            raise self._missing("GetObject")
        return {"Body": io.BytesIO(self.objects[(Bucket, Key)])}

    def head_object(self, Bucket: str, Key: str) -> dict[str, Any]:
        self.calls.append(("head_object", {"Bucket": Bucket, "Key": Key}))
        if (Bucket, Key) not in self.objects:
            raise self._missing("HeadObject", "404")
        return {"ContentLength": len(self.objects[(Bucket, Key)])}

    def put_object(self, Bucket: str, Key: str, Body: bytes) -> dict[str, Any]:
        self.calls.append(("put_object", {"Bucket": Bucket, "Key": Key}))
        self.objects[(Bucket, Key)] = bytes(Body)
        return {}

    def upload_file(self, Filename: str, Bucket: str, Key: str) -> None:
        self.calls.append(("upload_file", {"Bucket": Bucket, "Key": Key}))
        self.objects[(Bucket, Key)] = Path(Filename).read_bytes()

    def download_file(self, Bucket: str, Key: str, Filename: str) -> None:
        self.calls.append(("download_file", {"Bucket": Bucket, "Key": Key}))
        Path(Filename).write_bytes(self.objects[(Bucket, Key)])

    def delete_object(self, Bucket: str, Key: str) -> dict[str, Any]:
        self.calls.append(("delete_object", {"Bucket": Bucket, "Key": Key}))
        self.objects.pop((Bucket, Key), None)
        return {}

    def iam_requests(self) -> list[tuple[str, str, dict[str, str]]]:
        """(IAM action, resource ARN, condition context) of every recorded call."""
        requests = []
        for operation, kwargs in self.calls:
            action = S3_OPERATION_ACTIONS[operation]
            if operation == "list_objects_v2":
                context = {"s3:prefix": kwargs["Prefix"]} if kwargs.get("Prefix") else {}
                requests.append((action, f"arn:aws:s3:::{kwargs['Bucket']}", context))
            else:
                requests.append((action, f"arn:aws:s3:::{kwargs['Bucket']}/{kwargs['Key']}", {}))
        return requests


def _assert_all_allowed(doc: dict[str, Any], requests: list[tuple[str, str, dict[str, str]]], what: str) -> None:
    assert requests, f"{what}: nothing was recorded"
    refused = [r for r in requests if not allowed(doc, *r)]
    assert not refused, f"{what}: not allowed: {refused}"


def _cloudtrail_bucket(bucket: str, root: str) -> FakeS3:
    day = "2024/06/20"
    keys = [
        f"{root}AWSLogs/111122223333/CloudTrail/eu-west-1/{day}/111122223333_CloudTrail_eu-west-1_20240620T0005Z_a1.json.gz",
        f"{root}AWSLogs/111122223333/CloudTrail/us-east-1/{day}/111122223333_CloudTrail_us-east-1_20240620T2355Z_b2.json.gz",
        f"{root}AWSLogs/o-abc123defg/444455556666/CloudTrail/eu-west-1/{day}/444455556666_CloudTrail_eu-west-1_20240620T1200Z_c3.json.gz",
        f"{root}AWSLogs/111122223333/CloudTrail-Digest/eu-west-1/{day}/111122223333_CloudTrail-Digest_eu-west-1_x.json.gz",
        f"{root}AWSLogs/111122223333/CloudTrail-Insight/eu-west-1/{day}/111122223333_CloudTrail-Insight_eu-west-1_y.json.gz",
    ]
    return FakeS3({(bucket, key): b"{}" for key in keys})


@pytest.mark.parametrize("trail_prefix", ["", "org-trail/"])
@pytest.mark.parametrize("policy_file", ["cloudtrail-read.json", "run-task-role.json"])
def test_cloudtrail_listing_and_reading_are_allowed_and_nothing_else(trail_prefix: str, policy_file: str) -> None:
    from proactive_assets.core.sources.cloudtrail import list_day
    from proactive_assets.core.storage import S3Store

    bucket = SAMPLE["CloudTrailBucket"]
    fake = _cloudtrail_bucket(bucket, trail_prefix)
    uri = f"s3://{bucket}/{trail_prefix}".rstrip("/")
    store = S3Store(uri, client=fake)
    objects = list_day(store, date(2024, 6, 20)).objects
    assert len(objects) == 3  # both layouts, both regions; digests and insights are not listed
    for obj in objects:
        store.get(obj.info.key)
        with tempfile.TemporaryDirectory() as tmp:
            store.get_file(obj.info.key, str(Path(tmp) / "f"))
    doc = policy(policy_file, CloudTrailPrefix=trail_prefix)
    _assert_all_allowed(doc, fake.iam_requests(), policy_file)

    if policy_file == "cloudtrail-read.json":
        digest = f"arn:aws:s3:::{bucket}/{trail_prefix}AWSLogs/111122223333/CloudTrail-Digest/eu-west-1/x.json.gz"
        assert not allowed(doc, "s3:GetObject", digest)
        assert not allowed(doc, "s3:GetObject", f"arn:aws:s3:::{bucket}/elsewhere/file")
        assert not allowed(doc, "s3:ListBucket", f"arn:aws:s3:::{bucket}", {"s3:prefix": "elsewhere/"})
        for write in ("s3:PutObject", "s3:DeleteObject"):
            assert not allowed(doc, write, objects[0].uri.replace("s3://", "arn:aws:s3:::"))


def test_cloudtrail_kms_decrypt_only_through_s3() -> None:
    doc = policy("cloudtrail-kms-decrypt.json")
    key = SAMPLE["KmsKeyArn"]
    assert allowed(doc, "kms:Decrypt", key, {"kms:ViaService": "s3.us-east-1.amazonaws.com"})
    assert not allowed(doc, "kms:Decrypt", key, {})
    assert not allowed(doc, "kms:Decrypt", key, {"kms:ViaService": "lambda.us-east-1.amazonaws.com"})


@pytest.mark.parametrize("policy_file", ["warehouse-readwrite.json", "run-task-role.json"])
def test_warehouse_writes_reads_replaces_and_ledger_are_allowed(policy_file: str) -> None:
    import pyarrow as pa

    from proactive_assets.core.publish import ObjectStoreLedger
    from proactive_assets.core.storage import S3Store
    from proactive_assets.core.warehouse import Warehouse

    bucket, prefix = SAMPLE["WarehouseBucket"], SAMPLE["WarehousePrefix"]
    stale = (bucket, f"{prefix}/learning_set/day=2024-06-20/old.parquet")
    fake = FakeS3({stale: b"stale"})
    store = S3Store(f"s3://{bucket}/{prefix}", client=fake)
    warehouse = Warehouse(store)
    warehouse.write_tables(
        "learning_set", "2024-06-20", {"pairs": pa.table({"entity": ["a"], "source_ip": ["1.2.3.4"]})}
    )
    assert stale not in fake.objects  # the stale file of an earlier run was deleted
    assert warehouse.read_table("learning_set", "2024-06-20", "pairs").num_rows == 1
    assert not warehouse.has("learning_set", "2024-06-21", "pairs")
    assert store.list_prefixes("learning_set/") == ["learning_set/day=2024-06-20/"]
    with warehouse.partition("learning_set", "2024-06-21") as out:  # files are read through the manifest
        out.write_bytes("learning.csv", b"a,1.2.3.4\n")
    assert warehouse.read_bytes("learning_set", "2024-06-21", "learning.csv")
    ledger = ObjectStoreLedger(store)
    assert not ledger.already_published("alert-1", "sns:arn")
    ledger.record("alert-1", "sns:arn", "message-1")
    assert ledger.get("alert-1", "sns:arn")["message_id"] == "message-1"
    assert {op for op, _ in fake.calls} == set(S3_OPERATION_ACTIONS)  # every storage operation ran

    doc = policy(policy_file)
    _assert_all_allowed(doc, fake.iam_requests(), policy_file)
    # A missing key (ledger lookup, Warehouse.has) must be a 404, not a 403: S3 answers 404 only
    # to callers allowed s3:ListBucket, and that check carries no s3:prefix.
    assert allowed(doc, "s3:ListBucket", f"arn:aws:s3:::{bucket}", {})
    if policy_file == "warehouse-readwrite.json":
        assert not allowed(doc, "s3:GetObject", f"arn:aws:s3:::{bucket}/other/file")
        assert not allowed(doc, "s3:DeleteObject", f"arn:aws:s3:::{bucket}/other/file")
        assert not allowed(doc, "s3:ListBucket", f"arn:aws:s3:::{bucket}", {"s3:prefix": "other/"})


@pytest.mark.parametrize("policy_file", ["security-lake-athena-read.json", "run-task-role.json"])
def test_security_lake_listing_and_reading_are_allowed(policy_file: str) -> None:
    from proactive_assets.core.sources.security_lake import list_day as list_security_lake_day
    from proactive_assets.core.storage import S3Store

    bucket = SAMPLE["SecurityLakeBucket"]
    keys = [
        "aws/CLOUD_TRAIL_MGMT/2.0/region=eu-west-1/accountId=111122223333/eventDay=20240620/a.gz.parquet",
        "aws/VPC_FLOW/1.0/region=eu-west-1/accountId=111122223333/eventDay=20240620/b.gz.parquet",
        "aws/SH_FINDINGS/2.0/region=eu-west-1/accountId=111122223333/eventDay=20240620/c.gz.parquet",
        "ext/CUSTOM_SOURCE/1.0/region=eu-west-1/accountId=111122223333/eventDay=20240620/d.parquet",
    ]
    fake = FakeS3({(bucket, key): b"PAR1" for key in keys})
    store = S3Store(f"s3://{bucket}", client=fake)
    listing = list_security_lake_day(store, date(2024, 6, 20))
    assert listing.objects
    for info in listing.objects:
        store.get(info.key)
    _assert_all_allowed(policy(policy_file), fake.iam_requests(), policy_file)


def test_athena_path_queries_the_lake_tables_and_manages_its_unload_location() -> None:
    """defs/athena.py: UNLOAD through the workgroup, then list, read and delete what it wrote."""
    doc = policy("security-lake-athena-read.json")
    workgroup = f"arn:aws:athena:{REGION}:{ACCOUNT}:workgroup/{SAMPLE['AthenaWorkgroup']}"
    for action in ("athena:StartQueryExecution", "athena:GetQueryExecution", "athena:GetQueryResults"):
        assert allowed(doc, action, workgroup), action
    assert not allowed(doc, "athena:StartQueryExecution", f"arn:aws:athena:{REGION}:{ACCOUNT}:workgroup/other")
    database = SAMPLE["SecurityLakeDatabase"]
    table = f"arn:aws:glue:{REGION}:{ACCOUNT}:table/{database}/amazon_security_lake_table_eu_west_1_vpc_flow_2_0"
    for action in ("glue:GetDatabase", "glue:GetTable", "glue:GetPartitions"):
        for resource in (f"arn:aws:glue:{REGION}:{ACCOUNT}:catalog", table):
            assert allowed(doc, action, resource), (action, resource)
    assert not allowed(doc, "glue:GetTable", f"arn:aws:glue:{REGION}:{ACCOUNT}:table/other_db/t")
    assert allowed(doc, "lakeformation:GetDataAccess", "*")
    bucket, prefix = SAMPLE["AthenaResultsBucket"], SAMPLE["AthenaResultsPrefix"]
    unload = f"{prefix}/proactive-unload/2024-06-20/run-1/VPC_FLOW_2.0/"
    assert allowed(doc, "s3:ListBucket", f"arn:aws:s3:::{bucket}", {"s3:prefix": unload})
    for action in ("s3:PutObject", "s3:GetObject", "s3:DeleteObject"):
        assert allowed(doc, action, f"arn:aws:s3:::{bucket}/{unload}part-0.parquet"), action
        assert not allowed(doc, action, f"arn:aws:s3:::{bucket}/elsewhere/part-0.parquet"), action
    assert allowed(doc, "s3:GetBucketLocation", f"arn:aws:s3:::{bucket}")


# ------------------------------------------------------------------------ SageMaker (from source)

# Operation -> (IAM action, resource type of the ARN it is authorised on).
SAGEMAKER_OPERATIONS = {
    "create_training_job": ("sagemaker:CreateTrainingJob", "training-job"),
    "describe_training_job": ("sagemaker:DescribeTrainingJob", "training-job"),
    "stop_training_job": ("sagemaker:StopTrainingJob", "training-job"),
    "create_model": ("sagemaker:CreateModel", "model"),
    "describe_model": ("sagemaker:DescribeModel", "model"),
    "create_endpoint_config": ("sagemaker:CreateEndpointConfig", "endpoint-config"),
    "describe_endpoint_config": ("sagemaker:DescribeEndpointConfig", "endpoint-config"),
    "create_endpoint": ("sagemaker:CreateEndpoint", "endpoint"),
    "update_endpoint": ("sagemaker:UpdateEndpoint", "endpoint"),
    "describe_endpoint": ("sagemaker:DescribeEndpoint", "endpoint"),
    "delete_endpoint": ("sagemaker:DeleteEndpoint", "endpoint"),
    "invoke_endpoint": ("sagemaker:InvokeEndpoint", "endpoint"),
    "create_transform_job": ("sagemaker:CreateTransformJob", "transform-job"),
    "describe_transform_job": ("sagemaker:DescribeTransformJob", "transform-job"),
}
# S3 calls of the backend on the artifacts location.
ARTIFACT_S3_OPERATIONS = {
    "upload_fileobj": "s3:PutObject",
    "list_objects_v2": "s3:ListBucket",
    "get_object": "s3:GetObject",
}


def _backend_source() -> str:
    package = ROOT / "proactive_assets" / "core" / "backends" / "sagemaker"
    return "\n".join(path.read_text() for path in sorted(package.glob("*.py")))


def test_the_sagemaker_maps_cover_every_operation_the_backend_calls() -> None:
    source = _backend_source()
    called = set(re.findall(r"\b(?:sagemaker_client|runtime_client|self\.sagemaker|self\.runtime)\.(\w+)\(", source))
    assert called, "no SageMaker call found: has the backend been renamed?"
    assert called <= set(SAGEMAKER_OPERATIONS), f"unmapped SageMaker calls: {called - set(SAGEMAKER_OPERATIONS)}"
    s3_called = set(re.findall(r"\b(?:s3_client|self\.s3)\.(\w+)\(", source)) - {"get_paginator"}
    s3_called |= set(re.findall(r'get_paginator\("(\w+)"\)', source))
    assert s3_called <= set(ARTIFACT_S3_OPERATIONS), f"unmapped S3 calls: {s3_called - set(ARTIFACT_S3_OPERATIONS)}"


def _sagemaker_names() -> dict[str, str]:
    from proactive_assets.core.backends.sagemaker import jobs as smb

    job = smb.make_resource_name(smb.DEFAULT_NAME_PREFIX, "sm-0123456789ab")
    return {
        "training-job": job,
        "model": job,  # the model and its endpoint config are named after the job
        "endpoint-config": job,
        "endpoint": smb.DEFAULT_ENDPOINT_NAME,
        "transform-job": smb.make_resource_name(f"{smb.DEFAULT_NAME_PREFIX}-score", job[-20:]),
    }


def _sagemaker_arn(kind: str, name: str) -> str:
    return f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:{kind}/{name.lower()}"  # SageMaker ARNs are lower case


@pytest.mark.parametrize("policy_file", ["sagemaker-orchestration.json", "run-task-role.json"])
def test_every_sagemaker_call_is_allowed_on_the_backends_resource_names(policy_file: str) -> None:
    doc = policy(policy_file)
    names = _sagemaker_names()
    for operation, (action, kind) in SAGEMAKER_OPERATIONS.items():
        assert allowed(doc, action, _sagemaker_arn(kind, names[kind])), f"{operation} -> {action}"
    # Resources created with tags (the training job carries proactive:version).
    for kind in ("training-job", "endpoint"):
        assert allowed(doc, "sagemaker:AddTags", _sagemaker_arn(kind, names[kind]))
    # Resources of other applications are out of reach.
    assert not allowed(doc, "sagemaker:DeleteEndpoint", _sagemaker_arn("endpoint", "someone-elses-endpoint"))
    assert not allowed(doc, "sagemaker:InvokeEndpoint", _sagemaker_arn("endpoint", "someone-elses-endpoint"))

    role = f"arn:aws:iam::{ACCOUNT}:role/{SAMPLE['SageMakerRoleName']}"
    assert allowed(doc, "iam:PassRole", role, {"iam:PassedToService": "sagemaker.amazonaws.com"})
    assert not allowed(doc, "iam:PassRole", role, {"iam:PassedToService": "ec2.amazonaws.com"})
    assert not allowed(
        doc, "iam:PassRole", f"arn:aws:iam::{ACCOUNT}:role/admin", {"iam:PassedToService": "sagemaker.amazonaws.com"}
    )


def _artifact_keys() -> dict[str, str]:
    """Where the backend and SageMaker read and write, built with the backend's own helpers."""
    from proactive_assets.core.backends.sagemaker import training_data as smb

    artifacts = f"s3://{SAMPLE['ArtifactsBucket']}/{SAMPLE['ArtifactsPrefix']}"
    names = _sagemaker_names()
    job, transform = names["training-job"], names["transform-job"]
    data = smb.join_s3_uri(artifacts, "training-data", job)
    transform_prefix = smb.join_s3_uri(artifacts, "transform", transform)
    uris = {
        "train": smb.join_s3_uri(data, "train.csv"),
        "validation": smb.join_s3_uri(data, "validation.csv"),
        "model": smb.join_s3_uri(artifacts, "models", job, "output", "model.tar.gz"),
        "transform_input": smb.join_s3_uri(transform_prefix, "input", "pairs.csv"),
        "transform_output_prefix": smb.join_s3_uri(transform_prefix, "output") + "/",
        "transform_output": smb.join_s3_uri(transform_prefix, "output", "pairs.csv.out"),
    }
    return {name: smb.parse_s3_uri(uri)[1] for name, uri in uris.items()}


def _object(key: str) -> str:
    return f"arn:aws:s3:::{SAMPLE['ArtifactsBucket']}/{key}"


ARTIFACTS_BUCKET_ARN = f"arn:aws:s3:::{SAMPLE['ArtifactsBucket']}"


@pytest.mark.parametrize("policy_file", ["sagemaker-orchestration.json", "run-task-role.json"])
def test_backend_artifact_reads_and_writes_are_allowed(policy_file: str) -> None:
    doc = policy(policy_file)
    keys = _artifact_keys()
    for name in ("train", "validation", "transform_input"):
        assert allowed(doc, ARTIFACT_S3_OPERATIONS["upload_fileobj"], _object(keys[name])), name
    assert allowed(doc, "s3:ListBucket", ARTIFACTS_BUCKET_ARN, {"s3:prefix": keys["transform_output_prefix"]})
    assert allowed(doc, "s3:GetObject", _object(keys["transform_output"]))
    if policy_file == "sagemaker-orchestration.json":
        assert not allowed(doc, "s3:PutObject", _object(keys["model"]))  # only SageMaker writes models


def test_sagemaker_execution_role_reads_inputs_writes_outputs_pulls_image_and_logs() -> None:
    from proactive_assets.core.backends.sagemaker.jobs import fallback_ipinsights_image_uri

    doc = policy("sagemaker-execution-role.json")
    keys = _artifact_keys()
    for name in ("train", "validation", "transform_input"):
        assert allowed(doc, "s3:ListBucket", ARTIFACTS_BUCKET_ARN, {"s3:prefix": keys[name]}), name  # S3Prefix channels
        assert allowed(doc, "s3:GetObject", _object(keys[name])), name
    assert allowed(doc, "s3:PutObject", _object(keys["model"]))
    assert allowed(doc, "s3:GetObject", _object(keys["model"]))  # hosting and batch transform load it
    assert allowed(doc, "s3:PutObject", _object(keys["transform_output"]))
    assert not allowed(doc, "s3:PutObject", _object(keys["train"]))
    assert not allowed(doc, "s3:GetObject", f"arn:aws:s3:::{SAMPLE['WarehouseBucket']}/{SAMPLE['WarehousePrefix']}/x")

    image = fallback_ipinsights_image_uri(REGION)  # 438346466558.dkr.ecr.eu-west-1.amazonaws.com/ipinsights:1
    registry, repository = image.split("/", 1)
    image_account = registry.split(".", 1)[0]
    assert image_account == SAMPLE["IpInsightsImageAccount"]
    repository_arn = f"arn:aws:ecr:{REGION}:{image_account}:repository/{repository.split(':')[0]}"
    for action in ("ecr:BatchCheckLayerAvailability", "ecr:GetDownloadUrlForLayer", "ecr:BatchGetImage"):
        assert allowed(doc, action, repository_arn), action
    assert allowed(doc, "ecr:GetAuthorizationToken", "*")

    stream = f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:/aws/sagemaker/TrainingJobs:log-stream:job/algo-1-1718841600"
    assert allowed(doc, "logs:PutLogEvents", stream)
    assert allowed(
        doc, "logs:CreateLogStream", f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:/aws/sagemaker/TrainingJobs"
    )
    assert allowed(doc, "cloudwatch:PutMetricData", "*", {"cloudwatch:namespace": "/aws/sagemaker/TrainingJobs"})
    assert not allowed(doc, "cloudwatch:PutMetricData", "*", {"cloudwatch:namespace": "Other"})


# ----------------------------------------------------------------------------- SNS and SQS


def test_sns_publish_is_allowed_on_the_topic() -> None:
    from proactive_assets.core.publish import SnsSink, render_alert

    source = (ROOT / "proactive_assets" / "core" / "publish.py").read_text()
    assert set(re.findall(r"self\.client\.(\w+)\(", source)) == {"publish"}

    class FakeSns:
        def __init__(self) -> None:
            self.calls: list[dict[str, Any]] = []

        def publish(self, **kwargs: Any) -> dict[str, str]:
            self.calls.append(kwargs)
            return {"MessageId": "m-1"}

    topic = f"arn:aws:sns:{REGION}:{ACCOUNT}:{SAMPLE['TopicName']}"
    sns = FakeSns()
    SnsSink(sns, topic).publish(
        render_alert({"entity": "arn:aws:iam::1:user/a", "source_ip": "192.0.2.1"}, "2024-06-20")
    )
    for name in ("sns-publish.json", "run-task-role.json"):
        doc = policy(name)
        assert all(allowed(doc, "sns:Publish", call["TopicArn"]) for call in sns.calls), name
        assert not allowed(doc, "sns:Publish", f"arn:aws:sns:{REGION}:{ACCOUNT}:another-topic")


SQS_OPERATION_ACTIONS = {
    "receive_message": "sqs:ReceiveMessage",
    "delete_message": "sqs:DeleteMessage",
    "delete_message_batch": "sqs:DeleteMessage",  # authorised per entry as DeleteMessage
    "change_message_visibility": "sqs:ChangeMessageVisibility",
    "get_queue_attributes": "sqs:GetQueueAttributes",
}


def test_sensor_calls_are_allowed_for_the_code_location() -> None:
    """Sensors run in the code server: SQS calls on the subscriber queue, CloudTrail listing."""
    source = "\n".join(
        path.read_text() for path in sorted((ROOT / "proactive_assets" / "defs" / "sensors").glob("*.py"))
    )
    called = set(re.findall(r"\bclient\.(\w+)\(", source))
    assert called and called <= set(SQS_OPERATION_ACTIONS), f"unmapped SQS calls: {called - set(SQS_OPERATION_ACTIONS)}"
    queue = f"arn:aws:sqs:{REGION}:{ACCOUNT}:{SAMPLE['QueueName']}"
    for name in ("sqs-subscriber.json", "code-location-task-role.json"):
        doc = policy(name)
        for operation in called:
            assert allowed(doc, SQS_OPERATION_ACTIONS[operation], queue), f"{name}: {operation}"
        assert not allowed(doc, "sqs:ReceiveMessage", f"arn:aws:sqs:{REGION}:{ACCOUNT}:other-queue")
    # cloudtrail_s3_sensor lists "<trail prefix>AWSLogs/" through dagster_aws.s3.sensor.get_objects.
    assert "get_objects(" in source and "AWSLogs/" in source
    for trail_prefix in ("", "org-trail/"):
        doc = policy("code-location-task-role.json", CloudTrailPrefix=trail_prefix)
        bucket = f"arn:aws:s3:::{SAMPLE['CloudTrailBucket']}"
        assert allowed(doc, "s3:ListBucket", bucket, {"s3:prefix": f"{trail_prefix}AWSLogs/"})
        assert not allowed(doc, "s3:GetObject", f"{bucket}/{trail_prefix}AWSLogs/111122223333/CloudTrail/x.json.gz")


# --------------------------------------------------------------------------- combined policies


def _grants(doc: dict[str, Any]) -> set[tuple[str, str, str]]:
    return {
        (action, resource, json.dumps(statement.get("Condition", {}), sort_keys=True))
        for statement in doc["Statement"]
        for action in as_list(statement["Action"])
        for resource in as_list(statement["Resource"])
    }


def test_combined_role_policies_are_exactly_their_parts() -> None:
    run = _grants(policy("run-task-role.json"))
    parts = set()
    for name in (
        "cloudtrail-read.json",
        "warehouse-readwrite.json",
        "sagemaker-orchestration.json",
        "sns-publish.json",
    ):
        parts |= _grants(policy(name))
    lake = policy("security-lake-athena-read.json")
    parts |= _grants({"Statement": [s for s in lake["Statement"] if s["Sid"].startswith("SecurityLake")]})
    assert run == parts

    code = _grants(policy("code-location-task-role.json"))
    trail = policy("cloudtrail-read.json")
    listing = _grants({"Statement": [s for s in trail["Statement"] if s["Action"] == "s3:ListBucket"]})
    assert code == listing | _grants(policy("sqs-subscriber.json"))


# ------------------------------------------------------------------------ ECS run launcher role


def _instance_yaml() -> dict[str, Any]:
    return yaml.safe_load((DEPLOY / "dagster.yaml").read_text())


def test_daemon_can_launch_watch_and_stop_run_tasks() -> None:
    from dagster._core.remote_origin import GrpcServerCodeLocationOrigin, RemoteJobOrigin, RemoteRepositoryOrigin
    from dagster_aws.ecs.utils import get_task_definition_family

    doc = policy("dagster-daemon-webserver.json")
    launcher = _instance_yaml()["run_launcher"]["config"]
    origin = RemoteJobOrigin(
        RemoteRepositoryOrigin(
            GrpcServerCodeLocationOrigin(host=SAMPLE["CodeServerHost"], port=4000, location_name="proactive_assets"),
            "__repository__",
        ),
        "proactive_daily_job",
    )
    family = get_task_definition_family(launcher["task_definition_prefix"], origin)
    cluster = f"arn:aws:ecs:{REGION}:{ACCOUNT}:cluster/{SAMPLE['EcsCluster']}"
    task_definition = f"arn:aws:ecs:{REGION}:{ACCOUNT}:task-definition/{family}:7"
    task = f"arn:aws:ecs:{REGION}:{ACCOUNT}:task/{SAMPLE['EcsCluster']}/0123456789abcdef0123456789abcdef"
    assert allowed(doc, "ecs:RunTask", task_definition, {"ecs:cluster": cluster})
    assert not allowed(doc, "ecs:RunTask", task_definition, {"ecs:cluster": cluster.replace("proactive", "prod")})
    assert not allowed(
        doc, "ecs:RunTask", f"arn:aws:ecs:{REGION}:{ACCOUNT}:task-definition/other:1", {"ecs:cluster": cluster}
    )
    assert allowed(doc, "ecs:TagResource", task, {"ecs:CreateAction": "RunTask"})
    for action in ("ecs:DescribeTasks", "ecs:StopTask"):
        assert allowed(doc, action, task), action
    for action in ("ecs:RegisterTaskDefinition", "ecs:DescribeTaskDefinition", "ec2:DescribeNetworkInterfaces"):
        assert allowed(doc, action, "*"), action
    for role in (SAMPLE["RunTaskRoleName"], SAMPLE["EcsExecutionRoleName"]):
        arn = f"arn:aws:iam::{ACCOUNT}:role/{role}"
        assert allowed(doc, "iam:PassRole", arn, {"iam:PassedToService": "ecs-tasks.amazonaws.com"})
        assert not allowed(doc, "iam:PassRole", arn, {"iam:PassedToService": "sagemaker.amazonaws.com"})
    stream = f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:{SAMPLE['LogGroup']}:log-stream:{family}/run/abc"
    assert allowed(doc, "logs:GetLogEvents", stream)
    # The daemon never touches the data.
    assert not allowed(doc, "s3:GetObject", f"arn:aws:s3:::{SAMPLE['WarehouseBucket']}/{SAMPLE['WarehousePrefix']}/x")


def test_task_execution_role_reads_only_the_database_secret() -> None:
    doc = policy("ecs-task-execution.json")
    assert allowed(doc, "secretsmanager:GetSecretValue", SAMPLE["DbSecretArn"])
    assert not allowed(doc, "secretsmanager:GetSecretValue", SAMPLE["DbSecretArn"] + "-other")


# ------------------------------------------------------------------- instance and workspace YAML


def _env_names_read_by_the_project() -> set[str]:
    from proactive_assets.config import Settings

    # ECS sets AWS_REGION/AWS_DEFAULT_REGION in every task and the image sets DAGSTER_HOME;
    # PROACTIVE_LOG_LEVEL only sets what the CLI prints.
    names = Settings.env_names() - {"AWS_REGION", "AWS_DEFAULT_REGION", "DAGSTER_HOME", "PROACTIVE_LOG_LEVEL"}
    assert {"PROACTIVE_CLOUDTRAIL_URI", "PROACTIVE_WAREHOUSE", "PROACTIVE_START_DATE"} <= names
    return names


def _instance_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (
        "DAGSTER_PG_HOST",
        "DAGSTER_PG_USER",
        "DAGSTER_PG_PASSWORD",
        "DAGSTER_PG_DB",
        "DAGSTER_PG_PASSWORD_SECRET_ARN",
        "PROACTIVE_RUN_TASK_ROLE_ARN",
        "PROACTIVE_ECS_EXECUTION_ROLE_ARN",
        "PROACTIVE_LOG_GROUP",
        "DAGSTER_CODE_SERVER_HOST",
    ):
        monkeypatch.setenv(name, f"test-{name.lower()}")
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)


def test_dagster_yaml_is_a_valid_instance_on_postgres_with_the_ecs_run_launcher(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from dagster._config import process_config
    from dagster._core.instance.config import dagster_instance_config
    from dagster._core.instance.ref import configurable_storage_data
    from dagster._core.run_coordinator import QueuedRunCoordinator
    from dagster._serdes.config_class import ConfigurableClassData
    from dagster_aws.ecs import EcsRunLauncher

    raw = _instance_yaml()
    (tmp_path / "dagster.yaml").write_text((DEPLOY / "dagster.yaml").read_text())
    config, custom_instance_class = dagster_instance_config(str(tmp_path))  # Dagster's own schema
    assert custom_instance_class is None

    postgres = config["storage"]["postgres"]["postgres_db"]
    for field in ("hostname", "username", "password", "db_name"):
        assert set(postgres[field]) == {"env"}, f"{field} must come from the environment"
    storage = configurable_storage_data(config["storage"], {})[0]
    assert (storage.module_name, storage.class_name) == ("dagster_postgres", "DagsterPostgresStorage")

    launcher = raw["run_launcher"]
    assert (launcher["module"], launcher["class"]) == ("dagster_aws.ecs", "EcsRunLauncher")
    _instance_env(monkeypatch)
    processed = process_config(EcsRunLauncher.config_type(), launcher["config"])
    assert processed.success, processed.errors
    ecs = EcsRunLauncher(**processed.value)  # no AWS call: the task definition is built per run
    assert ecs.task_role_arn == "test-proactive_run_task_role_arn"
    assert ecs.secrets_tags == []  # no secretsmanager:ListSecrets needed
    assert [s["name"] for s in ecs.secrets] == ["DAGSTER_PG_PASSWORD"]

    coordinator = raw["run_coordinator"]
    data = ConfigurableClassData(
        coordinator["module"], coordinator["class"], yaml.safe_dump(coordinator.get("config", {}))
    )
    assert isinstance(data.rehydrate(QueuedRunCoordinator), QueuedRunCoordinator)
    assert 0 < config["concurrency"]["runs"]["max_concurrent_runs"] <= 10
    assert config["telemetry"]["enabled"] is False
    assert config["run_retries"]["enabled"] is True and config["run_retries"]["max_retries"] > 0
    assert config["run_monitoring"]["enabled"] is True

    # Run tasks get every setting the project reads, and the instance's own settings.
    forwarded = set(launcher["config"]["env_vars"])
    missing = _env_names_read_by_the_project() - forwarded
    assert not missing, f"dagster.yaml env_vars does not forward {sorted(missing)} to run tasks"
    assert {"DAGSTER_PG_HOST", "DAGSTER_PG_USER", "DAGSTER_PG_DB", "AWS_DEFAULT_REGION"} <= forwarded

    # The daemon policy's RunTask grant follows the task definition prefix.
    run_task = next(s for s in policy("dagster-daemon-webserver.json")["Statement"] if s["Action"] == "ecs:RunTask")
    assert run_task["Resource"].endswith(f":task-definition/{launcher['config']['task_definition_prefix']}_*:*")


def test_workspace_yaml_points_at_the_grpc_code_location(monkeypatch: pytest.MonkeyPatch) -> None:
    from dagster._core.workspace.config_schema import process_workspace_config

    _instance_env(monkeypatch)
    result = process_workspace_config(yaml.safe_load((DEPLOY / "workspace.yaml").read_text()))
    assert result.success, result.errors
    (entry,) = result.value["load_from"]
    server = entry["grpc_server"]
    assert server["host"] == "test-dagster_code_server_host"
    assert server["port"] == 4000 and server["location_name"] == "proactive_assets"


# --------------------------------------------------------- Dockerfile, ECS task definitions, Helm

GRPC_COMMAND = ["dagster", "api", "grpc", "-h", "0.0.0.0", "-p", "4000", "-m", "proactive_assets.defs.definitions"]


def test_dockerfile_builds_the_code_location_image() -> None:
    import dagster_aws

    text = (DEPLOY / "Dockerfile").read_text()
    assert re.search(r"^FROM python:3\.11-slim$", text, flags=re.MULTILINE)
    # The C scanner is compiled in a build stage and the image refuses to build without it.
    assert "pip wheel --no-deps --wheel-dir /wheels ." in text
    assert "import proactive_assets.core.sources._cloudtrail_scan" in text
    cmd = re.search(r"^CMD (\[.*\])$", text, flags=re.MULTILINE)
    assert cmd and json.loads(cmd.group(1)) == GRPC_COMMAND
    assert "COPY deploy/dagster.yaml deploy/workspace.yaml /opt/dagster/dagster_home/" in text
    assert "DAGSTER_HOME=/opt/dagster/dagster_home" in text
    # dagster-postgres is versioned with the other integration libraries (0.x beside dagster 1.x).
    pin = re.search(r'"dagster-postgres>=0\.(\d+),<0\.(\d+)"', text)
    minor = int(dagster_aws.__version__.split(".")[1])
    assert pin and (int(pin.group(1)), int(pin.group(2))) == (minor, minor + 1)


def _task_definition(name: str) -> dict[str, Any]:
    return json.loads(render((ECS / name).read_text()))


def _environment(container: dict[str, Any]) -> dict[str, str]:
    return {item["name"]: item["value"] for item in container.get("environment", [])}


@pytest.mark.parametrize("name", sorted(p.name for p in ECS.glob("*.json")))
def test_ecs_task_definitions_are_valid_register_task_definition_input(name: str) -> None:
    import botocore.session
    from botocore.validate import validate_parameters

    model = botocore.session.get_session().get_service_model("ecs")
    validate_parameters(_task_definition(name), model.operation_model("RegisterTaskDefinition").input_shape)


def test_ecs_task_definitions_agree_with_the_instance_and_the_image() -> None:
    dagster = _task_definition("dagster-task-definition.json")
    code = _task_definition("code-location-task-definition.json")
    containers = {c["name"]: c for c in dagster["containerDefinitions"]}
    assert set(containers) == {"webserver", "daemon"}
    assert containers["daemon"]["command"][:2] == ["dagster-daemon", "run"]
    assert containers["webserver"]["command"][0] == "dagster-webserver"
    assert dagster["taskRoleArn"].endswith(f":role/{SAMPLE['DagsterTaskRoleName']}")

    forwarded = set(_instance_yaml()["run_launcher"]["config"]["env_vars"])
    daemon_env = _environment(containers["daemon"])
    missing = forwarded - set(daemon_env)
    assert not missing, f"the daemon must define every env var it forwards to runs: {sorted(missing)}"
    secrets = {s["name"] for s in containers["daemon"]["secrets"]}
    assert "DAGSTER_PG_PASSWORD" in secrets
    assert daemon_env["PROACTIVE_RUN_TASK_ROLE_ARN"].endswith(f":role/{SAMPLE['RunTaskRoleName']}")
    assert daemon_env["DAGSTER_CODE_SERVER_HOST"] == SAMPLE["CodeServerHost"]

    (server,) = code["containerDefinitions"]
    assert server["command"] == GRPC_COMMAND
    assert [p["containerPort"] for p in server["portMappings"]] == [4000]
    server_env = _environment(server)
    assert server_env["DAGSTER_CURRENT_IMAGE"] == server["image"] == SAMPLE["ImageUri"]
    assert not _env_names_read_by_the_project() - set(server_env)
    assert code["taskRoleArn"].endswith(f":role/{SAMPLE['CodeLocationTaskRoleName']}")
    # Both tasks point the project at the same places.
    for key in ("PROACTIVE_CLOUDTRAIL_URI", "PROACTIVE_WAREHOUSE", "SNS_TOPIC_ARN", "PROACTIVE_SQS_QUEUE_URL"):
        assert server_env[key] == daemon_env[key], key
    assert daemon_env["PROACTIVE_WAREHOUSE"] == f"s3://{SAMPLE['WarehouseBucket']}/{SAMPLE['WarehousePrefix']}"


def test_helm_values_deploy_the_same_code_location_on_postgres() -> None:
    values = yaml.safe_load((DEPLOY / "k8s" / "values.yaml").read_text())
    (deployment,) = values["dagster-user-deployments"]["deployments"]
    assert deployment["dagsterApiGrpcArgs"] == ["-m", "proactive_assets.defs.definitions"]
    assert values["runLauncher"]["type"] == "K8sRunLauncher"
    assert values["postgresql"]["enabled"] is False and values["generatePostgresqlPasswordSecret"] is False
    assert values["telemetry"]["enabled"] is False
    assert values["dagsterDaemon"]["runCoordinator"]["type"] == "QueuedRunCoordinator"
