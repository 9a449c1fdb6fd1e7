"""IAM trust policies for GitLab ID tokens: build them, evaluate them, explain them.

One implementation of "the trust policy for these claims", shared by the
``gitlab-botocore trust-policy`` command, the local STS of :mod:`gitlab_botocore.testing.sts`
and the tests of the CloudFormation and Terraform examples.

What AWS can see of a GitLab token: for an OIDC provider other than the few AWS knows by
name (GitHub, Google, CircleCI, Oracle Cloud), STS puts only the ``sub`` and ``aud`` claims
into the request context, as ``<provider host>:sub`` and ``<provider host>:aud``. Conditions
on any other claim (``ref_protected``, ``environment``, ``project_path``...) test a key that
is absent: ``StringEquals`` on it never holds. So everything a trust policy can say about a
GitLab job, it says through ``sub``: by default
``project_path:<group>/<project>:ref_type:<branch|tag>:ref:<name>``, or one of the three
other shapes a project can choose (:data:`SUB_SHAPES`).

Checking a policy means two questions. Does it admit this job? That is IAM's evaluation for
this token's request. Whom else does it admit? For that the checker builds the requests an
outsider could make (a token of another project, of a look-alike branch, of another identity
provider, an ``sts:AssumeRole`` call from another AWS account) and evaluates the whole
policy, Deny statements included, for each: every one that gets in is a finding, with the
example that got in.

The package, by job: :mod:`.naming` (provider ARNs, ``sub`` patterns), :mod:`.building`
(policies for a project or a token), :mod:`.evaluation` (IAM's decision), and the linting:
:mod:`.linting` (:func:`check_trust_policy`), :mod:`.outsiders` (whom else),
:mod:`.sub_patterns` (what a ``sub`` pattern admits) and :mod:`.report`. Names with a
leading underscore are shared between these modules and private to the package.
"""

from __future__ import annotations

from .building import UnenforceableConditionError, build_trust_policy, policy_for_token
from .evaluation import claim_values, condition_context, condition_holds, trust_policy_allows
from .linting import check_trust_policy, provider_arn_in
from .naming import (
    ACTION,
    CONTEXT_CLAIMS,
    SUB_SHAPES,
    has_wildcard,
    provider_arn_for,
    provider_host,
    sub_components,
    subject_pattern,
)
from .report import Finding, TrustPolicyReport

__all__ = [
    "ACTION",
    "CONTEXT_CLAIMS",
    "SUB_SHAPES",
    "Finding",
    "TrustPolicyReport",
    "UnenforceableConditionError",
    "build_trust_policy",
    "check_trust_policy",
    "claim_values",
    "condition_context",
    "condition_holds",
    "has_wildcard",
    "policy_for_token",
    "provider_arn_for",
    "provider_arn_in",
    "provider_host",
    "sub_components",
    "subject_pattern",
    "trust_policy_allows",
]
