"""The production files under deploy/ (see deploy/README.md), checked without AWS.

The IAM policies exist in one place only, deploy/cloudformation/proactive-assets.yaml; they are
rendered from it (deploy/cloudformation/render.py evaluates the intrinsic functions for sample
parameters) and then:

* checked for grammar and least privilege: no wildcard actions, ``"Resource": "*"`` only for
  actions that support nothing narrower, no ``...IfExists`` condition, size limits;
* evaluated against every AWS operation the code performs, for the role that performs it, with
  negative cases: the S3 calls are *recorded* while the real listing, warehouse and ledger code
  runs against an in-memory bucket; the SageMaker, SNS and SQS calls are taken from the source
  (an explicit operation -> IAM action map, so a new call fails here until the policy and the
  map are updated);
* per deployment choice (local or SageMaker model, batch or endpoint scoring, with or without
  Security Lake): the run role holds the rights of the parts that are switched on and no others.

The instance (``dagster.yaml``) and workspace files validate against Dagster's own schemas; the
template's ECS task definitions validate against the ECS API model in botocore and agree with
the Dockerfile, the instance, the Helm values and the settings the code reads. Source files are
found by what they define (searching the package), not by path, so modules can move.

None of this proves the stack works on real AWS (it has not been deployed); it proves the files
are well-formed and consistent with what the code does. cfn-lint: test_deploy_template.py.
"""

import functools
import importlib
import importlib.util
import io
import json
import re
import sys
import tempfile
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from botocore.exceptions import ClientError

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "proactive_assets"
DEPLOY = ROOT / "deploy"
TEMPLATE = DEPLOY / "cloudformation" / "proactive-assets.yaml"
README = DEPLOY / "README.md"


def _load_render() -> Any:
    spec = importlib.util.spec_from_file_location("proactive_deploy_render", DEPLOY / "cloudformation" / "render.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


render = _load_render()

REGION, ACCOUNT = "eu-west-1", "111122223333"
KMS_KEY = f"arn:aws:kms:{REGION}:{ACCOUNT}:key/1234abcd-12ab-34cd-56ef-1234567890ab"
LAKE_BUCKET = "aws-security-data-lake-eu-west-1-abcdefghijklmnopqrstuvwxyz12"
QUEUE_ARN = f"arn:aws:sqs:{REGION}:{ACCOUNT}:AmazonSecurityLake-1234-Main-Queue"
TRAIL_BUCKET = render.SAMPLE_PARAMETERS["CloudTrailBucket"]
IMAGE = render.SAMPLE_PARAMETERS["ImageUri"]

# Deployment choices the tests render the template for.
LOCAL: dict[str, str] = {}
BATCH = {"ModelBackend": "sagemaker"}
ENDPOINT = {"ModelBackend": "sagemaker", "SageMakerScoringMode": "endpoint"}
LAKE = {"SecurityLakeBucket": LAKE_BUCKET, "SecurityLakeQueueArn": QUEUE_ARN}
EVERYTHING = {
    **ENDPOINT,
    **LAKE,
    "SecurityLakeReadPath": "athena",
    "CloudTrailKmsKeyArn": KMS_KEY,
    "EnableEcsExec": "true",
}
SCENARIOS = {"local": LOCAL, "sagemaker-batch": BATCH, "sagemaker-endpoint": ENDPOINT, "everything": EVERYTHING}


@functools.cache
def _stack(items: tuple[tuple[str, str], ...]) -> Any:
    return render.Stack(dict(items), region=REGION, account=ACCOUNT)


def stack(**parameters: str) -> Any:
    """The template rendered for these parameters (and the sample values of the required ones)."""
    return _stack(tuple(sorted(parameters.items())))


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


# ----------------------------------------------------------- finding code by what it defines


@functools.cache
def _package_files() -> dict[Path, str]:
    return {path: path.read_text() for path in sorted(PACKAGE.rglob("*.py"))}


def source_defining(marker: str) -> str:
    """The text of the one module of the package that contains ``marker`` (e.g. ``class S3Store``)."""
    found = [path for path, text in _package_files().items() if marker in text]
    assert len(found) == 1, f"expected one module containing {marker!r}, found {[str(p) for p in found]}"
    return _package_files()[found[0]]


def _source(name: str) -> Any:
    """A log source module (the sources' shape is a contract: ``list_day``, ``object_day``, ``read``)."""
    return importlib.import_module(f"proactive_assets.core.sources.{name}")


def symbol(name: str) -> Any:
    """The function or class ``name`` from whichever module of the package defines it."""
    pattern = re.compile(rf"^(?:def|class) {re.escape(name)}\b", flags=re.MULTILINE)
    found = [path for path, text in _package_files().items() if pattern.search(text)]
    assert len(found) == 1, f"expected one module defining {name}, found {[str(p) for p in found]}"
    module = ".".join(found[0].relative_to(ROOT).with_suffix("").parts)
    return getattr(importlib.import_module(module), name)


# ------------------------------------------------------------------ a small policy evaluator


def _wildcard(pattern: str, value: str) -> bool:
    """IAM wildcard match: ``*`` any run of characters (``/`` and ``:`` included), ``?`` one."""
    regex = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.fullmatch(regex, value, flags=re.DOTALL) is not None


def _condition_holds(condition: dict[str, Any], context: dict[str, str]) -> bool:
    for operator, tests in condition.items():
        base = operator.removesuffix("IfExists")
        for key, expected in tests.items():
            wanted = [str(w) for w in as_list(expected)]
            if base == "Null":  # "true": the key must be absent; "false": present
                if (key not in context) != (wanted == ["true"]):
                    return False
                continue
            if key not in context:
                if operator.endswith("IfExists"):
                    continue
                return False
            actual = context[key]
            if base in ("StringEquals", "ArnEquals", "Bool"):
                ok = actual in wanted
            elif base in ("StringLike", "ArnLike"):
                ok = any(_wildcard(w, actual) for w in wanted)
            else:  # pragma: no cover - the grammar test only lets known operators through
                raise AssertionError(f"condition operator {operator} not understood")
            if not ok:
                return False
    return True


def _resource_matches(statement: dict[str, Any], resource: str) -> bool:
    if "NotResource" in statement:
        return not any(_wildcard(p, resource) for p in as_list(statement["NotResource"]))
    return any(_wildcard(p, resource) for p in as_list(statement["Resource"]))


def _action_matches(statement: dict[str, Any], action: str) -> bool:
    return any(_wildcard(p, action) for p in as_list(statement["Action"]))


def allowed(doc: dict[str, Any], action: str, resource: str, context: dict[str, str] | None = None) -> bool:
    """True if some Allow statement grants ``action`` on ``resource`` in ``context`` (identity policies use no Deny)."""
    return any(
        statement["Effect"] == "Allow"
        and _action_matches(statement, action)
        and _resource_matches(statement, resource)
        and _condition_holds(statement.get("Condition", {}), context or {})
        for statement in doc["Statement"]
    )


def denied(doc: dict[str, Any], action: str, resource: str, context: dict[str, str] | None = None) -> bool:
    """True if some Deny statement of a resource policy (``Principal: "*"``) refuses the request."""
    return any(
        statement["Effect"] == "Deny"
        and statement.get("Principal") == "*"
        and _action_matches(statement, action)
        and _resource_matches(statement, resource)
        and _condition_holds(statement.get("Condition", {}), context or {})
        for statement in doc["Statement"]
    )


def may_assume(trust: dict[str, Any], service: str, context: dict[str, str]) -> bool:
    """True if the trust policy lets ``service`` assume the role in ``context``."""
    return any(
        statement["Effect"] == "Allow"
        and service in as_list(statement["Principal"].get("Service", []))
        and "sts:AssumeRole" in as_list(statement["Action"])
        and _condition_holds(statement.get("Condition", {}), context)
        for statement in trust["Statement"]
    )


def test_evaluator_sanity() -> None:
    doc = {
        "Statement": [
            {
                "Effect": "Allow",
                "Action": "s3:ListBucket",
                "Resource": "arn:aws:s3:::b",
                "Condition": {"StringLike": {"s3:prefix": ["AWSLogs/*"]}},
            },
            {
                "Effect": "Allow",
                "Action": "s3:ListBucket",
                "Resource": "arn:aws:s3:::n",
                "Condition": {"Null": {"s3:prefix": "true"}},
            },
        ]
    }
    assert allowed(doc, "s3:ListBucket", "arn:aws:s3:::b", {"s3:prefix": "AWSLogs/"})
    assert not allowed(doc, "s3:ListBucket", "arn:aws:s3:::b", {"s3:prefix": "other/"})
    assert not allowed(doc, "s3:ListBucket", "arn:aws:s3:::b", {})
    assert not allowed(doc, "s3:ListBucket", "arn:aws:s3:::bb", {"s3:prefix": "AWSLogs/"})
    assert not allowed(doc, "s3:GetObject", "arn:aws:s3:::b", {"s3:prefix": "AWSLogs/"})
    assert allowed(doc, "s3:ListBucket", "arn:aws:s3:::n", {}) and not allowed(
        doc, "s3:ListBucket", "arn:aws:s3:::n", {"s3:prefix": "x"}
    )
    assert _wildcard("a/*/c/*", "a/x/y/c/z") and not _wildcard("a/*/c/*", "a/x/c-d/z")
    deny = {
        "Statement": [
            {"Effect": "Deny", "Principal": "*", "Action": "s3:PutObject", "NotResource": "arn:aws:s3:::b/w/*"}
        ]
    }
    assert denied(deny, "s3:PutObject", "arn:aws:s3:::b/x") and not denied(deny, "s3:PutObject", "arn:aws:s3:::b/w/x")


# --------------------------------------------------------------------------- one source


def test_the_template_is_the_only_copy_of_the_policies_and_task_definitions() -> None:
    assert not (DEPLOY / "iam").exists() and not (DEPLOY / "ecs").exists()
    copies = [
        path.relative_to(ROOT)
        for path in DEPLOY.rglob("*")
        if path.is_file()
        and path.suffix in {".json", ".yaml", ".yml", ".md"}
        and path != TEMPLATE
        and re.search(r'"?(Statement|containerDefinitions)"?\s*:', path.read_text())
    ]
    assert not copies, f"IAM statements or task definitions outside the template: {copies}"


# --------------------------------------------------------------------------- policy grammar

CONDITION_OPERATORS = {"StringEquals", "StringLike", "ArnEquals", "ArnLike", "Null", "Bool"}
# Actions with no resource-level permissions: "Resource": "*" is the only possible grant.
STAR_RESOURCE_ACTIONS = {
    "ecr:GetAuthorizationToken",
    "ecs:RegisterTaskDefinition",
    "ecs:DescribeTaskDefinition",
    "ec2:DescribeNetworkInterfaces",
    "lakeformation:GetDataAccess",
    "cloudwatch:PutMetricData",
    "ssmmessages:CreateControlChannel",
    "ssmmessages:CreateDataChannel",
    "ssmmessages:OpenControlChannel",
    "ssmmessages:OpenDataChannel",
}
MANAGED_POLICY_MAX_CHARS = 6144  # IAM quota, counted without whitespace
ROLE_MANAGED_POLICIES_MAX = 10  # IAM default quota of managed policies attached to one role


def _check_statements(where: str, doc: dict[str, Any], trust: bool) -> None:
    assert set(doc) <= {"Version", "Id", "Statement"} and doc["Version"] == "2012-10-17", where
    statements = doc["Statement"]
    assert isinstance(statements, list) and statements, where
    sids = [s.get("Sid") for s in statements]
    assert all(sid and re.fullmatch(r"[A-Za-z0-9]+", sid) for sid in sids), f"{where}: {sids}"
    assert len(set(sids)) == len(sids), f"duplicate Sid in {where}"
    for statement in statements:
        at = f"{where}:{statement['Sid']}"
        assert set(statement) <= {"Sid", "Effect", "Principal", "Action", "Resource", "Condition"}, at
        assert statement["Effect"] == "Allow", at
        actions = as_list(statement["Action"])
        assert actions and all(isinstance(a, str) for a in actions), at
        for action in actions:
            assert "*" not in action and "?" not in action, f"{at}: wildcard action {action}"
            assert re.fullmatch(r"[a-z0-9-]+:[A-Za-z0-9]+", action), f"{at}: {action}"
        for operator in statement.get("Condition", {}):
            assert operator in CONDITION_OPERATORS, f"{at}: condition operator {operator}"
        if trust:
            assert "Resource" not in statement and list(statement["Principal"]) == ["Service"], at
            assert actions == ["sts:AssumeRole"], at
            continue
        assert "Principal" not in statement, at
        resources = as_list(statement["Resource"])
        assert resources and all(isinstance(r, str) for r in resources), at
        for resource in resources:
            assert resource == "*" or resource.startswith("arn:aws:"), f"{at}: {resource}"
        if "*" in resources:
            assert resources == ["*"], at
            assert set(actions) <= STAR_RESOURCE_ACTIONS, f"{at}: Resource * for {actions}"


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_policy_grammar_and_least_privilege(scenario: str) -> None:
    s = stack(**SCENARIOS[scenario])
    policies = s.managed_policies()
    assert policies
    for logical_id, props in policies.items():
        _check_statements(logical_id, props["PolicyDocument"], trust=False)
        text = json.dumps(props["PolicyDocument"])
        assert "${" not in text, f"{logical_id}: unrendered substitution"
        assert len("".join(text.split())) <= MANAGED_POLICY_MAX_CHARS, (
            f"{logical_id} exceeds the managed policy size quota"
        )
        assert props["Roles"], f"{logical_id} is attached to no role"
    for role in s.roles():
        _check_statements(f"{role} trust", s.trust_policy(role), trust=True)
        assert "Policies" not in s.properties(role), f"{role}: policies belong in AWS::IAM::ManagedPolicy resources"
        assert len(s.role_policies(role)) <= ROLE_MANAGED_POLICIES_MAX, role


def test_every_identity_policy_of_the_template_is_attached_to_a_role() -> None:
    s = stack(**EVERYTHING)
    roles = {s.ref(role) for role in s.roles()}
    for logical_id, props in s.managed_policies().items():
        assert set(props["Roles"]) <= roles, logical_id


def test_ecs_task_roles_trust_only_ecs_tasks_of_the_account() -> None:
    s = stack(**EVERYTHING)
    ecs_roles = [r for r in s.roles() if r != "SageMakerExecutionRole"]
    assert set(ecs_roles) == {"DagsterTaskRole", "CodeLocationTaskRole", "RunTaskRole", "EcsExecutionRole"}
    trust = s.trust_policy("RunTaskRole")
    assert all(s.trust_policy(role) == trust for role in ecs_roles)  # one trust policy, four roles
    ours = {"aws:SourceAccount": ACCOUNT, "aws:SourceArn": f"arn:aws:ecs:{REGION}:{ACCOUNT}:task/proactive/abc"}
    assert may_assume(trust, "ecs-tasks.amazonaws.com", ours)
    assert not may_assume(trust, "ecs-tasks.amazonaws.com", {**ours, "aws:SourceAccount": "999999999999"})
    assert not may_assume(trust, "ecs-tasks.amazonaws.com", {"aws:SourceAccount": ACCOUNT})
    assert not may_assume(trust, "lambda.amazonaws.com", ours)


# ------------------------------------------------------- S3: record what the code really calls

# boto3 S3 client operations of the object store -> the IAM action that authorises each.
S3_OPERATION_ACTIONS = {
    "list_objects_v2": "s3:ListBucket",
    "get_object": "s3:GetObject",
    "put_object": "s3:PutObject",
    "delete_object": "s3:DeleteObject",
    "head_object": "s3:GetObject",
    "download_file": "s3:GetObject",
    "upload_file": "s3:PutObject",
}


def test_the_s3_map_covers_every_operation_the_object_store_calls() -> None:
    source = source_defining("class S3Store")
    called = set(re.findall(r"self\.client\.(\w+)", source)) - {"get_paginator"}
    called |= set(re.findall(r'get_paginator\("(\w+)"\)', source))
    assert called == set(S3_OPERATION_ACTIONS), "S3Store calls changed: update the map and the S3 policies"


class FakeS3:
    """An in-memory bucket with the boto3 methods the object store uses; records every call.

    ``iam_requests`` also records what S3 itself checks: a HeadObject of a missing key is
    answered 404 only when the caller may s3:ListBucket the bucket (with no prefix), 403 otherwise.
    """

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
        missing = (Bucket, Key) not in self.objects
        self.calls.append(("head_object", {"Bucket": Bucket, "Key": Key, "missing": missing}))
        if missing:
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
                continue
            requests.append((action, f"arn:aws:s3:::{kwargs['Bucket']}/{kwargs['Key']}", {}))
            if kwargs.get("missing"):  # the 404 the code relies on needs ListBucket, without a prefix
                requests.append(("s3:ListBucket", f"arn:aws:s3:::{kwargs['Bucket']}", {}))
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
def test_cloudtrail_listing_and_reading_are_allowed_and_nothing_else(trail_prefix: str) -> None:
    s3_store = symbol("S3Store")
    fake = _cloudtrail_bucket(TRAIL_BUCKET, trail_prefix)
    store = s3_store(f"s3://{TRAIL_BUCKET}/{trail_prefix}".rstrip("/"), client=fake)
    objects = _source("cloudtrail").list_day(store, date(2024, 6, 20)).objects
    assert len(objects) == 3  # both layouts, both regions; digests and insights are not listed
    for obj in objects:
        store.get(obj.info.key)
        with tempfile.TemporaryDirectory() as tmp:
            store.get_file(obj.info.key, str(Path(tmp) / "f"))
    s = stack(CloudTrailPrefix=trail_prefix)
    _assert_all_allowed(s.effective_policy("RunTaskRole"), fake.iam_requests(), "RunTaskRole")

    trail = {
        "Statement": [
            *s.managed_policies()["CloudTrailListPolicy"]["PolicyDocument"]["Statement"],
            *s.managed_policies()["CloudTrailReadPolicy"]["PolicyDocument"]["Statement"],
        ]
    }
    _assert_all_allowed(trail, fake.iam_requests(), "the CloudTrail policies alone")
    bucket = f"arn:aws:s3:::{TRAIL_BUCKET}"
    run = s.effective_policy("RunTaskRole")
    for doc in (trail, run):
        assert not allowed(
            doc, "s3:GetObject", f"{bucket}/{trail_prefix}AWSLogs/111122223333/CloudTrail-Digest/eu-west-1/x.json.gz"
        )
        assert not allowed(doc, "s3:GetObject", f"{bucket}/elsewhere/file")
        assert not allowed(doc, "s3:ListBucket", bucket, {"s3:prefix": "elsewhere/"})
        assert not allowed(doc, "s3:ListBucket", bucket, {})
        for write in ("s3:PutObject", "s3:DeleteObject"):
            assert not allowed(doc, write, objects[0].uri.replace("s3://", "arn:aws:s3:::"))


def test_cloudtrail_kms_decrypt_only_through_s3_and_only_with_a_key() -> None:
    doc = stack(CloudTrailKmsKeyArn=KMS_KEY).effective_policy("RunTaskRole")
    assert allowed(doc, "kms:Decrypt", KMS_KEY, {"kms:ViaService": "s3.us-east-1.amazonaws.com"})
    assert not allowed(doc, "kms:Decrypt", KMS_KEY, {})
    assert not allowed(doc, "kms:Decrypt", KMS_KEY, {"kms:ViaService": "lambda.us-east-1.amazonaws.com"})
    assert not any(s["Action"] == "kms:Decrypt" for s in stack().effective_policy("RunTaskRole")["Statement"])


def _warehouse(s: Any) -> tuple[str, str]:
    return s.ref("WarehouseBucket"), s.parameters["WarehousePrefix"]


def test_warehouse_writes_reads_replaces_and_ledger_are_allowed() -> None:
    import pyarrow as pa

    s = stack()
    bucket, prefix = _warehouse(s)
    stale = (bucket, f"{prefix}/learning_set/day=2024-06-20/old.parquet")
    fake = FakeS3({stale: b"stale"})
    store = symbol("S3Store")(f"s3://{bucket}/{prefix}", client=fake)
    warehouse = symbol("Warehouse")(store)
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
    ledger = symbol("ObjectStoreLedger")(store)
    assert not ledger.already_published("alert-1", "sns:arn")
    ledger.record("alert-1", "sns:arn", "message-1")
    assert ledger.get("alert-1", "sns:arn")["message_id"] == "message-1"
    assert {op for op, _ in fake.calls} == set(S3_OPERATION_ACTIONS)  # every storage operation ran
    assert any(kw.get("missing") for op, kw in fake.calls if op == "head_object")  # and a 404 was needed

    requests = fake.iam_requests()
    _assert_all_allowed(s.effective_policy("RunTaskRole"), requests, "RunTaskRole")
    own = s.managed_policies()["WarehousePolicy"]["PolicyDocument"]
    _assert_all_allowed(own, requests, "WarehousePolicy")
    arn = f"arn:aws:s3:::{bucket}"
    assert not allowed(own, "s3:GetObject", f"{arn}/other/file")
    assert not allowed(own, "s3:DeleteObject", f"{arn}/other/file")
    assert not allowed(own, "s3:ListBucket", arn, {"s3:prefix": "other/"})
    assert not allowed(own, "s3:ListBucket", f"arn:aws:s3:::{TRAIL_BUCKET}", {})


@pytest.mark.parametrize("parameters", [LAKE, EVERYTHING], ids=["objects", "athena"])
def test_security_lake_listing_and_reading_are_allowed(parameters: dict[str, str]) -> None:
    keys = [
        "aws/CLOUD_TRAIL_MGMT/2.0/region=eu-west-1/accountId=111122223333/eventDay=20240620/a.gz.parquet",
        "aws/VPC_FLOW/1.0/region=eu-west-1/accountId=111122223333/eventDay=20240620/b.gz.parquet",
        "aws/SH_FINDINGS/2.0/region=eu-west-1/accountId=111122223333/eventDay=20240620/c.gz.parquet",
        "ext/CUSTOM_SOURCE/1.0/region=eu-west-1/accountId=111122223333/eventDay=20240620/d.parquet",
    ]
    fake = FakeS3({(LAKE_BUCKET, key): b"PAR1" for key in keys})
    store = symbol("S3Store")(f"s3://{LAKE_BUCKET}", client=fake)
    listing = _source("security_lake").list_day(store, date(2024, 6, 20))
    assert listing.objects
    for info in listing.objects:
        store.get(info.key)
    run = stack(**parameters).effective_policy("RunTaskRole")
    _assert_all_allowed(run, fake.iam_requests(), "RunTaskRole")
    assert not allowed(run, "s3:GetObject", f"arn:aws:s3:::{LAKE_BUCKET}/ext/CUSTOM_SOURCE/x.parquet")
    assert not any("SecurityLake" in s["Sid"] for s in stack().effective_policy("RunTaskRole")["Statement"])


def test_athena_path_queries_the_lake_tables_and_manages_its_unload_location() -> None:
    """The Athena reader: UNLOAD through the stack's workgroup, then list, read and delete what it wrote."""
    s = stack(**EVERYTHING)
    doc = s.managed_policies()["SecurityLakeAthenaPolicy"]["PolicyDocument"]
    workgroup_name = s.properties("AthenaWorkGroup")["Name"]
    workgroup = f"arn:aws:athena:{REGION}:{ACCOUNT}:workgroup/{workgroup_name}"
    for action in ("athena:StartQueryExecution", "athena:GetQueryExecution", "athena:GetQueryResults"):
        assert allowed(doc, action, workgroup), action
    assert not allowed(doc, "athena:StartQueryExecution", f"arn:aws:athena:{REGION}:{ACCOUNT}:workgroup/primary")
    glue_database = symbol("glue_database")(REGION)
    table = f"arn:aws:glue:{REGION}:{ACCOUNT}:table/{glue_database}/amazon_security_lake_table_eu_west_1_vpc_flow_2_0"
    for action in ("glue:GetDatabase", "glue:GetTable", "glue:GetPartitions"):
        for resource in (
            f"arn:aws:glue:{REGION}:{ACCOUNT}:catalog",
            f"arn:aws:glue:{REGION}:{ACCOUNT}:database/{glue_database}",
            table,
        ):
            assert allowed(doc, action, resource), (action, resource)
    assert not allowed(doc, "glue:GetTable", f"arn:aws:glue:{REGION}:{ACCOUNT}:table/other_db/t")
    assert allowed(doc, "lakeformation:GetDataAccess", "*")
    bucket = s.ref("ArtifactsBucket")
    output = s.properties("AthenaWorkGroup")["WorkGroupConfiguration"]["ResultConfiguration"]["OutputLocation"]
    assert output == f"s3://{bucket}/athena-results/"
    unload = "athena-results/proactive-unload/2024-06-20/run-1/VPC_FLOW_2.0/"
    assert allowed(doc, "s3:ListBucket", f"arn:aws:s3:::{bucket}", {"s3:prefix": unload})
    for action in ("s3:PutObject", "s3:GetObject", "s3:DeleteObject"):
        assert allowed(doc, action, f"arn:aws:s3:::{bucket}/{unload}part-0.parquet"), action
        assert not allowed(doc, action, f"arn:aws:s3:::{bucket}/sagemaker/models/x"), action
    assert allowed(doc, "s3:GetBucketLocation", f"arn:aws:s3:::{bucket}")
    assert "SecurityLakeAthenaPolicy" not in stack(**LAKE).managed_policies()  # objects path: no Athena rights


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
# The operations batch scoring never makes (endpoint mode only).
ENDPOINT_ONLY = {"endpoint-config", "endpoint"}
# S3 calls of the backend on the artifacts location.
ARTIFACT_S3_OPERATIONS = {
    "upload_fileobj": "s3:PutObject",
    "list_objects_v2": "s3:ListBucket",
    "get_object": "s3:GetObject",
}


def _backend_source() -> str:
    """Every module of the package that holds the SageMaker backend (its calls are spread over them)."""
    package = [path for path, text in _package_files().items() if "def start_training_job(" in text]
    assert len(package) == 1, f"expected one module defining start_training_job, found {package}"
    return "\n".join(text for path, text in _package_files().items() if path.parent == package[0].parent)


def test_the_sagemaker_maps_cover_every_operation_the_backend_calls() -> None:
    source = _backend_source()
    called = set(re.findall(r"\b(?:sagemaker_client|runtime_client|self\.sagemaker|self\.runtime)\.(\w+)\(", source))
    assert called, "no SageMaker call found: has the backend been renamed?"
    assert called <= set(SAGEMAKER_OPERATIONS), f"unmapped SageMaker calls: {called - set(SAGEMAKER_OPERATIONS)}"
    s3_called = set(re.findall(r"\b(?:s3_client|self\.s3)\.(\w+)\(", source)) - {"get_paginator"}
    s3_called |= set(re.findall(r'get_paginator\("(\w+)"\)', source))
    assert s3_called <= set(ARTIFACT_S3_OPERATIONS), f"unmapped S3 calls: {s3_called - set(ARTIFACT_S3_OPERATIONS)}"


def _sagemaker_names() -> dict[str, str]:
    make_resource_name = symbol("make_resource_name")
    name_prefix = _constant("DEFAULT_NAME_PREFIX")
    job = make_resource_name(name_prefix, "sm-0123456789ab")
    return {
        "training-job": job,
        "model": job,  # the model and its endpoint config are named after the job
        "endpoint-config": job,
        "endpoint": _constant("DEFAULT_ENDPOINT_NAME"),
        "transform-job": make_resource_name(f"{name_prefix}-score", job[-20:]),
    }


def _constant(name: str) -> str:
    match = re.search(rf'^{name} = "([^"]+)"', _backend_source(), flags=re.MULTILINE)
    assert match, f"{name} not found in the SageMaker backend"
    return match.group(1)


def _sagemaker_arn(kind: str, name: str) -> str:
    return f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:{kind}/{name.lower()}"  # SageMaker ARNs are lower case


@pytest.mark.parametrize("mode", ["batch", "endpoint"])
def test_every_sagemaker_call_of_the_scoring_mode_is_allowed_and_no_other(mode: str) -> None:
    s = stack(ModelBackend="sagemaker", SageMakerScoringMode=mode)
    doc = s.effective_policy("RunTaskRole")
    names = _sagemaker_names()
    for operation, (action, kind) in SAGEMAKER_OPERATIONS.items():
        expected = mode == "endpoint" or kind not in ENDPOINT_ONLY
        assert allowed(doc, action, _sagemaker_arn(kind, names[kind])) == expected, f"{mode}: {operation} -> {action}"
    assert allowed(doc, "sagemaker:AddTags", _sagemaker_arn("training-job", names["training-job"]))
    assert allowed(doc, "sagemaker:AddTags", _sagemaker_arn("endpoint", names["endpoint"])) == (mode == "endpoint")
    # Resources of other applications are out of reach.
    assert not allowed(doc, "sagemaker:DeleteEndpoint", _sagemaker_arn("endpoint", "someone-elses-endpoint"))
    assert not allowed(doc, "sagemaker:CreateTrainingJob", _sagemaker_arn("training-job", "someone-elses-job"))

    role = s.get_att("SageMakerExecutionRole", "Arn")
    assert allowed(doc, "iam:PassRole", role, {"iam:PassedToService": "sagemaker.amazonaws.com"})
    assert not allowed(doc, "iam:PassRole", role, {"iam:PassedToService": "ec2.amazonaws.com"})
    assert not allowed(
        doc, "iam:PassRole", f"arn:aws:iam::{ACCOUNT}:role/admin", {"iam:PassedToService": "sagemaker.amazonaws.com"}
    )


def _artifact_keys(s: Any) -> dict[str, str]:
    """Where the backend and SageMaker read and write, built with the backend's own helpers."""
    join_s3_uri, parse_s3_uri = symbol("join_s3_uri"), symbol("parse_s3_uri")
    env = {e["Name"]: e["Value"] for e in s.properties("CodeTaskDefinition")["ContainerDefinitions"][0]["Environment"]}
    artifacts = env["PROACTIVE_SAGEMAKER_ARTIFACTS_URI"]
    assert artifacts == f"s3://{s.ref('ArtifactsBucket')}/{s.parameters['ArtifactsPrefix']}"
    names = _sagemaker_names()
    job, transform = names["training-job"], names["transform-job"]
    data = join_s3_uri(artifacts, "training-data", job)
    transform_prefix = join_s3_uri(artifacts, "transform", transform)
    uris = {
        "train": join_s3_uri(data, "train.csv"),
        "validation": join_s3_uri(data, "validation.csv"),
        "model": join_s3_uri(artifacts, "models", job, "output", "model.tar.gz"),
        "transform_input": join_s3_uri(transform_prefix, "input", "pairs.csv"),
        "transform_output_prefix": join_s3_uri(transform_prefix, "output") + "/",
        "transform_output": join_s3_uri(transform_prefix, "output", "pairs.csv.out"),
    }
    return {name: parse_s3_uri(uri)[1] for name, uri in uris.items()}


def test_backend_artifact_reads_and_writes_are_allowed() -> None:
    s = stack(**BATCH)
    bucket = f"arn:aws:s3:::{s.ref('ArtifactsBucket')}"
    keys = _artifact_keys(s)
    own = s.managed_policies()["SageMakerOrchestrationPolicy"]["PolicyDocument"]
    for doc in (own, s.effective_policy("RunTaskRole")):
        for name in ("train", "validation", "transform_input"):
            assert allowed(doc, ARTIFACT_S3_OPERATIONS["upload_fileobj"], f"{bucket}/{keys[name]}"), name
        assert allowed(doc, "s3:ListBucket", bucket, {"s3:prefix": keys["transform_output_prefix"]})
        assert allowed(doc, "s3:GetObject", f"{bucket}/{keys['transform_output']}")
        assert not allowed(doc, "s3:PutObject", f"{bucket}/{keys['model']}")  # only SageMaker writes models
        assert not allowed(doc, "s3:ListBucket", bucket, {})


def test_sagemaker_execution_role_reads_inputs_writes_outputs_pulls_image_and_logs() -> None:
    s = stack(**BATCH)
    doc = s.effective_policy("SageMakerExecutionRole")
    bucket = f"arn:aws:s3:::{s.ref('ArtifactsBucket')}"
    keys = _artifact_keys(s)
    for name in ("train", "validation", "transform_input"):
        assert allowed(doc, "s3:ListBucket", bucket, {"s3:prefix": keys[name]}), name  # S3Prefix channels
        assert allowed(doc, "s3:GetObject", f"{bucket}/{keys[name]}"), name
    assert allowed(doc, "s3:PutObject", f"{bucket}/{keys['model']}")
    assert allowed(doc, "s3:GetObject", f"{bucket}/{keys['model']}")  # hosting and batch transform load it
    assert allowed(doc, "s3:PutObject", f"{bucket}/{keys['transform_output']}")
    assert not allowed(doc, "s3:PutObject", f"{bucket}/{keys['train']}")
    warehouse, prefix = _warehouse(s)
    assert not allowed(doc, "s3:GetObject", f"arn:aws:s3:::{warehouse}/{prefix}/x")

    image = symbol("fallback_ipinsights_image_uri")(REGION)  # 438346466558.dkr.ecr.eu-west-1.amazonaws.com/ipinsights:1
    registry, repository = image.split("/", 1)
    repository_arn = f"arn:aws:ecr:{REGION}:{registry.split('.', 1)[0]}:repository/{repository.split(':')[0]}"
    for action in ("ecr:BatchCheckLayerAvailability", "ecr:GetDownloadUrlForLayer", "ecr:BatchGetImage"):
        assert allowed(doc, action, repository_arn), action
    assert not allowed(doc, "ecr:BatchGetImage", f"arn:aws:ecr:{REGION}:{ACCOUNT}:repository/other")
    assert allowed(doc, "ecr:GetAuthorizationToken", "*")
    stream = f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:/aws/sagemaker/TrainingJobs:log-stream:job/algo-1-1718841600"
    assert allowed(doc, "logs:PutLogEvents", stream)
    assert allowed(
        doc, "logs:CreateLogStream", f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:/aws/sagemaker/TrainingJobs"
    )
    assert allowed(doc, "cloudwatch:PutMetricData", "*", {"cloudwatch:namespace": "/aws/sagemaker/TrainingJobs"})
    assert not allowed(doc, "cloudwatch:PutMetricData", "*", {"cloudwatch:namespace": "Other"})


def test_the_image_account_map_is_the_backends() -> None:
    """The template's per-region ipinsights registry accounts are the backend's fallback table."""
    mapping = render.load_template()["Mappings"]["IpInsightsImage"]
    fallback = symbol("fallback_ipinsights_image_uri")
    for region, row in mapping.items():
        assert fallback(region).split(".", 1)[0] == row["Account"], region
    table = re.search(r"_IPINSIGHTS_ACCOUNTS = \{(.*?)\}", _backend_source(), flags=re.DOTALL)
    assert table and set(re.findall(r'"([a-z0-9-]+)":', table.group(1))) == set(mapping)


# ----------------------------------------------------------------------------- SNS and SQS


def test_sns_publish_is_allowed_on_the_stack_topic_only() -> None:
    source = source_defining("class SnsSink")
    assert set(re.findall(r"self\.client\.(\w+)\(", source)) == {"publish"}

    class FakeSns:
        def __init__(self) -> None:
            self.calls: list[dict[str, Any]] = []

        def publish(self, **kwargs: Any) -> dict[str, str]:
            self.calls.append(kwargs)
            return {"MessageId": "m-1"}

    s = stack()
    topic = s.ref("AlertTopic")
    sns = FakeSns()
    symbol("SnsSink")(sns, topic).publish(
        symbol("render_alert")({"entity": "arn:aws:iam::1:user/a", "source_ip": "192.0.2.1"}, "2024-06-20")
    )
    assert sns.calls
    doc = s.effective_policy("RunTaskRole")
    assert all(allowed(doc, "sns:Publish", call["TopicArn"]) for call in sns.calls)
    assert not allowed(doc, "sns:Publish", f"arn:aws:sns:{REGION}:{ACCOUNT}:another-topic")
    for role in ("CodeLocationTaskRole", "DagsterTaskRole"):
        assert not allowed(s.effective_policy(role), "sns:Publish", topic), role


SQS_OPERATION_ACTIONS = {
    "receive_message": "sqs:ReceiveMessage",
    "delete_message": "sqs:DeleteMessage",
    "delete_message_batch": "sqs:DeleteMessage",  # authorised per entry as DeleteMessage
    "change_message_visibility": "sqs:ChangeMessageVisibility",
    "get_queue_attributes": "sqs:GetQueueAttributes",
}


@pytest.mark.parametrize("trail_prefix", ["", "org-trail/"])
def test_sensor_calls_are_allowed_for_the_code_location(trail_prefix: str) -> None:
    """Sensors run in the code server: SQS calls on the subscriber queue, CloudTrail listing."""
    sqs_source = source_defining("def make_security_lake_sqs_sensor(")
    called = set(re.findall(r"\bclient\.(\w+)\(", sqs_source))
    assert called and called <= set(SQS_OPERATION_ACTIONS), f"unmapped SQS calls: {called - set(SQS_OPERATION_ACTIONS)}"
    s = stack(**LAKE, CloudTrailPrefix=trail_prefix)
    doc = s.effective_policy("CodeLocationTaskRole")
    for operation in called:
        assert allowed(doc, SQS_OPERATION_ACTIONS[operation], QUEUE_ARN), operation
    assert not allowed(doc, "sqs:ReceiveMessage", f"arn:aws:sqs:{REGION}:{ACCOUNT}:other-queue")
    # cloudtrail_s3_sensor lists "<trail prefix>AWSLogs/" through dagster_aws.s3.sensor.get_objects.
    source = source_defining("def cloudtrail_s3_sensor(")
    assert "get_objects(" in source and "AWSLogs/" in source
    bucket = f"arn:aws:s3:::{TRAIL_BUCKET}"
    assert allowed(doc, "s3:ListBucket", bucket, {"s3:prefix": f"{trail_prefix}AWSLogs/"})
    assert not allowed(doc, "s3:GetObject", f"{bucket}/{trail_prefix}AWSLogs/111122223333/CloudTrail/x.json.gz")
    # Nothing else: the code location never reads data, writes the warehouse or publishes.
    actions = {a for st in doc["Statement"] for a in as_list(st["Action"])}
    assert actions == {"s3:ListBucket", *SQS_OPERATION_ACTIONS.values()}
    assert not any(
        st["Action"].startswith("sqs:") for st in stack().effective_policy("CodeLocationTaskRole")["Statement"]
    )


# ------------------------------------------------------------------------ ECS run launcher role


def _instance_yaml() -> dict[str, Any]:
    return yaml.safe_load((DEPLOY / "dagster.yaml").read_text())


def test_daemon_can_launch_watch_and_stop_run_tasks() -> None:
    from dagster._core.remote_origin import GrpcServerCodeLocationOrigin, RemoteJobOrigin, RemoteRepositoryOrigin
    from dagster_aws.ecs.utils import get_task_definition_family

    s = stack(**EVERYTHING)
    doc = s.effective_policy("DagsterTaskRole")
    launcher = _instance_yaml()["run_launcher"]["config"]
    origin = RemoteJobOrigin(
        RemoteRepositoryOrigin(
            GrpcServerCodeLocationOrigin(host="code.proactive.internal", port=4000, location_name="proactive_assets"),
            "__repository__",
        ),
        "proactive_daily_job",
    )
    family = get_task_definition_family(launcher["task_definition_prefix"], origin)
    cluster_name = s.ref("Cluster")
    cluster = s.get_att("Cluster", "Arn")
    task_definition = f"arn:aws:ecs:{REGION}:{ACCOUNT}:task-definition/{family}:7"
    task = f"arn:aws:ecs:{REGION}:{ACCOUNT}:task/{cluster_name}/0123456789abcdef0123456789abcdef"
    assert allowed(doc, "ecs:RunTask", task_definition, {"ecs:cluster": cluster})
    assert not allowed(doc, "ecs:RunTask", task_definition, {"ecs:cluster": cluster + "-other"})
    assert not allowed(
        doc, "ecs:RunTask", f"arn:aws:ecs:{REGION}:{ACCOUNT}:task-definition/other:1", {"ecs:cluster": cluster}
    )
    assert allowed(doc, "ecs:TagResource", task, {"ecs:CreateAction": "RunTask"})
    for action in ("ecs:DescribeTasks", "ecs:StopTask"):
        assert allowed(doc, action, task), action
    for action in ("ecs:RegisterTaskDefinition", "ecs:DescribeTaskDefinition", "ec2:DescribeNetworkInterfaces"):
        assert allowed(doc, action, "*"), action
    for role in ("RunTaskRole", "EcsExecutionRole"):
        arn = s.get_att(role, "Arn")
        assert allowed(doc, "iam:PassRole", arn, {"iam:PassedToService": "ecs-tasks.amazonaws.com"})
        assert not allowed(doc, "iam:PassRole", arn, {"iam:PassedToService": "sagemaker.amazonaws.com"})
    for role in ("DagsterTaskRole", "CodeLocationTaskRole", "SageMakerExecutionRole"):
        assert not allowed(
            doc, "iam:PassRole", s.get_att(role, "Arn"), {"iam:PassedToService": "ecs-tasks.amazonaws.com"}
        )
    stream = f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:{s.ref('LogGroup')}:log-stream:{family}/run/abc"
    assert allowed(doc, "logs:GetLogEvents", stream)
    # The daemon never touches the data.
    warehouse, prefix = _warehouse(s)
    assert not allowed(doc, "s3:GetObject", f"arn:aws:s3:::{warehouse}/{prefix}/x")
    # ECS Exec channels only when asked for.
    assert allowed(doc, "ssmmessages:CreateControlChannel", "*")
    assert not allowed(stack().effective_policy("DagsterTaskRole"), "ssmmessages:CreateControlChannel", "*")
    # The RunTask grant follows dagster.yaml's task definition prefix.
    run_task = next(st for st in doc["Statement"] if st["Action"] == "ecs:RunTask")
    assert run_task["Resource"].endswith(f":task-definition/{launcher['task_definition_prefix']}_*:*")


def test_task_execution_role_reads_only_the_database_secret() -> None:
    s = stack()
    doc = s.effective_policy("EcsExecutionRole")
    secret = s.ref("DatabaseSecret")
    assert allowed(doc, "secretsmanager:GetSecretValue", secret)
    assert not allowed(doc, "secretsmanager:GetSecretValue", secret + "-other")
    attached = s.role_policies("EcsExecutionRole")
    assert "arn:aws:iam::aws:policy/service-role/AmazonECSTaskExecutionRolePolicy" in attached


# ------------------------------------------------------------------- instance and workspace YAML

# Read by the command line only, never inside a run.
#: Settings the run tasks do not need: what the CLI prints, and a local ip-ranges.json file
#: (tasks use the address ranges bundled with the image).
CLI_ONLY_SETTINGS = {"PROACTIVE_LOG_LEVEL", "PROACTIVE_AWS_IP_RANGES"}


def _env_names_read_by_the_project() -> set[str]:
    """Every environment variable the settings read, but boto3's and Dagster's own and the CLI-only ones."""
    names = symbol("Settings").env_names()
    names = {n for n in names if not n.startswith(("DAGSTER_", "AWS_"))} - CLI_ONLY_SETTINGS
    assert {"PROACTIVE_CLOUDTRAIL_URI", "PROACTIVE_WAREHOUSE", "PROACTIVE_START_DATE", "SNS_TOPIC_ARN"} <= names
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
    scanner = re.search(r'python -c "import (proactive_assets\.[\w.]+)"', text)
    assert scanner and (PACKAGE.parent / (scanner.group(1).replace(".", "/") + ".c")).exists(), "scanner module"
    cmd = re.search(r"^CMD (\[.*\])$", text, flags=re.MULTILINE)
    assert cmd and json.loads(cmd.group(1)) == GRPC_COMMAND
    assert "COPY deploy/dagster.yaml deploy/workspace.yaml /opt/dagster/dagster_home/" in text
    assert "DAGSTER_HOME=/opt/dagster/dagster_home" in text
    # dagster-postgres is versioned with the other integration libraries (0.x beside dagster 1.x).
    pin = re.search(r'"dagster-postgres>=0\.(\d+),<0\.(\d+)"', text)
    minor = int(dagster_aws.__version__.split(".")[1])
    assert pin and (int(pin.group(1)), int(pin.group(2))) == (minor, minor + 1)


def _api_shape(value: Any, free_keys: bool = False) -> Any:
    """CloudFormation's PascalCase ECS properties as the ECS API's camelCase request."""
    if isinstance(value, list):
        return [_api_shape(v) for v in value]
    if not isinstance(value, dict):
        return value
    if free_keys:  # e.g. LogConfiguration.Options: keys are the log driver's, kept as written
        return dict(value)
    return {k[0].lower() + k[1:]: _api_shape(v, free_keys=k == "Options") for k, v in value.items()}


def _task_definition(s: Any, logical_id: str) -> dict[str, Any]:
    return _api_shape(s.properties(logical_id))


def _environment(container: dict[str, Any]) -> dict[str, str]:
    return {item["name"]: item["value"] for item in container.get("environment", [])}


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
@pytest.mark.parametrize("logical_id", ["CodeTaskDefinition", "DagsterTaskDefinition"])
def test_ecs_task_definitions_are_valid_register_task_definition_input(logical_id: str, scenario: str) -> None:
    import botocore.session
    from botocore.validate import validate_parameters

    model = botocore.session.get_session().get_service_model("ecs")
    validate_parameters(
        _task_definition(stack(**SCENARIOS[scenario]), logical_id),
        model.operation_model("RegisterTaskDefinition").input_shape,
    )


# Fargate task sizes: CPU units -> allowed memory (MiB), AWS ECS developer guide.
FARGATE_MEMORY = {
    "256": range(512, 2049, 512),
    "512": range(1024, 4097, 1024),
    "1024": range(2048, 8193, 1024),
    "2048": range(4096, 16385, 1024),
    "4096": range(8192, 30721, 1024),
    "8192": range(16384, 61441, 4096),
    "16384": range(32768, 122881, 8192),
}


def test_ecs_task_definitions_agree_with_the_instance_the_image_and_the_code() -> None:
    s = stack(**EVERYTHING)
    dagster = _task_definition(s, "DagsterTaskDefinition")
    code = _task_definition(s, "CodeTaskDefinition")
    containers = {c["name"]: c for c in dagster["containerDefinitions"]}
    assert set(containers) == {"webserver", "daemon"}
    assert containers["daemon"]["command"][:2] == ["dagster-daemon", "run"]
    assert containers["webserver"]["command"][0] == "dagster-webserver"
    assert dagster["taskRoleArn"] == s.get_att("DagsterTaskRole", "Arn")
    for task in (dagster, code):
        assert int(task["memory"]) in FARGATE_MEMORY[task["cpu"]], task["family"]
        assert task["executionRoleArn"] == s.get_att("EcsExecutionRole", "Arn")

    # Webserver and daemon both load the instance: the same settings, the same secret.
    daemon_env = _environment(containers["daemon"])
    assert _environment(containers["webserver"]) == daemon_env
    assert containers["webserver"]["secrets"] == containers["daemon"]["secrets"]
    forwarded = set(_instance_yaml()["run_launcher"]["config"]["env_vars"])
    missing = forwarded - set(daemon_env)
    assert not missing, f"the daemon must define every env var it forwards to runs: {sorted(missing)}"
    (secret,) = containers["daemon"]["secrets"]
    assert secret == {"name": "DAGSTER_PG_PASSWORD", "valueFrom": daemon_env["DAGSTER_PG_PASSWORD_SECRET_ARN"]}
    assert secret["valueFrom"] == f"{s.ref('DatabaseSecret')}:password::"
    assert daemon_env["PROACTIVE_RUN_TASK_ROLE_ARN"] == s.get_att("RunTaskRole", "Arn")
    assert daemon_env["PROACTIVE_LOG_GROUP"] == s.ref("LogGroup")
    namespace = s.properties("ServiceNamespace")["Name"]
    assert daemon_env["DAGSTER_CODE_SERVER_HOST"] == f"{s.properties('CodeDiscoveryService')['Name']}.{namespace}"
    assert daemon_env["DAGSTER_PG_HOST"] == s.get_att("Database", "Endpoint.Address")

    (server,) = code["containerDefinitions"]
    assert server["command"] == GRPC_COMMAND
    assert [p["containerPort"] for p in server["portMappings"]] == [4000]
    server_env = _environment(server)
    assert server_env["DAGSTER_CURRENT_IMAGE"] == server["image"] == IMAGE
    assert not _env_names_read_by_the_project() - set(server_env)
    # Sensor ticks build the instance in the code server (see the test below): same database settings.
    for name in ("DAGSTER_PG_HOST", "DAGSTER_PG_USER", "DAGSTER_PG_DB"):
        assert server_env[name] == daemon_env[name], name
    assert server["secrets"] == containers["daemon"]["secrets"]
    assert code["taskRoleArn"] == s.get_att("CodeLocationTaskRole", "Arn")
    # Both tasks point the project at the same places, and at the stack's own resources.
    for key in _env_names_read_by_the_project():
        assert server_env[key] == daemon_env[key], key
    warehouse, prefix = _warehouse(s)
    assert daemon_env["PROACTIVE_WAREHOUSE"] == f"s3://{warehouse}/{prefix}"
    assert daemon_env["SNS_TOPIC_ARN"] == s.ref("AlertTopic")
    assert daemon_env["SAGEMAKER_ROLE_ARN"] == s.get_att("SageMakerExecutionRole", "Arn")
    assert (
        daemon_env["PROACTIVE_SQS_QUEUE_URL"]
        == f"https://sqs.{REGION}.amazonaws.com/{ACCOUNT}/AmazonSecurityLake-1234-Main-Queue"
    )
    assert daemon_env["PROACTIVE_SECURITY_LAKE_URI"] == f"s3://{LAKE_BUCKET}"
    assert daemon_env["PROACTIVE_CLOUDTRAIL_URI"] == f"s3://{TRAIL_BUCKET}/"


def test_optional_settings_are_empty_when_their_part_is_off() -> None:
    """An empty value means "unset" to the project: no lake, no queue, no SageMaker by default."""
    s = stack()
    env = _environment(_task_definition(s, "CodeTaskDefinition")["containerDefinitions"][0])
    for name in (
        "PROACTIVE_SECURITY_LAKE_URI",
        "PROACTIVE_SQS_QUEUE_URL",
        "SAGEMAKER_ROLE_ARN",
        "PROACTIVE_SAGEMAKER_ARTIFACTS_URI",
    ):
        assert env[name] == "", name
    assert env["PROACTIVE_MODEL_BACKEND"] == "local"
    assert (
        not s.exists("ArtifactsBucket") and not s.exists("SageMakerExecutionRole") and not s.exists("AthenaWorkGroup")
    )
    settings = symbol("Settings").from_env(env)
    assert settings.security_lake_uri is None and settings.sqs_queue_url is None and settings.sagemaker_role_arn is None


def test_run_task_size_follows_the_template_through_the_code_locations_container_context() -> None:
    """DAGSTER_CONTAINER_CONTEXT on the code server sets every run task's size, over dagster.yaml's default."""
    from dagster_aws.ecs.container_context import EcsContainerContext

    s = stack(RunTaskCpu="4096", RunTaskMemory="16384")
    server = _task_definition(s, "CodeTaskDefinition")["containerDefinitions"][0]
    context = EcsContainerContext.create_from_config(json.loads(_environment(server)["DAGSTER_CONTAINER_CONTEXT"]))
    launcher = EcsContainerContext(run_resources=_instance_yaml()["run_launcher"]["config"]["run_resources"])
    assert launcher.merge(context).run_resources == {"cpu": "4096", "memory": "16384"}
    defaults = render.load_template()["Parameters"]
    cpu, memory = defaults["RunTaskCpu"]["Default"], defaults["RunTaskMemory"]["Default"]
    assert int(memory) in FARGATE_MEMORY[cpu]
    assert {"cpu": cpu, "memory": memory} == _instance_yaml()["run_launcher"]["config"]["run_resources"]


def test_a_sensor_with_a_resource_opens_the_instance_in_the_code_server(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Why the code server needs the database: the daemon sends its instance ref with every sensor
    tick, and Dagster builds a sensor's resources with that instance, in the code server."""
    from dagster import DagsterInstance, ResourceDefinition
    from dagster._core.definitions.sensor_definition import SensorEvaluationContext

    sensors = source_defining("def cloudtrail_s3_sensor(")
    assert re.search(r"def _?cloudtrail_s3_sensor\(context: \w+, \w+: \w+\)", sensors), "it takes a resource"
    opened = []
    real_from_ref = DagsterInstance.from_ref

    def from_ref(ref: Any) -> Any:
        opened.append(ref)
        return real_from_ref(ref)

    monkeypatch.setattr(DagsterInstance, "from_ref", staticmethod(from_ref))
    with DagsterInstance.local_temp(str(tmp_path)) as daemon_instance:
        context = SensorEvaluationContext(
            instance_ref=daemon_instance.get_ref(),
            last_tick_completion_time=None,
            last_run_key=None,
            cursor=None,
            log_key=None,
            repository_name=None,
            resources={"proactive": ResourceDefinition.hardcoded_resource("settings")},
        )
        with context:
            assert context.resources.proactive == "settings"
    assert len(opened) == 1


def test_services_run_one_daemon_and_reach_the_code_server_by_name() -> None:
    s = stack()
    dagster, code = s.properties("DagsterService"), s.properties("CodeService")
    assert dagster["DesiredCount"] == 1
    # Never two daemons: the old task stops before the new one starts.
    assert dagster["DeploymentConfiguration"] == {"MaximumPercent": 100, "MinimumHealthyPercent": 0}
    assert code["ServiceRegistries"] == [{"RegistryArn": s.get_att("CodeDiscoveryService", "Arn")}]
    for service in (dagster, code):
        assert service["LaunchType"] == "FARGATE"
        assert service["NetworkConfiguration"]["AwsvpcConfiguration"]["AssignPublicIp"] == "DISABLED"
    # Who reaches what: the UI from the given range; gRPC and PostgreSQL from the dagster tasks only.
    code_ingress = s.properties("CodeSecurityGroup")["SecurityGroupIngress"]
    db_ingress = s.properties("DatabaseSecurityGroup")["SecurityGroupIngress"]
    ui_ingress = s.properties("DagsterSecurityGroup")["SecurityGroupIngress"]
    assert [(r["FromPort"], r["SourceSecurityGroupId"]) for r in code_ingress] == [
        (4000, s.ref("DagsterSecurityGroup"))
    ]
    assert [(r["FromPort"], r["SourceSecurityGroupId"]) for r in db_ingress] == [
        (5432, s.ref("DagsterSecurityGroup")),
        (5432, s.ref("CodeSecurityGroup")),
    ]
    assert [(r["FromPort"], r["CidrIp"]) for r in ui_ingress] == [
        (3000, render.SAMPLE_PARAMETERS["WebserverIngressCidr"])
    ]
    database = s.properties("Database")
    assert database["PubliclyAccessible"] is False and database["StorageEncrypted"] is True
    assert (
        database["MasterUserPassword"]
        == f"{{{{resolve:secretsmanager:{s.ref('DatabaseSecret')}:SecretString:password}}}}"
    )


def test_helm_values_deploy_the_same_code_location_on_postgres() -> None:
    values = yaml.safe_load((DEPLOY / "k8s" / "values.yaml").read_text())
    (deployment,) = values["dagster-user-deployments"]["deployments"]
    assert deployment["dagsterApiGrpcArgs"] == GRPC_COMMAND[-2:]
    assert values["runLauncher"]["type"] == "K8sRunLauncher"
    assert values["postgresql"]["enabled"] is False and values["generatePostgresqlPasswordSecret"] is False
    assert values["telemetry"]["enabled"] is False
    coordinator = values["dagsterDaemon"]["runCoordinator"]
    assert coordinator["type"] == "QueuedRunCoordinator"
    runs = _instance_yaml()["concurrency"]["runs"]
    queued = coordinator["config"]["queuedRunCoordinator"]
    assert queued["maxConcurrentRuns"] == runs["max_concurrent_runs"]
    assert queued["tagConcurrencyLimits"] == runs["tag_concurrency_limits"]


def test_every_template_parameter_is_documented_in_the_readme() -> None:
    readme = README.read_text()
    missing = [name for name in render.load_template()["Parameters"] if f"`{name}`" not in readme]
    assert not missing, f"template parameters deploy/README.md does not explain: {missing}"
    assert "deploy/iam" not in readme and "deploy/ecs" not in readme and "iam/*.json" not in readme


# --------------------------------------------- issue 13 item 7: the three IAM fixes, each fails on the old policy


def _all_policy_documents(s: Any) -> dict[str, dict[str, Any]]:
    docs = {logical_id: props["PolicyDocument"] for logical_id, props in s.managed_policies().items()}
    docs |= {f"{role} trust": s.trust_policy(role) for role in s.roles()}
    return docs


def test_no_policy_uses_an_if_exists_condition() -> None:
    """``StringLikeIfExists`` on s3:prefix let a listing without a prefix through to a whole bucket."""
    for name, doc in _all_policy_documents(stack(**EVERYTHING)).items():
        for statement in doc["Statement"]:
            operators = set(statement.get("Condition", {}))
            assert not {op for op in operators if op.endswith("IfExists")}, f"{name}:{statement['Sid']}"


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_a_listing_without_prefix_is_allowed_only_on_the_bucket_that_holds_nothing_but_the_warehouse(
    scenario: str,
) -> None:
    s = stack(**SCENARIOS[scenario])
    warehouse, prefix = _warehouse(s)
    buckets = {TRAIL_BUCKET, warehouse, LAKE_BUCKET} | (
        {s.ref("ArtifactsBucket")} if s.exists("ArtifactsBucket") else set()
    )
    for role in s.roles():
        doc = s.effective_policy(role)
        for bucket in buckets - {warehouse}:
            assert not allowed(doc, "s3:ListBucket", f"arn:aws:s3:::{bucket}", {}), (role, bucket)
        for other in ("", "other/", "sagemaker/", f"{prefix}-other/"):
            if other:
                assert not allowed(doc, "s3:ListBucket", f"arn:aws:s3:::{warehouse}", {"s3:prefix": other}), (
                    role,
                    other,
                )
    # The warehouse bucket is the stack's own, and its policy refuses every object outside the
    # prefix, to everyone: a listing without a prefix shows only keys the run role may read anyway.
    assert s.resources["WarehouseBucket"]["Type"] == "AWS::S3::Bucket"
    bucket_policy = s.properties("WarehouseBucketPolicy")
    assert bucket_policy["Bucket"] == warehouse
    policy_doc = bucket_policy["PolicyDocument"]
    assert denied(policy_doc, "s3:PutObject", f"arn:aws:s3:::{warehouse}/other/key")
    assert denied(policy_doc, "s3:PutObject", f"arn:aws:s3:::{warehouse}/{prefix}-other/key")
    assert not denied(policy_doc, "s3:PutObject", f"arn:aws:s3:::{warehouse}/{prefix}/alerts/day=2024-06-20/t.parquet")
    assert denied(policy_doc, "s3:GetObject", f"arn:aws:s3:::{warehouse}/{prefix}/x", {"aws:SecureTransport": "false"})
    run = s.effective_policy("RunTaskRole")
    assert allowed(run, "s3:ListBucket", f"arn:aws:s3:::{warehouse}", {})  # the 404 the ledger relies on
    assert allowed(run, "s3:GetObject", f"arn:aws:s3:::{warehouse}/{prefix}/any/key")


def test_sagemaker_trusts_only_this_accounts_jobs() -> None:
    """The execution role's trust names aws:SourceAccount and aws:SourceArn (confused deputy)."""
    trust = stack(**BATCH).trust_policy("SageMakerExecutionRole")
    job = f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:training-job/proactive-ipinsights-20240620-abc"
    transform = f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:transform-job/proactive-ipinsights-score-abc"
    for source in (job, transform):
        assert may_assume(trust, "sagemaker.amazonaws.com", {"aws:SourceAccount": ACCOUNT, "aws:SourceArn": source})
    other = "999999999999"
    assert not may_assume(
        trust, "sagemaker.amazonaws.com", {"aws:SourceAccount": other, "aws:SourceArn": job.replace(ACCOUNT, other)}
    )
    assert not may_assume(
        trust, "sagemaker.amazonaws.com", {"aws:SourceAccount": ACCOUNT, "aws:SourceArn": job.replace(ACCOUNT, other)}
    )
    assert not may_assume(trust, "sagemaker.amazonaws.com", {"aws:SourceArn": job})  # no SourceAccount: refused
    assert not may_assume(trust, "sagemaker.amazonaws.com", {})


# What each part of the stack adds to the run role, by IAM service prefix.
DATA_SERVICES = {"s3", "kms", "athena", "glue", "lakeformation"}


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_the_run_role_holds_the_rights_of_the_parts_switched_on_and_no_others(scenario: str) -> None:
    """One run role remains (a run executes ingest, model and alerts in one process), narrowed:
    SageMaker and PassRole only with the SageMaker backend, endpoint rights only in endpoint mode,
    the lake and KMS only when configured, and every policy has one purpose."""
    parameters = SCENARIOS[scenario]
    s = stack(**parameters)
    policies = s.role_policies("RunTaskRole")
    expected = {"CloudTrailListPolicy", "CloudTrailReadPolicy", "WarehousePolicy", "AlertPublishPolicy"}
    if parameters.get("ModelBackend") == "sagemaker":
        expected.add("SageMakerOrchestrationPolicy")
        if parameters.get("SageMakerScoringMode") == "endpoint":
            expected.add("SageMakerEndpointPolicy")
    if "SecurityLakeBucket" in parameters:
        expected.add("SecurityLakeReadPolicy")
        if parameters.get("SecurityLakeReadPath") == "athena":
            expected.add("SecurityLakeAthenaPolicy")
    if "CloudTrailKmsKeyArn" in parameters:
        expected.add("CloudTrailKmsDecryptPolicy")
    assert set(policies) == expected

    services = {
        name: {a.split(":")[0] for st in doc["Statement"] for a in as_list(st["Action"])}
        for name, doc in policies.items()
    }
    assert services["AlertPublishPolicy"] == {"sns"}
    for name in expected - {"AlertPublishPolicy", "SageMakerOrchestrationPolicy", "SageMakerEndpointPolicy"}:
        assert services[name] <= DATA_SERVICES, name  # data access never mixes with SageMaker or SNS rights
    if "SageMakerOrchestrationPolicy" in policies:
        assert services["SageMakerOrchestrationPolicy"] == {"sagemaker", "iam", "s3"}
        artifacts = f"arn:aws:s3:::{s.ref('ArtifactsBucket')}"
        for st in policies["SageMakerOrchestrationPolicy"]["Statement"]:  # its S3 rights: the artifacts bucket only
            if any(a.startswith("s3:") for a in as_list(st["Action"])):
                assert all(r == artifacts or r.startswith(artifacts + "/") for r in as_list(st["Resource"])), st["Sid"]
    run = s.effective_policy("RunTaskRole")
    sagemaker_rights = [
        st for st in run["Statement"] if any(a.startswith(("sagemaker:", "iam:")) for a in as_list(st["Action"]))
    ]
    assert bool(sagemaker_rights) == (parameters.get("ModelBackend") == "sagemaker")


def test_the_launcher_could_give_a_run_its_own_task_role() -> None:
    """The documented way to split the run role later: the ``ecs/task_overrides`` run tag reaches RunTask."""
    from dagster import DagsterRun
    from dagster_aws.ecs import EcsRunLauncher
    from dagster_aws.ecs.container_context import EcsContainerContext

    role = stack(**BATCH).get_att("RunTaskRole", "Arn").replace("RunTaskRole", "ModelRunRole")
    run = DagsterRun(job_name="proactive_daily_job", tags={"ecs/task_overrides": json.dumps({"taskRoleArn": role})})
    launcher = EcsRunLauncher.__new__(EcsRunLauncher)  # no AWS client needed for this method
    overrides = launcher._get_task_overrides(EcsContainerContext(), run)
    assert overrides == {"taskRoleArn": role}
