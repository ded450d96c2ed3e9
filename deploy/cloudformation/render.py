"""Render the IAM policies of proactive-assets.yaml for given parameter values, without AWS.

The template is the only copy of the project's IAM policies. This module evaluates its
intrinsic functions (Ref, Fn::Sub, Fn::GetAtt, Fn::If and the conditions, Fn::Join, Fn::Split,
Fn::Select, Fn::FindInMap) with sample physical ids, so the tests can check the policies against
the calls the code makes, and so a person can validate them before deploying:

    python deploy/cloudformation/render.py --region eu-west-1 --account 111122223333 \\
        --param CloudTrailBucket=org-trail-logs --param ModelBackend=sagemaker --out build/policies
    for f in build/policies/*.json; do
      case "$f" in *.trust.json) t=RESOURCE_POLICY;; *) t=IDENTITY_POLICY;; esac
      aws accessanalyzer validate-policy --policy-type "$t" --policy-document "file://$f" --query findings
    done

Physical ids of the stack's own resources are stand-ins (a role's ARN ends in its logical id);
an attribute this module does not know raises, so a stand-in can never pass a check by accident.
Only PyYAML is needed.
"""

import argparse
import json
import re
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

TEMPLATE = Path(__file__).with_name("proactive-assets.yaml")

# Parameters without a default need a value; these are the ones the tests and examples use.
SAMPLE_PARAMETERS = {
    "ImageUri": "111122223333.dkr.ecr.eu-west-1.amazonaws.com/proactive-assets:0a1b2c3",
    "VpcId": "vpc-0123456789abcdef0",
    "SubnetIds": "subnet-0123456789abcdef0,subnet-0fedcba9876543210",
    "WebserverIngressCidr": "10.20.0.0/16",
    "CloudTrailBucket": "org-cloudtrail-logs",
}


class _NoValue:
    """``AWS::NoValue``: removes the key or list item that holds it."""

    def __repr__(self) -> str:
        return "AWS::NoValue"


NO_VALUE = _NoValue()


class _Loader(yaml.SafeLoader):
    """YAML with CloudFormation's short-form tags (``!Ref``, ``!Sub``, ...) as long-form dicts."""


def _construct(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> dict[str, Any]:
    if isinstance(node, yaml.ScalarNode):
        value: Any = loader.construct_scalar(node)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)
    if suffix == "Ref":
        return {"Ref": value}
    if suffix == "Condition":
        return {"Condition": value}
    if suffix == "GetAtt" and isinstance(value, str):
        value = value.split(".", 1)
    return {f"Fn::{suffix}": value}


_Loader.add_multi_constructor("!", _construct)


def load_template(path: Path = TEMPLATE) -> dict[str, Any]:
    """The template as plain dicts and lists, intrinsic functions in their long form."""
    return yaml.load(path.read_text(), Loader=_Loader)


class Stack:
    """The template evaluated for one set of parameters, region and account."""

    def __init__(
        self,
        parameters: Mapping[str, str] | None = None,
        *,
        region: str = "eu-west-1",
        account: str = "111122223333",
        partition: str = "aws",
        stack_name: str = "proactive",
        template: dict[str, Any] | None = None,
    ) -> None:
        self.template = template if template is not None else load_template()
        self.region, self.account, self.partition, self.stack_name = region, account, partition, stack_name
        declared = self.template["Parameters"]
        given = {**SAMPLE_PARAMETERS, **(parameters or {})}
        unknown = sorted(set(given) - set(declared))
        if unknown:
            raise KeyError(f"unknown template parameters {unknown}")
        self.parameters: dict[str, Any] = {}
        for name, spec in declared.items():
            if name not in given and "Default" not in spec:
                raise KeyError(f"parameter {name} has no default: pass a value")
            value = str(given.get(name, spec.get("Default")))
            allowed = spec.get("AllowedValues")
            if allowed is not None and value not in [str(v) for v in allowed]:
                raise ValueError(f"parameter {name}={value!r} is not one of {allowed}")
            pattern = spec.get("AllowedPattern")
            if pattern is not None and not re.fullmatch(pattern, value):
                raise ValueError(f"parameter {name}={value!r} does not match {pattern}")
            self.parameters[name] = value.split(",") if spec["Type"].startswith("List<") else value
        self.resources: dict[str, Any] = self.template["Resources"]
        self._conditions: dict[str, bool] = {}

    # ------------------------------------------------------------------ conditions

    def condition(self, name: str) -> bool:
        """The value of a named condition (evaluated once)."""
        if name not in self._conditions:
            self._conditions[name] = bool(self.resolve(self.template["Conditions"][name]))
        return self._conditions[name]

    def exists(self, logical_id: str) -> bool:
        """Whether the resource is created with these parameters (its Condition holds)."""
        condition = self.resources[logical_id].get("Condition")
        return condition is None or self.condition(condition)

    # ------------------------------------------------------------------ physical ids

    def _pseudo(self, name: str) -> Any:
        pseudo = {
            "AWS::Region": self.region,
            "AWS::AccountId": self.account,
            "AWS::Partition": self.partition,
            "AWS::StackName": self.stack_name,
            "AWS::URLSuffix": "amazonaws.com",
            "AWS::NoValue": NO_VALUE,
        }
        return pseudo[name]

    def _arn(self, service: str, resource: str, region: bool = True, account: bool = True) -> str:
        return (
            f"arn:{self.partition}:{service}:{self.region if region else ''}:"
            f"{self.account if account else ''}:{resource}"
        )

    def ref(self, logical_id: str) -> Any:
        """What ``Ref`` returns for a parameter, pseudo parameter or resource of this stack."""
        if logical_id.startswith("AWS::"):
            return self._pseudo(logical_id)
        if logical_id in self.parameters:
            return self.parameters[logical_id]
        resource = self.resources[logical_id]
        if not self.exists(logical_id):
            raise ValueError(f"Ref to {logical_id}, which these parameters do not create")
        kind = resource["Type"]
        name = f"{self.stack_name}-{logical_id}"
        refs = {
            "AWS::S3::Bucket": name.lower(),
            "AWS::SNS::Topic": self._arn("sns", name),
            "AWS::IAM::Role": name,
            "AWS::IAM::ManagedPolicy": self._arn("iam", f"policy/{name}", region=False),
            "AWS::Logs::LogGroup": name,
            "AWS::ECS::Cluster": name,
            "AWS::SecretsManager::Secret": self._arn("secretsmanager", f"secret:{name}-AbCdEf"),
            "AWS::ECS::TaskDefinition": self._arn("ecs", f"task-definition/{name}:1"),
            "AWS::ECS::Service": self._arn("ecs", f"service/{self.stack_name}-Cluster/{name}"),
            "AWS::EC2::SecurityGroup": f"sg-{logical_id.lower()}",
            "AWS::RDS::DBSubnetGroup": name.lower(),
            "AWS::RDS::DBInstance": name.lower(),
        }
        if kind == "AWS::Athena::WorkGroup":
            return self.resolve(resource["Properties"]["Name"])
        if kind not in refs:
            raise KeyError(f"Ref of a {kind} ({logical_id}) is not modelled here")
        return refs[kind]

    def get_att(self, logical_id: str, attribute: str) -> str:
        """What ``Fn::GetAtt`` returns; unknown attributes raise instead of inventing a value."""
        kind = self.resources[logical_id]["Type"]
        if not self.exists(logical_id):
            raise ValueError(f"GetAtt of {logical_id}, which these parameters do not create")
        if (kind, attribute) == ("AWS::IAM::Role", "Arn"):
            return self._arn("iam", f"role/{self.ref(logical_id)}", region=False)
        if (kind, attribute) == ("AWS::S3::Bucket", "Arn"):
            return self._arn("s3", self.ref(logical_id), region=False, account=False)
        if (kind, attribute) == ("AWS::ECS::Cluster", "Arn"):
            return self._arn("ecs", f"cluster/{self.ref(logical_id)}")
        if (kind, attribute) == ("AWS::RDS::DBInstance", "Endpoint.Address"):
            return f"{logical_id.lower()}.abcdefghijkl.{self.region}.rds.amazonaws.com"
        if (kind, attribute) == ("AWS::ServiceDiscovery::Service", "Arn"):
            return self._arn("servicediscovery", f"service/srv-{logical_id.lower()}")
        if (kind, attribute) == ("AWS::ServiceDiscovery::PrivateDnsNamespace", "Id"):
            return f"ns-{logical_id.lower()}"
        if (kind, attribute) == ("AWS::ECS::Service", "Name"):
            return f"{self.stack_name}-{logical_id}"
        raise KeyError(f"GetAtt {logical_id}.{attribute} ({kind}) is not modelled here")

    # ------------------------------------------------------------------ intrinsic functions

    def _sub(self, text: str, variables: Mapping[str, Any]) -> str:
        def replace(match: re.Match[str]) -> str:
            name = match.group(1)
            if name.startswith("!"):
                return "${" + name[1:] + "}"
            if name in variables:
                value = variables[name]
            elif "." in name and not name.startswith("AWS::"):
                value = self.get_att(*name.split(".", 1))
            else:
                value = self.ref(name)
            if not isinstance(value, str):
                raise TypeError(f"Fn::Sub variable {name} is not a string: {value!r}")
            return value

        return re.sub(r"\$\{([^}]+)\}", replace, text)

    def resolve(self, node: Any) -> Any:
        """``node`` with every intrinsic function and condition evaluated."""
        if isinstance(node, list):
            items = [self.resolve(item) for item in node]
            return [item for item in items if item is not NO_VALUE]
        if not isinstance(node, dict):
            return node
        if len(node) == 1:
            ((key, arg),) = node.items()
            if key == "Ref":
                return self.ref(arg)
            if key == "Condition":
                return self.condition(arg)
            if key == "Fn::Sub":
                if isinstance(arg, str):
                    return self._sub(arg, {})
                text, variables = arg
                return self._sub(text, {k: self.resolve(v) for k, v in variables.items()})
            if key == "Fn::GetAtt":
                return self.get_att(*arg)
            if key == "Fn::If":
                name, when_true, when_false = arg
                return self.resolve(when_true if self.condition(name) else when_false)
            if key == "Fn::Equals":
                left, right = (self.resolve(a) for a in arg)
                return str(left) == str(right)
            if key == "Fn::Not":
                return not self.resolve(arg[0])
            if key == "Fn::And":
                return all(self.resolve(a) for a in arg)
            if key == "Fn::Or":
                return any(self.resolve(a) for a in arg)
            if key == "Fn::Join":
                separator, items = arg
                return separator.join(self.resolve(items))
            if key == "Fn::Split":
                separator, text = arg
                return self.resolve(text).split(separator)
            if key == "Fn::Select":
                index, items = arg
                return self.resolve(items)[int(index)]
            if key == "Fn::FindInMap":
                mapping, first, second = (self.resolve(a) for a in arg)
                return self.template["Mappings"][mapping][first][second]
            if key.startswith("Fn::"):
                raise KeyError(f"{key} is not modelled here")
        out = {}
        for key, value in node.items():
            resolved = self.resolve(value)
            if resolved is not NO_VALUE:
                out[key] = resolved
        return out

    # ------------------------------------------------------------------ what the tests read

    def properties(self, logical_id: str) -> dict[str, Any]:
        """A resource's properties, resolved."""
        if not self.exists(logical_id):
            raise ValueError(f"{logical_id} is not created with these parameters")
        return self.resolve(self.resources[logical_id].get("Properties", {}))

    def managed_policies(self) -> dict[str, dict[str, Any]]:
        """Every ``AWS::IAM::ManagedPolicy`` this stack creates: logical id -> resolved properties."""
        return {
            logical_id: self.properties(logical_id)
            for logical_id, resource in self.resources.items()
            if resource["Type"] == "AWS::IAM::ManagedPolicy" and self.exists(logical_id)
        }

    def role_policies(self, role: str) -> dict[str, dict[str, Any]]:
        """The policy documents a role gets from this stack: managed policies naming it, inline ones.

        AWS managed policies (``ManagedPolicyArns``) are listed by ARN with an empty document.
        """
        if self.resources[role]["Type"] != "AWS::IAM::Role":
            raise TypeError(f"{role} is not a role")
        role_ref = self.ref(role)
        found: dict[str, dict[str, Any]] = {}
        for logical_id, props in self.managed_policies().items():
            if role_ref in props.get("Roles", []):
                found[logical_id] = props["PolicyDocument"]
        props = self.properties(role)
        for inline in props.get("Policies", []):
            found[f"{role}/{inline['PolicyName']}"] = inline["PolicyDocument"]
        for arn in props.get("ManagedPolicyArns", []):
            if not arn.startswith(f"arn:{self.partition}:iam::aws:policy/"):
                raise ValueError(f"{role}: customer managed policy {arn} attached by ARN, not by the stack")
            found[arn] = {}
        return found

    def effective_policy(self, role: str) -> dict[str, Any]:
        """The union of the statements a role gets from this stack (one document)."""
        statements = [s for doc in self.role_policies(role).values() for s in doc.get("Statement", [])]
        return {"Version": "2012-10-17", "Statement": statements}

    def trust_policy(self, role: str) -> dict[str, Any]:
        return self.properties(role)["AssumeRolePolicyDocument"]

    def roles(self) -> list[str]:
        return [
            logical_id
            for logical_id, resource in self.resources.items()
            if resource["Type"] == "AWS::IAM::Role" and self.exists(logical_id)
        ]


def write_policies(stack: Stack, out: Path) -> list[Path]:
    """One JSON file per (role, policy) and per trust policy, for IAM Access Analyzer."""
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for role in stack.roles():
        files = {f"{role}.trust.json": stack.trust_policy(role)}
        for name, document in stack.role_policies(role).items():
            if document:
                files[f"{role}.{name.replace('/', '.')}.json"] = document
        for filename, document in files.items():
            path = out / filename
            path.write_text(json.dumps(document, indent=2) + "\n")
            written.append(path)
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--param", action="append", default=[], metavar="NAME=VALUE", help="a template parameter")
    parser.add_argument("--region", default="eu-west-1")
    parser.add_argument("--account", default="111122223333")
    parser.add_argument("--stack-name", default="proactive")
    parser.add_argument("--out", type=Path, required=True, help="folder for the rendered policy documents")
    args = parser.parse_args(argv)
    parameters = {}
    for item in args.param:
        name, sep, value = item.partition("=")
        if not sep:
            parser.error(f"--param {item!r}: expected NAME=VALUE")
        parameters[name] = value
    try:
        stack = Stack(parameters, region=args.region, account=args.account, stack_name=args.stack_name)
        paths = write_policies(stack, args.out)
    except (KeyError, ValueError) as exc:
        print(f"render.py: {exc}", file=sys.stderr)
        return 2
    for path in paths:
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
