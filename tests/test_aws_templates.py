"""The AWS side as code (examples/aws): lint, deploy, evaluate, and prove who gets in.

CloudFormation: moto's own CloudFormation deploys the template (``create_stack`` with
parameters) into the moto server the tests share; ``tests/moto_cloudformation.py`` adds the
resource type moto lacks (``AWS::IAM::OIDCProvider``) and the ``ManagedPolicyArns`` its role
ignores. The verifying local STS reads the roles moto created, and jobs ask for credentials
through ``import gitlab_botocore; boto3.Session()``. moto does not check parameter
constraints, so cfn-lint judges each value against them (see :func:`cloudformation_refuses`).

Terraform: ``terraform`` evaluates the module where it is installed; the tests skip
otherwise. No AWS provider can be downloaded here, so what is evaluated is what depends on
the variables alone: their validation blocks (``terraform validate``), and the trust policy
of ``trust_policy.tf`` together with the expressions that hand it to the role (``main.tf``)
and the output (``outputs.tf``) (``terraform apply`` of a module with no resources). Each
case is an instance of that part in one root module, so all cases of a kind take a single
``terraform init`` and run. The policy must equal :func:`build_trust_policy` and the one
CloudFormation deploys.
"""

from __future__ import annotations

import json
import os
import re
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
from gitlab_botocore.testing.aws import FakeAWS
from gitlab_botocore.testing.issuer import FakeGitLab
from gitlab_botocore.tools.trust_policy import (
    build_trust_policy,
    check_trust_policy,
    subject_pattern,
)

from . import moto_cloudformation  # noqa: F401 - registers the resource types moto lacks
from .conftest import ACCOUNT_ID, Job

EXAMPLES = Path(__file__).parent.parent / "examples" / "aws"
TEMPLATE_PATH = EXAMPLES / "cloudformation.yaml"
TERRAFORM_MODULE = EXAMPLES / "terraform"
URL = "https://gitlab.example.com"
PROVIDER = f"arn:aws:iam::{ACCOUNT_ID}:oidc-provider/gitlab.example.com"
SESSION_NAME = "GitLabRunner-42-1001-5001"
TERRAFORM = shutil.which("terraform")

needs_cfn_lint = pytest.mark.skipif(
    sys.version_info < (3, 10),  # moto's older cfn-lint there has other rules
    reason="the dev group's cfn-lint (1.58) needs Python 3.10+",
)
needs_terraform = pytest.mark.skipif(
    TERRAFORM is None, reason="terraform is not on PATH, so the Terraform module is not evaluated"
)


@needs_cfn_lint
def test_cfn_lint_passes() -> None:
    from cfnlint.api import lint  # type: ignore[import-untyped]

    assert [str(match) for match in lint(TEMPLATE_PATH.read_text())] == []


# -- parameters and variables are validated the same way in both -------------------------------


@dataclass(frozen=True)
class ValueCase:
    """One value for one CloudFormation parameter and the matching Terraform variable."""

    parameter: str
    value: str
    variable: str
    variable_value: Any
    valid: bool

    @property
    def id(self) -> str:
        return f"{self.parameter}={self.value}"


GITLAB_URLS = [
    ("https://gitlab.example.com", True),
    ("https://gitlab.example.com:8443", True),
    ("https://example.com/gitlab", True),
    ("https://gitlab.example.com/", False),
    ("https://example.com/gitlab/", False),
    ("http://gitlab.example.com", False),
    ("gitlab.example.com", False),
    ("https://", False),
    ("https://gitlab.example.com?x=1", False),
]
PROJECT_PATHS = [  # the top-level group must be spelled out
    ("mygroup/app", True),
    ("mygroup/sub/app", True),
    ("mygroup/*", True),
    ("my.group_1/app-2", True),
    ("app", False),
    ("*/app", False),
    ("my*/app", False),
    ("mygroup/app:x", False),
    ('mygroup/"app', False),
]
VALUES = [
    *(ValueCase("GitLabUrl", url, "gitlab_url", url, valid) for url, valid in GITLAB_URLS),
    *(ValueCase("ProjectPath", p, "project_paths", [p], valid) for p, valid in PROJECT_PATHS),
    ValueCase("RefType", "*", "ref_type", "*", True),
    ValueCase("RefType", "mr", "ref_type", "mr", False),
    ValueCase("Ref", "release/*", "ref", "release/*", True),
    ValueCase("Ref", "a:b", "ref", "a:b", False),
    ValueCase("Ref", "a b", "ref", "a b", False),
    ValueCase("MaxSessionDuration", "43200", "max_session_duration", 43200, True),
    ValueCase("MaxSessionDuration", "900", "max_session_duration", 900, False),
    ValueCase("MaxSessionDuration", "43201", "max_session_duration", 43201, False),
]


def cloudformation_refuses(parameters: dict[str, str]) -> set[str]:
    """The parameters whose values break their ``AllowedPattern``, ``AllowedValues``,
    ``MinValue`` or ``MaxValue``.

    CloudFormation refuses to create a stack with such a value; moto does not check. cfn-lint
    1.58 checks values given with ``--parameters`` (rule E2900) against ``AllowedValues`` but
    not ``AllowedPattern`` or the bounds, while its rule E2015 checks a parameter's
    ``Default`` against all four: so each value is judged as the Default of its parameter.
    (cfn-lint matches patterns with Python's ``regex``, CloudFormation with Java's; the
    template's patterns mean the same in both.)
    """
    from cfnlint.api import lint
    from cfnlint.decode.decode import decode_str  # type: ignore[import-untyped]
    from cfnlint.rules import RulesCollection  # type: ignore[import-untyped]
    from cfnlint.rules.parameters.Default import Default  # type: ignore[import-untyped]

    template, errors = decode_str(TEMPLATE_PATH.read_text())
    assert template is not None, errors
    declared = template["Parameters"]
    for name, value in parameters.items():
        declared[name]["Default"] = int(value) if declared[name]["Type"] == "Number" else value
    rules = RulesCollection()
    rules.register(Default())
    refused = set()
    for match in lint(json.dumps(template), rules=rules):
        assert match.rule.id == "E2015", match  # not some other failure
        refused.add(str(match.path[1]))
    return refused


# Rule E2015 alone is the same in the older cfn-lint that moto brings to Python 3.9.
@pytest.mark.parametrize("case", VALUES, ids=lambda case: case.id)
def test_cloudformation_checks_each_parameter(case: ValueCase) -> None:
    refused = cloudformation_refuses({case.parameter: case.value})
    assert refused == (set() if case.valid else {case.parameter})


def terraform(directory: Path, *arguments: str) -> subprocess.CompletedProcess[str]:
    """Run terraform offline in ``directory``, with no configuration from the machine."""
    assert TERRAFORM is not None
    cli_config = directory / "terraformrc"
    cli_config.write_text("")
    environment = {name: value for name, value in os.environ.items() if not name.startswith("TF_")}
    environment.update(
        CHECKPOINT_DISABLE="1",  # no call home
        TF_IN_AUTOMATION="1",
        TF_CLI_CONFIG_FILE=str(cli_config),
    )
    return subprocess.run(
        [TERRAFORM, *arguments, "-no-color"],
        capture_output=True,
        text=True,
        cwd=directory,
        env=environment,
        timeout=120,
        check=False,
    )


def expression(path: Path, block: str, attribute: str) -> str:
    """The expression of ``attribute`` in ``block`` of ``path``, one line as terraform fmt
    leaves it."""
    found = re.search(rf"^{re.escape(block)} {{\n(.*?)^}}", path.read_text(), re.M | re.S)
    assert found, f"{path.name} has no {block}"
    assignment = re.search(rf"^ *{attribute} *= *(.+)$", found.group(1), re.M)
    assert assignment, f"{block} in {path.name} has no {attribute}"
    return assignment.group(1)


def terraform_root(directory: Path, instances: dict[str, dict[str, Any]]) -> Path:
    """An initialised root module calling the example's provider-free part once per instance.

    The called module is ``variables.tf`` and ``trust_policy.tf`` as they are, the provider
    ARN as a variable (``main.tf`` takes it from the provider it creates), and as outputs the
    policy and the expressions ``main.tf`` and ``outputs.tf`` give the role and the output.
    """
    module = directory / "trust"
    module.mkdir()
    for name in ("variables.tf", "trust_policy.tf"):
        shutil.copy(TERRAFORM_MODULE / name, module / name)
    role = expression(
        TERRAFORM_MODULE / "main.tf", 'resource "aws_iam_role" "this"', "assume_role_policy"
    )
    output = expression(TERRAFORM_MODULE / "outputs.tf", 'output "trust_policy"', "value")
    (module / "wiring.tf").write_text(
        'variable "oidc_provider_arn" {\n  type = string\n}\n'
        "locals {\n  oidc_provider_arn = var.oidc_provider_arn\n}\n"
        'output "trust_policy" {\n  value = local.trust_policy\n}\n'
        f'output "role_assume_role_policy" {{\n  value = {role}\n}}\n'
        f'output "trust_policy_output" {{\n  value = {output}\n}}\n'
    )
    common = {
        "source": "./trust",
        "gitlab_url": URL,
        "role_name": "r",
        "oidc_provider_arn": PROVIDER,
    }
    root = {
        "module": {name: {**common, **variables} for name, variables in instances.items()},
        "output": {name: {"value": f"${{module.{name}}}"} for name in instances},
    }
    (directory / "main.tf.json").write_text(json.dumps(root, indent=1))
    initialised = terraform(directory, "init", "-input=false", "-backend=false")
    assert initialised.returncode == 0, initialised.stdout + initialised.stderr
    return directory


@pytest.fixture(scope="module")
def terraform_refusals(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[Any]]:
    """``terraform validate``'s complaints about each of ``VALUES``, by instance name."""
    instances = {
        f"value_{index}": {"project_paths": ["mygroup/app"], case.variable: case.variable_value}
        for index, case in enumerate(VALUES)
    }
    directory = terraform_root(tmp_path_factory.mktemp("terraform-values"), instances)
    validated = terraform(directory, "validate", "-json")
    refusals: dict[str, list[Any]] = {}
    for diagnostic in json.loads(validated.stdout)["diagnostics"]:
        instance = diagnostic.get("snippet", {}).get("context", "")
        assert diagnostic["summary"] == "Invalid value for variable", diagnostic
        assert instance.startswith("module.value_"), diagnostic  # not some other failure
        refusals.setdefault(instance[len("module.") :], []).append(diagnostic)
    return refusals


@needs_terraform
@pytest.mark.parametrize("index", range(len(VALUES)), ids=[case.id for case in VALUES])
def test_terraform_checks_each_variable(
    terraform_refusals: dict[str, list[Any]], index: int
) -> None:
    case = VALUES[index]
    refused = [
        value["traversal"]
        for diagnostic in terraform_refusals.get(f"value_{index}", [])
        for value in diagnostic["snippet"]["values"]
    ]
    assert refused == ([] if case.valid else [f"var.{case.variable}"])


# -- CloudFormation, deployed by moto and used through the library ------------------------------


@dataclass
class Stack:
    name: str
    parameters: dict[str, str]
    role_name: str
    role_arn: str
    provider_arn: str
    trust_policy: dict[str, Any]


@dataclass
class Clients:
    cloudformation: Any
    iam: Any


@pytest.fixture(scope="module")
def clients(aws_session: FakeAWS) -> Clients:
    """moto's CloudFormation and IAM (a client per test would load the service model anew)."""
    return Clients(aws_session.client("cloudformation"), aws_session.client("iam"))


def deploy(clients: Clients, name: str, parameters: dict[str, str]) -> Stack:
    """Create a stack of the template with moto's CloudFormation; read back what it made."""
    cloudformation = clients.cloudformation
    cloudformation.create_stack(
        StackName=name,
        TemplateBody=TEMPLATE_PATH.read_text(),
        Parameters=[{"ParameterKey": k, "ParameterValue": v} for k, v in parameters.items()],
    )
    stack = cloudformation.describe_stacks(StackName=name)["Stacks"][0]
    assert stack["StackStatus"] == "CREATE_COMPLETE", stack
    outputs = {output["OutputKey"]: output["OutputValue"] for output in stack["Outputs"]}
    # moto's describe_stack_resource fails on a stack with a resource left out by its condition.
    resources = cloudformation.list_stack_resources(StackName=name)["StackResourceSummaries"]
    [role_name] = [
        r["PhysicalResourceId"] for r in resources if r.get("LogicalResourceId") == "Role"
    ]
    return Stack(
        name=name,
        parameters=parameters,
        role_name=role_name,
        role_arn=outputs["RoleArn"],
        provider_arn=outputs["ProviderArn"],
        trust_policy=clients.iam.get_role(RoleName=role_name)["Role"]["AssumeRolePolicyDocument"],
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
def stacks(clients: Clients, issuer: FakeGitLab) -> dict[str, Stack]:
    iam = clients.iam
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
        clients,
        f"exact-{suffix}",
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
            clients,
            f"pattern-{suffix}",
            {
                **shared,
                "ProjectPath": "mygroup/*",
                "Ref": "release/*",
                "RoleName": f"cfn-pattern-{suffix}",
            },
        ),
        "tags": deploy(
            clients,
            f"tags-{suffix}",
            {**shared, "ProjectPath": "mygroup/app", "RefType": "tag", "Ref": "v*"},
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
    assert iam.get_role(RoleName=exact.role_name)["Role"]["Description"] == (
        "Assumed by GitLab CI/CD jobs of mygroup/app (branch main)"
    )
    # Without RoleName, CloudFormation names the role after the stack.
    assert stacks["tags"].role_name.startswith(f"{stacks['tags'].name}-Role-")


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
        assert "another audience (https://elsewhere.example), not for AWS" in message
    assert [c.outcome for c in aws.sts.calls][-1] in ("AccessDenied", "InvalidIdentityToken")
    # The checker the CLI uses reaches the same verdict on the deployed policy.
    report = check_trust_policy(stack.trust_policy, token_claims)
    assert not report.admits
    assert report.of_severity("error")


# -- Terraform ------------------------------------------------------------------------------

POLICIES: dict[str, dict[str, Any]] = {
    "defaults": {"project_paths": ["mygroup/app"]},
    "pattern": {"project_paths": ["mygroup/*"], "ref": "release/*"},
    "any_ref_type_own_audience": {
        "project_paths": ["mygroup/app"],
        "ref_type": "*",
        "audience": "sts.amazonaws.com",
    },
    "question_mark": {"project_paths": ["mygroup/app"], "ref_type": "tag", "ref": "v?"},
    "mixed_and_repeated": {
        "project_paths": ["mygroup/app", "mygroup/tools/*", "mygroup/app"],
        "ref_type": "tag",
        "ref": "v1",
    },
}


@pytest.fixture(scope="module")
def terraform_policies(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    """The outputs of the called module for each of ``POLICIES``, as terraform applies them."""
    directory = terraform_root(tmp_path_factory.mktemp("terraform-policies"), POLICIES)
    applied = terraform(directory, "apply", "-auto-approve", "-input=false")
    assert applied.returncode == 0, applied.stdout + applied.stderr
    outputs = terraform(directory, "output", "-json")
    assert outputs.returncode == 0, outputs.stderr
    return {name: output["value"] for name, output in json.loads(outputs.stdout).items()}


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


@needs_terraform
@pytest.mark.parametrize("name", POLICIES)
def test_terraform_trust_policy_is_build_trust_policy(
    terraform_policies: dict[str, dict[str, Any]], name: str
) -> None:
    module = terraform_policies[name]
    expected = expected_policy(POLICIES[name])
    assert module["trust_policy"] == expected
    # The role and the output use exactly that document.
    assert json.loads(module["role_assume_role_policy"]) == expected
    assert json.loads(module["trust_policy_output"]) == expected


@needs_terraform
@pytest.mark.parametrize(
    "name", [name for name, v in POLICIES.items() if len(v["project_paths"]) == 1]
)  # the template takes one project
def test_terraform_and_cloudformation_agree(
    terraform_policies: dict[str, dict[str, Any]], clients: Clients, name: str
) -> None:
    variables = POLICIES[name]
    parameters = {
        "GitLabUrl": URL,
        "ExistingProviderArn": PROVIDER,
        "ProjectPath": variables["project_paths"][0],
    }
    for key, parameter in (("ref_type", "RefType"), ("ref", "Ref"), ("audience", "Audience")):
        if key in variables:
            parameters[parameter] = variables[key]
    stack_name = f"agree-{name.replace('_', '-')}-{uuid.uuid4().hex[:8]}"
    stack = deploy(clients, stack_name, parameters)
    assert stack.trust_policy == terraform_policies[name]["trust_policy"]


@needs_terraform
def test_terraform_files_are_formatted(tmp_path: Path) -> None:
    result = terraform(tmp_path, "fmt", "-check", "-diff", str(TERRAFORM_MODULE))
    assert result.returncode == 0, result.stdout + result.stderr
