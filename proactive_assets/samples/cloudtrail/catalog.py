"""The sample's fixed vocabulary: regions, bucket, the API calls each kind of caller makes, user agents."""

import numpy as np

REGIONS: tuple[str, ...] = ("us-east-1", "eu-west-1", "ap-southeast-2")
HOME_REGION = "us-east-1"
BUCKET = "example-org-cloudtrail-logs"

# Every API call the sample makes: (service, eventName, readOnly, requestParameters, logged in us-east-1 only)

_EVENT_TABLE: tuple[tuple[str, str, bool, dict | None, bool], ...] = (
    ("sts", "GetCallerIdentity", True, None, False),
    ("s3", "ListBuckets", True, {"Host": "s3.amazonaws.com"}, False),
    (
        "s3",
        "GetBucketLocation",
        True,
        {"bucketName": "acme-app-artifacts", "Host": "s3.amazonaws.com", "location": ""},
        False,
    ),
    (
        "s3",
        "GetBucketPolicy",
        True,
        {"bucketName": "acme-app-artifacts", "Host": "s3.amazonaws.com", "policy": ""},
        False,
    ),
    ("s3", "GetBucketAcl", True, {"bucketName": BUCKET, "Host": f"{BUCKET}.s3.amazonaws.com", "acl": ""}, False),
    ("ec2", "DescribeInstances", True, {"instancesSet": {}, "filterSet": {}}, False),
    ("ec2", "DescribeSecurityGroups", True, {"securityGroupSet": {}, "securityGroupIdSet": {}, "filterSet": {}}, False),
    ("ec2", "DescribeVpcs", True, {"vpcSet": {}, "filterSet": {}}, False),
    ("ec2", "DescribeSubnets", True, {"subnetSet": {}, "filterSet": {}}, False),
    ("ec2", "DescribeRegions", True, {"regionSet": {}, "allRegions": True}, False),
    (
        "ec2",
        "DescribeSnapshots",
        True,
        {"snapshotSet": {}, "ownersSet": {"items": [{"owner": "self"}]}, "filterSet": {}},
        False,
    ),
    ("ec2", "DescribeTags", True, {"filterSet": {}}, False),
    ("ec2", "DescribeAccountAttributes", True, {"accountAttributeNameSet": {}, "filterSet": {}}, False),
    ("ec2", "CreateSnapshot", False, {"volumeId": "vol-0b1c2d3e4f5a6b7c8", "description": "nightly backup"}, False),
    ("ec2", "DeleteSnapshot", False, {"snapshotId": "snap-0a9b8c7d6e5f4a3b2"}, False),
    ("ec2", "StartInstances", False, {"instancesSet": {"items": [{"instanceId": "i-0d4c3b2a1f0e9d8c7"}]}}, False),
    (
        "ec2",
        "StopInstances",
        False,
        {"instancesSet": {"items": [{"instanceId": "i-0d4c3b2a1f0e9d8c7"}]}, "force": False},
        False,
    ),
    ("iam", "ListRoles", True, None, True),
    ("iam", "GetRole", True, {"roleName": "app-server-role"}, True),
    ("iam", "ListPolicies", True, {"scope": "Local", "onlyAttached": False}, True),
    ("iam", "GetAccountSummary", True, None, True),
    ("iam", "ListUsers", True, None, True),
    ("iam", "ListGroups", True, None, True),
    ("iam", "GetUser", True, None, True),
    ("iam", "ListAccessKeys", True, None, True),
    ("iam", "ListAttachedUserPolicies", True, {"userName": "deploy-bot"}, True),
    ("iam", "GetAccountAuthorizationDetails", True, {"filter": ["User", "Role", "Group", "LocalManagedPolicy"]}, True),
    ("iam", "CreateUser", False, {"userName": "svc-maintenance"}, True),
    ("iam", "CreateLoginProfile", False, {"userName": "svc-maintenance", "passwordResetRequired": False}, True),
    ("iam", "CreateAccessKey", False, {"userName": "svc-maintenance"}, True),
    (
        "iam",
        "AttachUserPolicy",
        False,
        {"userName": "svc-maintenance", "policyArn": "arn:aws:iam::aws:policy/AdministratorAccess"},
        True,
    ),
    ("iam", "PutRolePolicy", False, {"roleName": "app-server-role", "policyName": "maintenance"}, True),
    ("cloudformation", "DescribeStacks", True, None, False),
    ("cloudformation", "ListStacks", True, {"stackStatusFilter": ["CREATE_COMPLETE", "UPDATE_COMPLETE"]}, False),
    ("cloudformation", "GetTemplate", True, {"stackName": "app-service"}, False),
    ("cloudformation", "CreateChangeSet", False, {"stackName": "app-service", "changeSetType": "UPDATE"}, False),
    ("cloudformation", "DescribeChangeSet", True, {"stackName": "app-service"}, False),
    ("cloudformation", "ExecuteChangeSet", False, {"stackName": "app-service"}, False),
    ("logs", "DescribeLogGroups", True, {"limit": 50}, False),
    ("logs", "FilterLogEvents", True, {"logGroupName": "/aws/lambda/nightly-report", "limit": 100}, False),
    ("logs", "CreateLogStream", False, {"logGroupName": "/app/server"}, False),
    ("lambda", "ListFunctions20150331", True, None, False),
    ("lambda", "GetFunction20150331v2", True, {"functionName": "nightly-report"}, False),
    ("lambda", "UpdateFunctionCode20150331v2", False, {"functionName": "s3-object-tagger", "publish": True}, False),
    ("ssm", "GetParameter", True, {"name": "/app/config/db-host"}, False),
    ("ssm", "GetParameters", True, {"names": ["/app/config/db-host", "/app/config/db-port"]}, False),
    ("ssm", "DescribeParameters", True, None, False),
    ("ssm", "UpdateInstanceInformation", False, {"agentName": "amazon-ssm-agent", "agentVersion": "3.3.1142.0"}, False),
    ("ssm", "StartSession", False, {"target": "i-0d4c3b2a1f0e9d8c7"}, False),
    ("kms", "Decrypt", True, {"encryptionAlgorithm": "SYMMETRIC_DEFAULT"}, False),
    ("kms", "ListAliases", True, None, False),
    ("kms", "ListKeys", True, None, False),
    ("secretsmanager", "GetSecretValue", True, {"secretId": "prod/app/db"}, False),
    ("secretsmanager", "ListSecrets", True, None, False),
    ("dynamodb", "DescribeTable", True, {"tableName": "orders"}, False),
    ("rds", "DescribeDBInstances", True, None, False),
    ("ecr", "GetAuthorizationToken", True, None, False),
    ("ecr", "DescribeRepositories", True, None, False),
    ("ecr", "PutImage", False, {"repositoryName": "app-service", "imageTag": "latest"}, False),
    ("cloudwatch", "DescribeAlarms", True, {"maxRecords": 100}, False),
    ("guardduty", "ListDetectors", True, None, False),
    ("cloudtrail", "DescribeTrails", True, {"includeShadowTrails": True}, False),
    ("organizations", "DescribeOrganization", True, None, True),
    ("health", "DescribeEventAggregates", True, {"aggregateField": "eventTypeCategory"}, True),
    ("sts", "AssumeRole", True, None, False),
    ("sts", "AssumeRoleWithWebIdentity", True, None, False),
)

# The table with full service names; EVENT_INDEX: name -> position; GLOBAL_EVENT: logged in us-east-1 only
EVENTS: tuple[tuple[str, str, bool, dict | None, bool], ...] = tuple(
    (f"{svc}.amazonaws.com", name, ro, params, glob) for svc, name, ro, params, glob in _EVENT_TABLE
)
EVENT_INDEX = {name: i for i, (_, name, _, _, _) in enumerate(EVENTS)}
GLOBAL_EVENT = np.array([e[4] for e in EVENTS], dtype=bool)


def _catalog(*pairs: tuple[str, float]) -> tuple[np.ndarray, np.ndarray]:
    idx = np.array([EVENT_INDEX[name] for name, _ in pairs], dtype=np.int64)
    weights = np.array([w for _, w in pairs], dtype=float)
    return idx, np.cumsum(weights / weights.sum())


# What each kind of caller calls: event positions and their cumulative odds
CATALOGS = {
    "human": _catalog(
        ("GetCallerIdentity", 6),
        ("ListBuckets", 6),
        ("GetBucketPolicy", 2),
        ("DescribeInstances", 10),
        ("DescribeSecurityGroups", 5),
        ("DescribeVpcs", 3),
        ("DescribeSubnets", 2),
        ("StartInstances", 0.6),
        ("StopInstances", 0.6),
        ("ListRoles", 3),
        ("GetRole", 2),
        ("ListPolicies", 1),
        ("DescribeStacks", 5),
        ("ListStacks", 2),
        ("DescribeLogGroups", 4),
        ("FilterLogEvents", 3),
        ("ListFunctions20150331", 3),
        ("GetFunction20150331v2", 2),
        ("GetParameter", 2),
        ("StartSession", 0.7),
        ("ListAliases", 1),
        ("ListSecrets", 1),
        ("DescribeAlarms", 2),
        ("DescribeRepositories", 1),
        ("DescribeTable", 2),
        ("DescribeDBInstances", 2),
        ("DescribeEventAggregates", 1.5),
    ),
    "internal": _catalog(
        ("DescribeAccountAttributes", 3), ("ListAliases", 2), ("GetAccountSummary", 2), ("GetBucketLocation", 2)
    ),
    "backup": _catalog(
        ("ListBuckets", 2),
        ("GetBucketLocation", 3),
        ("DescribeSnapshots", 4),
        ("CreateSnapshot", 3),
        ("DeleteSnapshot", 2),
    ),
    "instance": _catalog(
        ("UpdateInstanceInformation", 8),
        ("Decrypt", 6),
        ("GetSecretValue", 3),
        ("DescribeTags", 3),
        ("CreateLogStream", 2),
        ("GetCallerIdentity", 1),
        ("GetParameters", 2),
        ("GetAuthorizationToken", 1),
    ),
    "lambda": _catalog(
        ("DescribeTable", 3), ("Decrypt", 4), ("GetSecretValue", 2), ("GetParameter", 3), ("GetBucketLocation", 1)
    ),
    "cicd": _catalog(
        ("GetCallerIdentity", 2),
        ("DescribeStacks", 6),
        ("GetTemplate", 2),
        ("CreateChangeSet", 2),
        ("DescribeChangeSet", 4),
        ("ExecuteChangeSet", 1),
        ("GetAuthorizationToken", 2),
        ("PutImage", 1),
        ("UpdateFunctionCode20150331v2", 1),
        ("GetBucketLocation", 1),
    ),
    "config": _catalog(
        ("DescribeInstances", 4),
        ("DescribeSecurityGroups", 4),
        ("DescribeVpcs", 2),
        ("DescribeSubnets", 2),
        ("ListRoles", 1),
        ("GetBucketAcl", 1),
        ("DescribeDBInstances", 1),
    ),
    "autoscaling": _catalog(("DescribeInstances", 3), ("DescribeAccountAttributes", 1), ("DescribeSubnets", 1)),
    "cloudtrail": _catalog(("GetBucketAcl", 1)),
}

# The List*/Describe* calls of an intruder finding their way around
RECON = (
    "ListBuckets",
    "DescribeInstances",
    "DescribeRegions",
    "ListUsers",
    "ListRoles",
    "ListPolicies",
    "GetAccountAuthorizationDetails",
    "ListAccessKeys",
    "ListAttachedUserPolicies",
    "ListSecrets",
    "DescribeSnapshots",
    "ListFunctions20150331",
    "DescribeDBInstances",
    "ListDetectors",
    "DescribeTrails",
    "DescribeOrganization",
    "ListKeys",
    "DescribeParameters",
    "ListGroups",
    "GetUser",
    "DescribeSecurityGroups",
)

# User agents, by kind of caller

UA_BROWSER = (
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/131.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:133.0) Gecko/20100101 Firefox/133.0",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/18.1 Safari/605.1.15",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/131.0.0.0 Safari/537.36 Edg/131.0.0.0",
)
UA_CLI = (
    "aws-cli/2.22.4 md/awscrt#0.22.0 ua/2.0 os/macos#24.1.0 md/arch#arm64 lang/python#3.12.6 md/pyimpl#CPython "
    "cfg/retry-mode#standard md/installer#exe md/prompt#off",
    "aws-cli/2.19.1 md/awscrt#0.22.0 ua/2.0 os/linux#6.8.0-49-generic md/arch#x86_64 lang/python#3.12.6 "
    "md/pyimpl#CPython cfg/retry-mode#standard md/installer#exe md/distrib#ubuntu.24 md/prompt#off",
    "Boto3/1.35.76 md/Botocore#1.35.76 ua/2.0 os/macos#24.1.0 md/arch#arm64 lang/python#3.12.7 md/pyimpl#CPython "
    "cfg/retry-mode#legacy Botocore/1.35.76",
    "APN/1.0 HashiCorp/1.0 Terraform/1.10.1 (+https://www.terraform.io) terraform-provider-aws/5.80.0 "
    "(+https://registry.terraform.io/providers/hashicorp/aws) aws-sdk-go-v2/1.32.6 ua/2.1 os/macos lang/go#1.23.3 "
    "md/GOOS#darwin md/GOARCH#arm64 api/ec2#1.196.0",
)
UA_INSTANCE = (
    "aws-sdk-go/1.55.5 (go1.22.7; linux; amd64) amazon-ssm-agent/3.3.1142.0",
    "Boto3/1.34.162 md/Botocore#1.34.162 ua/2.0 os/linux#6.1.115-126.197.amzn2023.x86_64 md/arch#x86_64 "
    "lang/python#3.9.20 md/pyimpl#CPython cfg/retry-mode#legacy Botocore/1.34.162",
    "aws-sdk-java/2.25.60 Linux/6.1.115-126.197.amzn2023.x86_64 OpenJDK_64-Bit_Server_VM/21.0.5+11-LTS Java/21.0.5 "
    "vendor/Amazon.com_Inc. io/sync http/Apache cfg/retry-mode/legacy",
)
UA_LAMBDA = (
    "Boto3/1.35.36 md/Botocore#1.35.36 ua/2.0 os/linux#5.10.227-239.884.amzn2.x86_64 md/arch#x86_64 "
    "lang/python#3.12.7 md/pyimpl#CPython exec-env/AWS_Lambda_python3.12 cfg/retry-mode#legacy Botocore/1.35.36"
)
UA_CI = (
    "aws-cli/2.22.2 md/awscrt#0.22.0 ua/2.0 os/linux#6.5.0-1025-azure md/arch#x86_64 lang/python#3.12.6 "
    "md/pyimpl#CPython exec-env/GitHubActions cfg/retry-mode#standard md/installer#exe md/distrib#ubuntu.22 "
    "md/prompt#off md/command#cloudformation.deploy"
)
UA_BACKUP = (
    "aws-sdk-java/1.12.780 Linux/5.15.0-126-generic OpenJDK_64-Bit_Server_VM/17.0.13+11 java/17.0.13 vendor/Ubuntu"
)
UA_ATTACK = (
    "aws-cli/1.22.34 Python/3.11.8 Linux/6.6.15-amd64 botocore/1.23.34",
    "Boto3/1.34.14 md/Botocore#1.34.14 ua/2.0 os/linux#6.6.9-amd64 md/arch#x86_64 lang/python#3.11.8 "
    "md/pyimpl#CPython cfg/retry-mode#legacy Botocore/1.34.14 Resource",
    "aws-sdk-go/1.50.8 (go1.21.6; linux; amd64)",
)
