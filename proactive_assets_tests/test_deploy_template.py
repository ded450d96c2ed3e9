"""The CloudFormation template itself: cfn-lint clean, deployable as one file, rendered faithfully.

cfn-lint (installed with moto, in the test extra) checks the template against CloudFormation's
resource schemas and its own rules, errors, warnings and informational findings alike. The
template's policies are checked in test_deploy_files.py through deploy/cloudformation/render.py,
whose YAML reading is compared here with cfn-lint's own decoder, so both see the same template.
"""

import importlib.util
import json
import re
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
TEMPLATE = ROOT / "deploy" / "cloudformation" / "proactive-assets.yaml"
RENDER = ROOT / "deploy" / "cloudformation" / "render.py"
# `aws cloudformation deploy --template-file` sends the body inline up to this size; larger needs --s3-bucket.
TEMPLATE_BODY_MAX_BYTES = 51_200
LINT_REGIONS = ["us-east-1", "eu-west-1"]


def _render_module() -> Any:
    spec = importlib.util.spec_from_file_location("proactive_deploy_render_t", RENDER)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


render = _render_module()


def _lint(text: str, regions: list[str] = LINT_REGIONS) -> list[str]:
    from cfnlint.api import ManualArgs, lint

    matches = lint(text, config=ManualArgs(include_checks=["I"], regions=regions))
    return [f"{m.rule.id} {m.message} (line {m.linenumber})" for m in matches]


def test_cfn_lint_finds_nothing() -> None:
    assert _lint(TEMPLATE.read_text()) == []


def test_cfn_lint_would_catch_a_mistake() -> None:
    """The lint is not vacuous: a misspelt pseudo parameter is reported."""
    text = TEMPLATE.read_text()
    broken = text.replace("!Ref AWS::AccountId", "!Ref AWS::AcountId", 1)
    assert broken != text
    assert any(finding.startswith("E1020") for finding in _lint(broken, regions=LINT_REGIONS[:1]))


def test_the_default_database_version_is_one_rds_still_creates() -> None:
    """cfn-lint checks engine versions only when they are literal: lint the default in place."""
    text = TEMPLATE.read_text()
    default = render.load_template()["Parameters"]["DbEngineVersion"]["Default"]
    literal = text.replace("EngineVersion: !Ref DbEngineVersion", f'EngineVersion: "{default}"')
    assert literal != text
    findings = [f for f in _lint(literal, regions=LINT_REGIONS[:1]) if re.match(r"[EWI]369\d", f)]
    assert findings == [], f"DbEngineVersion default {default}: {findings}"


def test_the_template_deploys_as_one_file() -> None:
    text = TEMPLATE.read_text()
    assert len(text.encode()) <= TEMPLATE_BODY_MAX_BYTES
    # CloudFormation refuses YAML anchors and aliases ("YAML aliases are not allowed").
    assert not re.search(r"(^|\s)[&*][A-Za-z]\w*\s*$", text, flags=re.MULTILINE)


def _plain(value: Any) -> Any:
    return json.loads(json.dumps(value))


def test_render_reads_the_template_as_cfn_lint_does() -> None:
    from cfnlint.decode import decode_str

    decoded, problems = decode_str(TEMPLATE.read_text())
    assert not problems
    assert render.load_template() == _plain(decoded)


def test_every_optional_part_switches_on_and_off() -> None:
    """Each optional part can be switched on, and off again (no resource is dead in every case)."""
    on = render.Stack(
        {
            "ModelBackend": "sagemaker",
            "SageMakerScoringMode": "endpoint",
            "SecurityLakeBucket": "aws-security-data-lake-eu-west-1-abc",
            "SecurityLakeQueueArn": "arn:aws:sqs:eu-west-1:111122223333:Queue",
            "SecurityLakeReadPath": "athena",
            "CloudTrailKmsKeyArn": "arn:aws:kms:eu-west-1:111122223333:key/k",
            "AlertEmail": "soc@example.com",
            "EnableEcsExec": "true",
            "DbMultiAz": "true",
        }
    )
    off = render.Stack({})
    template = render.load_template()
    assert all(on.exists(r) for r in template["Resources"])
    optional = {r for r, spec in template["Resources"].items() if "Condition" in spec}
    assert optional and not any(off.exists(r) for r in optional)
    for resource in template["Resources"]:  # every resource renders in full, nothing unmodelled
        on.properties(resource)
    for name, output in template["Outputs"].items():
        assert on.resolve(output["Value"]), name


def test_parameters_are_validated_like_cloudformation_does() -> None:
    with pytest.raises(ValueError, match="ModelBackend"):
        render.Stack({"ModelBackend": "gpu"})
    with pytest.raises(ValueError, match="CloudTrailPrefix"):
        render.Stack({"CloudTrailPrefix": "no-trailing-slash"})
    with pytest.raises(KeyError, match="unknown template parameters"):
        render.Stack({"Warehouse": "x"})
    with pytest.raises(ValueError, match="Ref to ArtifactsBucket"):
        render.Stack({}).ref("ArtifactsBucket")  # not created with the local backend


def test_render_cli_writes_every_policy_for_access_analyzer(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = render.main(["--out", str(tmp_path), "--param", "ModelBackend=sagemaker", "--region", "us-east-2"])
    assert code == 0
    written = sorted(p.name for p in tmp_path.iterdir())
    assert "SageMakerExecutionRole.trust.json" in written
    assert "RunTaskRole.SageMakerOrchestrationPolicy.json" in written
    assert "RunTaskRole.SageMakerEndpointPolicy.json" not in written  # batch scoring by default
    for path in tmp_path.iterdir():
        document = json.loads(path.read_text())
        assert document["Version"] == "2012-10-17" and document["Statement"], path.name
        assert "${" not in path.read_text(), path.name
    image = json.loads((tmp_path / "SageMakerExecutionRole.SageMakerExecutionPolicy.json").read_text())
    pull = next(s for s in image["Statement"] if s["Sid"] == "PullBuiltInIpInsightsImage")
    assert pull["Resource"] == "arn:aws:ecr:us-east-2:404615174143:repository/ipinsights"
    assert capsys.readouterr().out.count(".json") == len(written)
    assert render.main(["--out", str(tmp_path), "--param", "ModelBackend=gpu"]) == 2
    assert "ModelBackend" in capsys.readouterr().err
