"""The AWS side as code (examples/aws): lint, deploy into moto, and prove who gets in.

CloudFormation: moto 5.2.5's CloudFormation has no ``AWS::IAM::OIDCProvider``, so the template
is rendered here for its parameters (``tests/cloudformation.py``) and its resources are created
through moto's IAM, which the verifying local STS reads. Jobs then ask for credentials through
``import gitlab_botocore; boto3.Session()``.

Terraform: there is no AWS provider here, so nothing is applied. The trust policy lives in
``trust_policy.tf``, which depends only on the variables and the provider ARN; it is evaluated
with ``tests/hcl.py`` (a purpose-built evaluator for the HCL the module uses, which fails on
anything else) and must equal :func:`build_trust_policy` and the CloudFormation rendering.
Where ``terraform`` is installed, ``terraform console`` evaluates the same files and must
agree with that evaluator, so the evaluator cannot drift from Terraform's semantics.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import jwt
import pytest

from gitlab_botocore import AccessDeniedError, InvalidIdentityTokenError, STSError
from gitlab_botocore.testing.issuer import FakeGitLab
from gitlab_botocore.testing.sts import FakeAWS
from gitlab_botocore.trust_policy import build_trust_policy, check_trust_policy, subject_pattern

from .cloudformation import ParameterError, Rendering, load_template
from .conftest import ACCOUNT_ID, Job
from .hcl import HCLError, evaluate_module

EXAMPLES = Path(__file__).parent.parent / "examples" / "aws"
TEMPLATE_PATH = EXAMPLES / "cloudformation.yaml"
TERRAFORM = EXAMPLES / "terraform"
TEMPLATE = load_template(TEMPLATE_PATH)
URL = "https://gitlab.example.com"
PROVIDER = f"arn:aws:iam::{ACCOUNT_ID}:oidc-provider/gitlab.example.com"
SESSION_NAME = "GitLabRunner-42-1001-5001"


def test_cfn_lint_passes() -> None:
    if sys.version_info < (3, 10):  # moto's older cfn-lint there has other rules
        pytest.skip("the dev group's cfn-lint (1.58) needs Python 3.10+")
    cfn_lint = Path(sys.executable).with_name("cfn-lint")
    assert cfn_lint.exists(), "cfn-lint is in the dev dependency group: pip install --group dev"
    result = subprocess.run(
        [str(cfn_lint), str(TEMPLATE_PATH)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


# -- parameters are validated the same way in both ---------------------------------------------


def cloudformation_accepts(**parameters: str) -> bool:
    try:
        Rendering(TEMPLATE, parameters)
    except ParameterError:
        return False
    return True


def terraform_accepts(**variables: Any) -> bool:
    variables.setdefault("role_name", "r")
    try:
        evaluate_module(
            [TERRAFORM / "variables.tf", TERRAFORM / "trust_policy.tf"],
            variables,
            {"oidc_provider_arn": PROVIDER},
        )
    except HCLError as error:
        refusal = str(error)
    else:
        return True
    assert "Invalid value for variable" in refusal, refusal  # not some other failure
    return False


@pytest.mark.parametrize(
    ("url", "valid"),
    [
        ("https://gitlab.example.com", True),
        ("https://gitlab.example.com:8443", True),
        ("https://example.com/gitlab", True),
        ("https://gitlab.example.com/", False),
        ("https://example.com/gitlab/", False),
        ("http://gitlab.example.com", False),
        ("gitlab.example.com", False),
        ("https://", False),
        ("https://gitlab.example.com?x=1", False),
    ],
)
def test_gitlab_url_must_be_https_without_trailing_slash(url: str, valid: bool) -> None:
    assert cloudformation_accepts(GitLabUrl=url, ProjectPath="mygroup/app") is valid
    assert terraform_accepts(gitlab_url=url, project_paths=["mygroup/app"]) is valid


@pytest.mark.parametrize(
    ("project", "valid"),
    [
        ("mygroup/app", True),
        ("mygroup/sub/app", True),
        ("mygroup/*", True),
        ("my.group_1/app-2", True),
        ("app", False),
        ("*/app", False),
        ("my*/app", False),
        ("mygroup/app:x", False),
        ('mygroup/"app', False),
    ],
)
def test_project_path_must_name_its_top_level_group(project: str, valid: bool) -> None:
    assert cloudformation_accepts(ProjectPath=project) is valid
    assert terraform_accepts(project_paths=[project]) is valid


@pytest.mark.parametrize(
    ("parameters", "variables"),
    [
        ({"RefType": "mr"}, {"ref_type": "mr"}),
        ({"Ref": "a:b"}, {"ref": "a:b"}),
        ({"Ref": "a b"}, {"ref": "a b"}),
        ({"MaxSessionDuration": "900"}, {"max_session_duration": 900}),
        ({"MaxSessionDuration": "43201"}, {"max_session_duration": 43201}),
    ],
)
def test_other_parameters_are_validated(
    parameters: dict[str, str], variables: dict[str, Any]
) -> None:
    assert not cloudformation_accepts(ProjectPath="mygroup/app", **parameters)
    assert not terraform_accepts(project_paths=["mygroup/app"], **variables)


# -- CloudFormation, deployed into moto and used through the library ---------------------------


@dataclass
class Stack:
    parameters: dict[str, str]
    role_name: str
    role_arn: str
    provider_arn: str
    trust_policy: dict[str, Any]


def deploy(iam: Any, parameters: dict[str, str]) -> Stack:
    """Create the template's resources as CloudFormation would, through the IAM API."""
    rendering = Rendering(TEMPLATE, parameters, account_id=ACCOUNT_ID)
    provider = rendering.resource("GitLabProvider")
    if provider is not None:
        created = iam.create_open_id_connect_provider(
            Url=provider["Url"],
            ClientIDList=provider["ClientIdList"],
            # Optional for AWS today, but required by the IAM model of older botocore.
            ThumbprintList=provider.get("ThumbprintList") or ["0" * 40],
        )
        rendering.refs["GitLabProvider"] = created["OpenIDConnectProviderArn"]
    role = rendering.resource("Role")
    assert role is not None
    name = role.get("RoleName", f"gitlab-botocore-test-Role-{uuid.uuid4().hex[:12]}")
    document = role["AssumeRolePolicyDocument"]
    arn = iam.create_role(
        RoleName=name,
        AssumeRolePolicyDocument=document,  # the JSON text Fn::Sub produced
        Description=role["Description"],
        MaxSessionDuration=int(role["MaxSessionDuration"]),
    )["Role"]["Arn"]
    for policy_arn in role.get("ManagedPolicyArns", []):
        iam.attach_role_policy(RoleName=name, PolicyArn=policy_arn)
    rendering.refs["Role"] = name
    rendering.attributes[("Role", "Arn")] = arn
    return Stack(
        parameters=parameters,
        role_name=name,
        role_arn=rendering.output("RoleArn"),
        provider_arn=rendering.output("ProviderArn"),
        trust_policy=json.loads(document),
    )


@pytest.fixture(scope="module")
def issuer() -> Iterator[FakeGitLab]:
    """A GitLab instance of its own: an account holds one OIDC provider per URL."""
    with FakeGitLab() as server:
        yield server


def https_url(gitlab: FakeGitLab) -> str:
    # The fake serves plain HTTP. AWS (and the local STS) find the provider by the issuer's
    # host and path, so the https:// form the template demands names the same provider.
    return "https://" + gitlab.issuer.split("://", 1)[1]


@pytest.fixture(scope="module")
def stacks(aws_session: FakeAWS, issuer: FakeGitLab) -> dict[str, Stack]:
    iam = aws_session.client("iam")
    suffix = uuid.uuid4().hex[:8]
    list_buckets = iam.create_policy(
        PolicyName=f"list-buckets-{suffix}",
        PolicyDocument=json.dumps(
            {
                "Version": "2012-10-17",
                "Statement": [
                    {"Effect": "Allow", "Action": "s3:ListAllMyBuckets", "Resource": "*"}
                ],
            }
        ),
    )["Policy"]["Arn"]
    url = https_url(issuer)
    exact = deploy(
        iam,
        {
            "GitLabUrl": url,
            "ProjectPath": "mygroup/app",
            "RoleName": f"cfn-exact-{suffix}",
            "ManagedPolicyArns": list_buckets,
            "MaxSessionDuration": "7200",
        },
    )
    shared = {"GitLabUrl": url, "ExistingProviderArn": exact.provider_arn}
    return {
        "exact": exact,
        "pattern": deploy(
            iam,
            {
                **shared,
                "ProjectPath": "mygroup/*",
                "Ref": "release/*",
                "RoleName": f"cfn-pattern-{suffix}",
            },
        ),
        "tags": deploy(
            iam, {**shared, "ProjectPath": "mygroup/app", "RefType": "tag", "Ref": "v*"}
        ),
    }


def test_the_stack_creates_the_provider_and_the_role(
    stacks: dict[str, Stack], aws: FakeAWS, issuer: FakeGitLab
) -> None:
    iam = aws.client("iam")
    exact = stacks["exact"]
    provider = iam.get_open_id_connect_provider(OpenIDConnectProviderArn=exact.provider_arn)
    assert provider["ClientIDList"] == [https_url(issuer)]
    assert exact.role_arn == f"arn:aws:iam::{ACCOUNT_ID}:role/{exact.role_name}"
    assert iam.get_role(RoleName=exact.role_name)["Role"]["MaxSessionDuration"] == 7200
    attached = iam.list_attached_role_policies(RoleName=exact.role_name)["AttachedPolicies"]
    assert [p["PolicyArn"] for p in attached] == [exact.parameters["ManagedPolicyArns"]]
    # Later stacks reuse the provider instead of creating a second one for the same URL.
    assert {s.provider_arn for s in stacks.values()} == {exact.provider_arn}
    assert stacks["tags"].role_name.startswith("gitlab-botocore-test-Role-")


@pytest.mark.parametrize(
    ("name", "project", "ref_type", "ref"),
    [
        ("exact", "mygroup/app", "branch", "main"),
        ("pattern", "mygroup/*", "branch", "release/*"),
        ("tags", "mygroup/app", "tag", "v*"),
    ],
)
def test_the_trust_policy_is_build_trust_policy(
    stacks: dict[str, Stack],
    issuer: FakeGitLab,
    *,
    name: str,
    project: str,
    ref_type: str,
    ref: str,
) -> None:
    stack = stacks[name]
    assert stack.trust_policy == build_trust_policy(
        provider_arn=stack.provider_arn,
        audience=https_url(issuer),
        subjects=[subject_pattern(project, ref_type=ref_type, ref=ref)],
    )


def run_job(job: Job, issuer: FakeGitLab, stack: Stack, **claims: Any) -> dict[str, Any]:
    """Point the job at the stack's role with a token of ``issuer``; return its claims."""
    claims.setdefault("audience", https_url(issuer))
    token = issuer.mint(**claims)
    job.set(AWS_ROLE_ARN=stack.role_arn, CI_SERVER_URL=issuer.issuer, GITLAB_OIDC_TOKEN=token)
    decoded: dict[str, Any] = jwt.decode(token, options={"verify_signature": False})
    return decoded


ADMITTED = [
    pytest.param("exact", {"project_path": "mygroup/app"}, id="exact-main"),
    pytest.param(
        "pattern", {"project_path": "mygroup/api", "ref": "release/1.0"}, id="pattern-project"
    ),
    pytest.param(
        "pattern", {"project_path": "mygroup/sub/api", "ref": "release/2"}, id="pattern-subgroup"
    ),
    pytest.param(
        "tags", {"project_path": "mygroup/app", "ref_type": "tag", "ref": "v1.2.3"}, id="tag"
    ),
]


@pytest.mark.parametrize(("name", "claims"), ADMITTED)
def test_intended_jobs_get_credentials(
    stacks: dict[str, Stack],
    job: Job,
    aws: FakeAWS,
    issuer: FakeGitLab,
    *,
    name: str,
    claims: dict[str, Any],
) -> None:
    stack = stacks[name]
    token_claims = run_job(job, issuer, stack, **claims)
    identity = boto3.Session().client("sts").get_caller_identity()
    assert identity["Arn"] == (
        f"arn:aws:sts::{ACCOUNT_ID}:assumed-role/{stack.role_name}/{SESSION_NAME}"
    )
    assert [c.outcome for c in aws.sts.calls] == ["ok"]
    report = check_trust_policy(stack.trust_policy, token_claims)
    assert report.admits
    assert not report.of_severity("error")
    assert not report.of_severity("security")


REFUSED = [
    pytest.param(
        "exact", {"project_path": "mygroup/other"}, AccessDeniedError, id="another-project"
    ),
    pytest.param(
        "exact",
        {"project_path": "mygroup/app", "ref": "feature"},
        AccessDeniedError,
        id="another-branch",
    ),
    pytest.param(
        "exact", {"project_path": "mygroup/app", "ref_type": "tag"}, AccessDeniedError, id="a-tag"
    ),
    pytest.param(
        "exact",
        {"project_path": "mygroup/app", "audience": "https://elsewhere.example"},
        InvalidIdentityTokenError,
        id="wrong-audience",
    ),
    pytest.param(
        "pattern",
        {"project_path": "mygroup-evil/api", "ref": "release/1.0"},
        AccessDeniedError,
        id="look-alike-group",
    ),
    pytest.param(
        "pattern",
        {"project_path": "mygroup/api", "ref": "main"},
        AccessDeniedError,
        id="branch-outside-pattern",
    ),
    pytest.param(
        "tags",
        {"project_path": "mygroup/app", "ref": "v1.2.3"},
        AccessDeniedError,
        id="branch-named-like-a-tag",
    ),
]


@pytest.mark.parametrize(("name", "claims", "error"), REFUSED)
def test_other_jobs_are_refused_with_an_explanation(
    stacks: dict[str, Stack],
    job: Job,
    aws: FakeAWS,
    issuer: FakeGitLab,
    *,
    name: str,
    claims: dict[str, Any],
    error: type[STSError],
) -> None:
    stack = stacks[name]
    token_claims = run_job(job, issuer, stack, **claims)
    with pytest.raises(error) as caught:
        boto3.Session().get_credentials().get_frozen_credentials()
    assert type(caught.value) is error
    message = str(caught.value)
    assert f"assume {stack.role_arn}" in message
    if error is AccessDeniedError:
        assert f"sub='{token_claims['sub']}'" in message
    else:
        assert "audience (https://elsewhere.example) is not an audience" in message
    assert [c.outcome for c in aws.sts.calls][-1] in ("AccessDenied", "InvalidIdentityToken")
    # The checker the CLI uses reaches the same verdict on the deployed policy.
    report = check_trust_policy(stack.trust_policy, token_claims)
    assert not report.admits
    assert report.of_severity("error")


# -- Terraform ------------------------------------------------------------------------------

CASES = [
    pytest.param({"project_paths": ["mygroup/app"]}, id="defaults"),
    pytest.param({"project_paths": ["mygroup/*"], "ref": "release/*"}, id="pattern"),
    pytest.param(
        {"project_paths": ["mygroup/app"], "ref_type": "*", "audience": "sts.amazonaws.com"},
        id="any-ref-type-own-audience",
    ),
    pytest.param(
        {"project_paths": ["mygroup/app"], "ref_type": "tag", "ref": "v?"}, id="question-mark"
    ),
    pytest.param(
        {
            "project_paths": ["mygroup/app", "mygroup/tools/*", "mygroup/app"],
            "ref_type": "tag",
            "ref": "v1",
        },
        id="mixed-and-repeated",
    ),
]


def terraform_module(variables: dict[str, Any]) -> Any:
    files = ["variables.tf", "trust_policy.tf", "main.tf", "outputs.tf"]
    return evaluate_module(
        [TERRAFORM / f for f in files],
        {"gitlab_url": URL, "role_name": "r", **variables},
        {"oidc_provider_arn": PROVIDER},  # main.tf takes it from the created provider
    )


def expected_policy(variables: dict[str, Any]) -> dict[str, Any]:
    return build_trust_policy(
        provider_arn=PROVIDER,
        audience=variables.get("audience") or URL,
        subjects=[
            subject_pattern(
                path, ref_type=variables.get("ref_type", "branch"), ref=variables.get("ref", "main")
            )
            for path in variables["project_paths"]
        ],
    )


@pytest.mark.parametrize("variables", CASES)
def test_terraform_trust_policy_is_build_trust_policy(variables: dict[str, Any]) -> None:
    module = terraform_module(variables)
    assert module.locals["trust_policy"] == expected_policy(variables)
    # The role and the output use exactly that document.
    role = module.block("resource", "aws_iam_role", "this")
    assert json.loads(module.evaluate(role.attributes["assume_role_policy"])) == expected_policy(
        variables
    )
    output = module.block("output", "trust_policy")
    assert json.loads(module.evaluate(output.attributes["value"])) == expected_policy(variables)


@pytest.mark.parametrize("variables", CASES[:4])  # the template takes one project
def test_terraform_and_cloudformation_agree(variables: dict[str, Any]) -> None:
    parameters = {"GitLabUrl": URL, "ProjectPath": variables["project_paths"][0]}
    for key, name in (("ref_type", "RefType"), ("ref", "Ref"), ("audience", "Audience")):
        if key in variables:
            parameters[name] = variables[key]
    rendering = Rendering(TEMPLATE, parameters, account_id=ACCOUNT_ID)
    rendering.refs["GitLabProvider"] = PROVIDER
    role = rendering.resource("Role")
    assert role is not None
    cloudformation = json.loads(role["AssumeRolePolicyDocument"])
    assert cloudformation == terraform_module(variables).locals["trust_policy"]


def _terraform() -> str | None:
    return shutil.which("terraform")


needs_terraform = pytest.mark.skipif(
    _terraform() is None, reason="terraform is not installed; tests/hcl.py stands in for it"
)


def terraform_console(tmp_path: Path, variables: dict[str, Any], expression: str) -> Any:
    """Evaluate ``expression`` with terraform itself over the provider-free files."""
    for name in ("variables.tf", "trust_policy.tf"):
        shutil.copy(TERRAFORM / name, tmp_path / name)
    (tmp_path / "provider_arn.tf").write_text(
        f'locals {{\n  oidc_provider_arn = "{PROVIDER}"\n}}\n'
    )
    (tmp_path / "test.tfvars.json").write_text(
        json.dumps({"gitlab_url": URL, "role_name": "r", **variables})
    )
    (tmp_path / "terraformrc").write_text("")
    env = {
        **os.environ,
        "CHECKPOINT_DISABLE": "1",  # no call home
        "TF_IN_AUTOMATION": "1",
        "TF_CLI_CONFIG_FILE": str(tmp_path / "terraformrc"),
    }
    result = subprocess.run(
        [str(_terraform()), "console", "-no-color", "-var-file=test.tfvars.json"],
        input=expression,
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        timeout=120,
        check=False,
    )
    # console reports invalid variables on stderr and may still exit 0.
    if result.returncode != 0 or "Error:" in result.stderr:
        raise HCLError(result.stderr)
    return json.loads(json.loads(result.stdout))  # an HCL string holding JSON


@needs_terraform
@pytest.mark.parametrize("variables", CASES)
def test_terraform_itself_renders_the_same_policy(
    tmp_path: Path, variables: dict[str, Any]
) -> None:
    rendered = terraform_console(tmp_path, variables, "jsonencode(local.trust_policy)")
    assert rendered == terraform_module(variables).locals["trust_policy"]
    assert rendered == expected_policy(variables)


@needs_terraform
@pytest.mark.parametrize(
    ("variables", "complaint"),
    [
        ({"gitlab_url": "https://gitlab.example.com/", "project_paths": ["a/b"]}, "https://"),
        ({"project_paths": ["my*/app"]}, "with a literal top-level"),
    ],
)
def test_terraform_itself_rejects_bad_variables(
    tmp_path: Path, variables: dict[str, Any], complaint: str
) -> None:
    with pytest.raises(HCLError, match=complaint):
        terraform_console(tmp_path, variables, "var.role_name")


@needs_terraform
def test_terraform_files_are_formatted() -> None:
    result = subprocess.run(
        [str(_terraform()), "fmt", "-check", "-diff", str(TERRAFORM)],
        capture_output=True,
        text=True,
        env={**os.environ, "CHECKPOINT_DISABLE": "1"},
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
