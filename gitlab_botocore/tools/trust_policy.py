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
"""

from __future__ import annotations

import dataclasses
import json
import logging
import re
from collections.abc import Mapping
from typing import Any, Literal

from gitlab_botocore.explanations import (
    DEFAULT_SUB_SHAPE,
    SUB_SHAPES,
    format_sub,
    provider_host,
    sub_components,
)

__all__ = [
    "ACTION",
    "CONTEXT_CLAIMS",
    "SUB_SHAPES",
    "Finding",
    "TrustPolicyReport",
    "UnenforceableConditionError",
    "build_trust_policy",
    "check_trust_policy",
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

logger = logging.getLogger(__name__)

ACTION = "sts:AssumeRoleWithWebIdentity"
ASSUME_ROLE = "sts:AssumeRole"
POLICY_VERSION = "2012-10-17"
# The only claims of a GitLab token that STS exposes as condition keys (see the module doc).
CONTEXT_CLAIMS = ("aud", "sub")
REF_TYPES = ("branch", "tag", "*")

Severity = Literal["error", "security", "warning", "note"]
# A finding of these severities makes ``trust-policy --check`` exit 1; a note does not.
FAILING: tuple[Severity, ...] = ("error", "security", "warning")
_RANK = {"error": 0, "security": 1, "warning": 2, "note": 3}

_PROVIDER_ARN = re.compile(
    r"arn:(?P<partition>aws[a-z-]*):iam::(?P<account>\d{12}):oidc-provider/(?P<host>.+)"
)
_ACCOUNT_ID = re.compile(r"\d{12}")
_WILDCARDS = frozenset("*?")
_POSITIVE = {
    "StringEquals": "StringEquals",
    "StringNotEquals": "StringEquals",
    "StringEqualsIgnoreCase": "StringEqualsIgnoreCase",
    "StringNotEqualsIgnoreCase": "StringEqualsIgnoreCase",
    "StringLike": "StringLike",
    "StringNotLike": "StringLike",
}
# Web identity providers STS accepts without an IAM OIDC provider in the account: a trust
# policy that admits every federated principal admits their users too.
WELL_KNOWN_PROVIDERS = {
    "accounts.google.com": "any Google account",
    "cognito-identity.amazonaws.com": "any Amazon Cognito identity",
    "graph.facebook.com": "any Facebook user",
    "www.amazon.com": "any Login with Amazon user",
}
_GITHUB = "token.actions.githubusercontent.com"
# What an outsider's request carries, for the requests the checker builds.
_OTHER_ACCOUNT = "999999999999"
_OUTSIDER_AUDIENCE = "https://outsider.example"
_OUTSIDER_GROUP = "outsider-group/project"


class UnenforceableConditionError(ValueError):
    """A condition was asked for that AWS cannot check for a GitLab token."""


# -- names ---------------------------------------------------------------------------------


def provider_arn_for(issuer: str, account_id: str, *, partition: str = "aws") -> str:
    """The ARN of the IAM OIDC provider for ``issuer`` in ``account_id``."""
    if not _ACCOUNT_ID.fullmatch(account_id):
        raise ValueError(f"account_id must be 12 digits, not {account_id!r}")
    return f"arn:{partition}:iam::{account_id}:oidc-provider/{provider_host(issuer)}"


def _host_of(provider_arn: str) -> str:
    match = _PROVIDER_ARN.fullmatch(provider_arn)
    if match is None:
        raise ValueError(
            f"{provider_arn!r} is not the ARN of an IAM OIDC provider "
            "(arn:aws:iam::<account>:oidc-provider/<host>)"
        )
    return match["host"]


def has_wildcard(value: str) -> bool:
    """Whether ``StringLike`` would read ``value`` as a pattern."""
    return not _WILDCARDS.isdisjoint(value)


def subject_pattern(
    project_path: str,
    *,
    ref_type: str = "branch",
    ref: str = "*",
    components: tuple[str, ...] = DEFAULT_SUB_SHAPE,
) -> str:
    """The ``sub`` for a project (or ``group/*``) and a ref pattern, in one of GitLab's shapes.

    ``components`` is the project's ``ci_id_token_sub_claim_components`` (default
    ``project_path,ref_type,ref``); a component it leaves out is not written. The top-level
    group must be spelled out: on a shared instance anyone can create a group whose name
    matches ``my*``.
    """
    if components not in SUB_SHAPES:
        shapes = "; ".join(",".join(shape) for shape in SUB_SHAPES)
        raise ValueError(f"sub components must be one of {shapes}, not {','.join(components)}")
    if not project_path or any(c in project_path for c in ": \t\n"):
        raise ValueError(f"project path {project_path!r} must be non-empty without ':' or spaces")
    namespace, slash, rest = project_path.partition("/")
    if not slash or not rest or has_wildcard(namespace):
        raise ValueError(
            f"project path {project_path!r} must name its top-level group literally "
            "(mygroup/myproject or mygroup/*): anyone can create a group matching a pattern"
        )
    if ref_type not in REF_TYPES:
        raise ValueError(f"ref_type must be one of {', '.join(REF_TYPES)}, not {ref_type!r}")
    if not ref or any(c in ref for c in ": \t\n"):
        raise ValueError(f"ref {ref!r} must be non-empty without ':' or spaces")
    values = {"project_path": project_path, "ref_type": ref_type, "ref": ref}
    return format_sub({name: values[name] for name in components})


# -- building ------------------------------------------------------------------------------


def build_trust_policy(
    *,
    provider_arn: str,
    audience: str | list[str],
    subjects: list[str],
    protected_only: bool = False,
    environment: str | None = None,
) -> dict[str, Any]:
    """A trust policy admitting tokens of this provider with this audience and a listed ``sub``.

    Exact subjects are compared with ``StringEquals``, subjects with ``*`` or ``?`` with
    ``StringLike``. The conditions of one statement must all hold, so a mix of both gets one
    statement each. ``protected_only`` and ``environment`` raise
    :class:`UnenforceableConditionError`: AWS does not show those claims to trust policies.
    """
    _refuse_unenforceable(protected_only=protected_only, environment=environment)
    host = _host_of(provider_arn)
    audiences = [audience] if isinstance(audience, str) else list(audience)
    if not audiences or not all(audiences):
        raise ValueError("audience must be a non-empty string or list of strings")
    wanted = list(dict.fromkeys(subjects))
    if not wanted or not all(wanted):
        raise ValueError("subjects must list at least one non-empty sub value or pattern")
    aud_value: str | list[str] = audience if isinstance(audience, str) else audiences
    exact = [s for s in wanted if not has_wildcard(s)]
    patterns = [s for s in wanted if has_wildcard(s)]
    statements: list[dict[str, Any]] = []
    if exact:
        conditions = {"StringEquals": {f"{host}:aud": aud_value, f"{host}:sub": exact}}
        statements.append(_statement(provider_arn, conditions))
    if patterns:
        conditions = {
            "StringEquals": {f"{host}:aud": aud_value},
            "StringLike": {f"{host}:sub": patterns},
        }
        statements.append(_statement(provider_arn, conditions))
    return {"Version": POLICY_VERSION, "Statement": statements}


def _statement(provider_arn: str, conditions: dict[str, Any]) -> dict[str, Any]:
    return {
        "Effect": "Allow",
        "Principal": {"Federated": provider_arn},
        "Action": ACTION,
        "Condition": conditions,
    }


def _refuse_unenforceable(*, protected_only: bool, environment: str | None) -> None:
    if protected_only:
        raise UnenforceableConditionError(
            "AWS cannot restrict a role to protected refs: STS shows a trust policy only the "
            "'sub' and 'aud' claims of a GitLab token, so a condition on 'ref_protected' never "
            "holds. Name the protected branches or tags in the ref pattern instead (for "
            "example ref 'main' or 'release/*'), and protect exactly those in GitLab."
        )
    if environment is not None:
        raise UnenforceableConditionError(
            "AWS cannot restrict a role to a GitLab environment: STS shows a trust policy only "
            "the 'sub' and 'aud' claims of a GitLab token, so a condition on 'environment' "
            "never holds. Give each environment its own role, limited to the refs that deploy "
            "to it."
        )


def policy_for_token(
    token_claims: Mapping[str, Any],
    *,
    account_id: str,
    ref: str | None = None,
    ref_type: str | None = None,
    any_branch: bool = False,
    protected_only: bool = False,
    partition: str = "aws",
) -> dict[str, Any]:
    """The trust policy that admits this job's project on its ref (by default its exact ``sub``).

    ``ref``/``ref_type`` replace the token's ref (``ref`` may be a pattern such as
    ``release/*``); ``any_branch`` admits every branch of the project. The ``sub`` keeps the
    shape of the token's own (the project may customise it). Raises :class:`ValueError` for
    a pattern that would let in more than it says (``main*`` also admits ``main-evil``).
    """
    _refuse_unenforceable(protected_only=protected_only, environment=None)
    issuer = token_claims.get("iss")
    if not isinstance(issuer, str) or not issuer:
        raise ValueError("the token has no 'iss' claim")
    audience = token_claims.get("aud")
    if isinstance(audience, list) and len(audience) == 1:
        audience = audience[0]
    if not audience or not isinstance(audience, (str, list)):
        raise ValueError("the token has no 'aud' claim")
    sub = token_claims.get("sub")
    if not isinstance(sub, str) or not sub:
        raise ValueError("the token has no 'sub' claim")
    if any_branch:
        if ref_type not in (None, "branch") or ref not in (None, "*"):
            raise ValueError("any_branch admits every branch: leave ref and ref_type unset")
        ref_type, ref = "branch", "*"
    subject = sub
    if ref is not None or ref_type is not None:
        subject = _subject_with(sub, ref=ref, ref_type=ref_type)
        unsafe = [p for p in _sub_probes(subject, "StringLike", None) if p.severity == "security"]
        if unsafe:
            raise ValueError(
                f"the sub pattern {subject} would also let in {unsafe[0].text}, e.g. "
                f"{unsafe[0].sub}. Name the refs exactly, or end a prefix with a separator "
                "(release/*) and protect that pattern in GitLab."
            )
    return build_trust_policy(
        provider_arn=provider_arn_for(issuer, account_id, partition=partition),
        audience=audience,
        subjects=[subject],
    )


def _subject_with(sub: str, *, ref: str | None, ref_type: str | None) -> str:
    """The token's ``sub`` with another ref and/or ref type, in the token's own shape."""
    components = sub_components(sub)
    if components is None:
        raise ValueError(
            f"this token's sub ({sub}) has none of GitLab's sub shapes "
            "(ci_id_token_sub_claim_components): write the pattern for the refs you want by hand"
        )
    shape = ",".join(components)
    if ref_type is not None and "ref_type" not in components:
        raise ValueError(
            f"this project's sub has the components {shape} (ci_id_token_sub_claim_components), "
            "without ref_type: a trust policy cannot tell its branches from its tags. Name "
            "the refs exactly, or add ref_type to the project's sub components."
        )
    if ref not in (None, "*") and "ref" not in components:
        raise ValueError(
            f"this project's sub has the components {shape} (ci_id_token_sub_claim_components), "
            f"without ref: a trust policy admits every {components['ref_type']} of the project "
            f"and cannot single out {ref}. Add ref to the project's sub components."
        )
    wanted = {**components}
    if ref_type is not None:
        wanted["ref_type"] = ref_type
    if ref is not None and "ref" in wanted:
        wanted["ref"] = ref
    return subject_pattern(
        wanted["project_path"],
        ref_type=wanted.get("ref_type", "branch"),
        ref=wanted.get("ref", "*"),
        components=tuple(components),
    )


# -- evaluation (as IAM does for AssumeRoleWithWebIdentity) ----------------------------------


def _wildcard(pattern: str, *, ignore_case: bool = False) -> re.Pattern[str]:
    """Compile an IAM ``*``/``?`` pattern; nothing else is special."""
    parts = [".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern]
    return re.compile("".join(parts), re.DOTALL | (re.IGNORECASE if ignore_case else 0))


def _as_list(value: object) -> list[object]:
    if isinstance(value, (list, tuple)):
        return list(value)
    return [value]


def _as_string(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _value_matches(base: str, actual: str, expected: str) -> bool:
    if base == "StringEquals":
        return actual == expected
    if base == "StringEqualsIgnoreCase":
        return actual.lower() == expected.lower()
    if base == "StringLike":
        return _wildcard(expected).fullmatch(actual) is not None
    raise ValueError(base)


def _split_operator(operator: str) -> tuple[str, str, bool]:
    """``ForAnyValue:StringLikeIfExists`` -> (``ForAnyValue:``, ``StringLike``, True)."""
    qualifier = ""
    for prefix in ("ForAnyValue:", "ForAllValues:"):
        if operator.startswith(prefix):
            qualifier, operator = prefix, operator[len(prefix) :]
    if_exists = operator.endswith("IfExists")
    if if_exists:
        operator = operator[: -len("IfExists")]
    return qualifier, operator, if_exists


def condition_holds(operator: str, expected: object, values: list[str] | None) -> bool:
    """Evaluate one IAM condition operator for one key; ``values`` is ``None`` when absent."""
    qualifier, operator, if_exists = _split_operator(operator)
    wanted = [_as_string(item) for item in _as_list(expected)]

    if operator == "Null":
        return any((w.lower() == "true") == (values is None) for w in wanted)
    base = _POSITIVE.get(operator)
    if base is None:
        logger.warning("Unsupported condition operator %r treated as not satisfied", operator)
        return False
    negated = base != operator
    if values is None:
        # IAM: an absent key fails a positive test but satisfies a negated or for-all one.
        return if_exists or negated or qualifier == "ForAllValues:"

    def hit(actual: str) -> bool:
        return any(_value_matches(base, actual, w) for w in wanted)

    if qualifier == "ForAllValues:":
        return all(hit(v) != negated for v in values)
    if qualifier == "ForAnyValue:":
        return any(hit(v) != negated for v in values)
    return any(hit(v) for v in values) != negated


def condition_context(claims: Mapping[str, Any], host: str) -> dict[str, list[str]]:
    """The condition keys STS sets for a token of the provider ``host``, lower-cased.

    Only ``sub`` and ``aud``: see the module documentation.
    """
    return {
        f"{host}:{name}".lower(): [_as_string(v) for v in _as_list(claims[name])]
        for name in CONTEXT_CLAIMS
        if name in claims
    }


@dataclasses.dataclass(frozen=True)
class _Request:
    """One ``AssumeRole*`` request as IAM sees it: who asks, for what, with which keys.

    ``federated`` is the web identity provider (an IAM OIDC provider ARN, or a name such as
    ``accounts.google.com``); ``aws`` an AWS principal for ``sts:AssumeRole``. ``context``
    maps lower-cased provider condition keys to values. ``host`` is the GitLab provider's
    host: keys that name no provider (``aws:``, ``sts:``) belong to the request itself.
    """

    action: str
    host: str
    federated: str | None = None
    aws: str | None = None
    context: Mapping[str, list[str]] = dataclasses.field(default_factory=dict)

    def with_claims(self, **claims: str) -> _Request:
        context = {**self.context}
        context.update({f"{self.host}:{name}".lower(): [value] for name, value in claims.items()})
        return dataclasses.replace(self, context=context)


@dataclasses.dataclass(frozen=True)
class _FailedTest:
    operator: str
    key: str
    expected: object
    actual: list[str] | None


@dataclasses.dataclass(frozen=True)
class _StatementResult:
    principal: bool
    action: bool
    failed: tuple[_FailedTest, ...]
    malformed: bool = False

    @property
    def applies(self) -> bool:
        return self.principal and self.action and not self.failed and not self.malformed


def _action_matches(actions: object, action: str = ACTION) -> bool:
    return any(
        isinstance(a, str) and _wildcard(a, ignore_case=True).fullmatch(action) is not None
        for a in _as_list(actions)
    )


def _action_applies(statement: Mapping[str, Any], action: str) -> bool:
    """``Action`` lists the action, or ``NotAction`` leaves it out (then it covers it)."""
    if "NotAction" in statement:
        return not _action_matches(statement["NotAction"], action)
    return _action_matches(statement.get("Action"), action)


def _federated(principal: object) -> list[str]:
    if not isinstance(principal, Mapping):
        return []
    return [str(p) for p in _as_list(principal.get("Federated", [])) if p is not None]


def _aws_principals(principal: object) -> list[str]:
    if not isinstance(principal, Mapping):
        return []
    return [str(p) for p in _as_list(principal.get("AWS", [])) if p is not None]


def _names(principal: object, request: _Request) -> bool:
    """Whether a ``Principal`` value covers the request's caller (``"*"`` covers everyone)."""
    if principal == "*":
        return True
    if request.federated is not None:
        federated = _federated(principal)
        if "*" in federated or request.federated in federated:
            return True
    if request.aws is not None:
        account = request.aws.split(":")[4]
        for value in _aws_principals(principal):
            if value in ("*", request.aws, account) or value.endswith(f"::{account}:root"):
                return True
    return False


def _principal_matches(statement: Mapping[str, Any], request: _Request) -> bool:
    if "NotPrincipal" in statement:
        return not _names(statement["NotPrincipal"], request)
    return _names(statement.get("Principal"), request)


def _evaluate(
    statement: Mapping[str, Any], request: _Request, *, assume_request_keys: bool
) -> _StatementResult:
    """How ``statement`` judges ``request``.

    Conditions on request keys (``aws:SourceIp``, ``sts:RoleSessionName``...) cannot be
    judged from a token: ``assume_request_keys`` says whether they count as holding.
    """
    failed: list[_FailedTest] = []
    conditions = statement.get("Condition")
    malformed = conditions is not None and not isinstance(conditions, Mapping)
    if isinstance(conditions, Mapping):
        for operator, tests in conditions.items():
            if not isinstance(tests, Mapping):
                malformed = True
                continue
            for key, expected in tests.items():
                if not _provider_key(str(key), request.host):
                    if not assume_request_keys:
                        failed.append(_FailedTest(str(operator), str(key), expected, None))
                    continue
                actual = request.context.get(str(key).lower())
                if not condition_holds(str(operator), expected, actual):
                    failed.append(_FailedTest(str(operator), str(key), expected, actual))
    return _StatementResult(
        principal=_principal_matches(statement, request),
        action=_action_applies(statement, request.action),
        failed=tuple(failed),
        malformed=malformed,
    )


def _statements(policy: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    return [s for s in _as_list(policy.get("Statement", [])) if isinstance(s, Mapping)]


def _decide(
    statements: list[Mapping[str, Any]],
    request: _Request,
    *,
    allow_assumes: bool = True,
    deny_assumes: bool = True,
) -> list[int]:
    """The indexes of the Allow statements that let ``request`` in, as IAM decides.

    Empty when none does or when a Deny statement applies (an explicit deny wins).
    ``allow_assumes``/``deny_assumes``: whether request-key conditions count as holding in
    Allow and in Deny statements.
    """
    allowing: list[int] = []
    for index, statement in enumerate(statements):
        effect = statement.get("Effect")
        if effect not in ("Allow", "Deny"):
            continue
        assume = deny_assumes if effect == "Deny" else allow_assumes
        if not _evaluate(statement, request, assume_request_keys=assume).applies:
            continue
        if effect == "Deny":
            return []
        allowing.append(index)
    return allowing


def trust_policy_allows(
    policy: Mapping[str, Any], provider_arn: str, context: Mapping[str, list[str]]
) -> bool:
    """Whether ``policy`` lets this provider's token assume the role.

    ``context`` maps lower-cased condition keys to their values (see
    :func:`condition_context`). A matching Deny wins; ``Principal: "*"`` admits, as on AWS.
    Conditions on request keys are assumed to hold.
    """
    request = _Request(ACTION, _host_of(provider_arn), federated=provider_arn, context=context)
    return bool(_decide(_statements(policy), request))


# -- explaining ----------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Finding:
    """One thing worth knowing about a trust policy.

    ``error``: keeps this token out, or can never work. ``security``: lets in jobs or
    identities the policy evidently does not mean (another project, a look-alike branch,
    another identity provider, any AWS account). ``warning``: lets in more than it needs to,
    or leaves out a check (no ``aud`` condition, every project of a group). ``note``: worth
    knowing, nothing to fix (every branch of one project, a condition assumed to hold).
    """

    severity: Severity
    message: str


@dataclasses.dataclass
class TrustPolicyReport:
    """Whether a trust policy admits a token, and why (not), and whom else it admits."""

    admits: bool
    findings: list[Finding] = dataclasses.field(default_factory=list)

    def of_severity(self, severity: Severity) -> list[Finding]:
        return [f for f in self.findings if f.severity == severity]

    @property
    def passed(self) -> bool:
        """Admits this token, with no error, security or warning finding."""
        return self.admits and not any(f.severity in FAILING for f in self.findings)

    def text(self) -> str:
        """A human-readable summary, one finding per line."""
        verdict = "admits" if self.admits else "does not admit"
        head = f"The trust policy {verdict} this token."
        return "\n".join([head, *(f"{f.severity.upper()}: {f.message}" for f in self.findings)])


def provider_arn_in(policy: Mapping[str, Any], issuer: str) -> str | None:
    """The IAM OIDC provider for ``issuer`` that ``policy`` names as a Federated principal.

    Its partition (``aws``, ``aws-us-gov``, ``aws-cn``) and account are the policy's.
    """
    return _infer_provider(_statements(policy), provider_host(issuer))


def check_trust_policy(
    policy: Mapping[str, Any], claims: Mapping[str, Any], *, provider_arn: str | None = None
) -> TrustPolicyReport:
    """Evaluate ``policy`` for a token with ``claims`` as IAM would, and explain the outcome.

    ``provider_arn`` is the IAM OIDC provider the token is checked against; by default the
    policy's Federated principal for the token's issuer (whatever its partition). Conditions
    on request keys that a token cannot tell (``aws:SourceIp``, ``sts:RoleSessionName``...)
    are assumed to hold for this token. Every statement is also checked for whom else it
    lets in (see the module documentation).
    """
    issuer = claims.get("iss")
    host = provider_host(issuer) if isinstance(issuer, str) and issuer else None
    findings: list[Finding] = []
    statements = _statements(policy)
    wrong_host = False
    if provider_arn is not None:
        arn_host = _host_of(provider_arn)
        if host is not None and arn_host.lower() != host.lower():
            wrong_host = True
            findings.append(
                Finding(
                    "error",
                    f"The provider {provider_arn} is for {arn_host}, but the token was issued "
                    f"by {issuer}: AWS would look for a provider for {host}.",
                )
            )
        host = host or arn_host
    if host is None:
        raise ValueError("the claims have no 'iss' and no provider_arn was given")
    if provider_arn is None:
        provider_arn = _infer_provider(statements, host)
    # Without a named provider, Principal "*" may still admit: evaluate with a stand-in.
    job = _Request(
        ACTION,
        host,
        federated=provider_arn or f"arn:aws:iam::<role account>:oidc-provider/{host}",
        context=condition_context(claims, host),
    )
    admits = bool(_decide(statements, job)) and not wrong_host

    for key in sorted(_request_keys(statements, host)):
        findings.append(
            Finding(
                "note",
                f"A condition on {key} depends on the request, not on the token; it was "
                "assumed to hold for this job.",
            )
        )
    if not statements:
        findings.append(Finding("error", "The policy has no statements."))
    if provider_arn is None and not admits:
        findings.append(
            Finding(
                "error",
                f"No statement has an IAM OIDC provider for {host} as its Federated principal "
                f"(arn:aws:iam::<role account>:oidc-provider/{host}).",
            )
        )
    for number, statement in enumerate(statements, start=1):
        label = _label(statement, number)
        result = _evaluate(statement, job, assume_request_keys=True)
        findings += _key_mistakes(
            statement, label, host, claims, for_this_provider=result.principal
        )
        if statement.get("Effect") == "Deny":
            if result.applies:
                findings.append(Finding("error", f"{label} denies this token."))
            continue
        if statement.get("Effect") != "Allow":
            findings.append(Finding("error", f"{label} has an Effect other than Allow or Deny."))
            continue
        if not admits:
            findings += _why_not(
                statement, label, result=result, provider_arn=provider_arn, host=host, claims=claims
            )
    findings += _exposure(statements, job, claims)
    ordered = sorted(_unique(findings), key=lambda f: _RANK[f.severity])
    return TrustPolicyReport(admits=admits, findings=ordered)


def _unique(findings: list[Finding]) -> list[Finding]:
    return list(dict.fromkeys(findings))


def _label(statement: Mapping[str, Any], number: int) -> str:
    sid = statement.get("Sid")
    return f"Statement {number}" + (f" ({sid})" if sid else "")


def _infer_provider(statements: list[Mapping[str, Any]], host: str) -> str | None:
    for statement in statements:
        for arn in _federated(statement.get("Principal")):
            match = _PROVIDER_ARN.fullmatch(arn)
            if match is not None and match["host"].lower() == host.lower():
                return arn
    return None


def _request_keys(statements: list[Mapping[str, Any]], host: str) -> set[str]:
    """Condition keys of the request (``aws:``, ``sts:``), not of any identity provider."""
    keys: set[str] = set()
    for statement in statements:
        conditions = statement.get("Condition")
        if not isinstance(conditions, Mapping):
            continue
        for tests in conditions.values():
            if isinstance(tests, Mapping):
                keys |= {str(k) for k in tests if not _provider_key(str(k), host)}
    return keys


def _provider_key(key: str, host: str) -> bool:
    """Whether ``key`` names an identity provider's claim (``<host>:<claim>``)."""
    prefix = key.rpartition(":")[0]
    return prefix.lower() == host.lower() or "." in prefix


def _show(value: object) -> str:
    return json.dumps(value if not isinstance(value, tuple) else list(value))


def _key_mistakes(
    statement: Mapping[str, Any],
    label: str,
    host: str,
    claims: Mapping[str, Any],
    *,
    for_this_provider: bool,
) -> list[Finding]:
    """Conditions that cannot work whatever the token: wrong keys, literal wildcards.

    A statement for another provider rightly tests that provider's keys: only statements
    whose principal covers this token are checked.
    """
    findings: list[Finding] = []
    conditions = statement.get("Condition")
    if not isinstance(conditions, Mapping) or not for_this_provider:
        return findings
    for operator, tests in conditions.items():
        if not isinstance(tests, Mapping):
            findings.append(Finding("error", f"{label}: {operator} must map keys to values."))
            continue
        _, base, _ = _split_operator(str(operator))
        for key, expected in tests.items():
            prefix, _, claim = str(key).rpartition(":")
            if not _provider_key(str(key), host):
                continue
            if base in ("StringEquals", "StringNotEquals") and any(
                has_wildcard(_as_string(v)) for v in _as_list(expected)
            ):
                findings.append(
                    Finding(
                        "error",
                        f"{label}: {operator} compares {key} literally, so the '*' or '?' in "
                        f"{_show(expected)} matches only itself. Use StringLike for patterns.",
                    )
                )
            if prefix.lower() != host.lower():
                findings.append(
                    Finding(
                        "error",
                        f"{label}: the condition key {key} is for the provider {prefix}, but "
                        f"this token comes from {host}: AWS never sets that key for it.",
                    )
                )
            elif claim.lower() not in CONTEXT_CLAIMS:
                always = condition_holds(str(operator), expected, None)
                outcome = (
                    "always holds and restricts nothing"
                    if always
                    else "can never hold, for any job"
                )
                token_value = claims.get(claim)
                seen = f" (this token has {claim}={_show(token_value)})" if token_value else ""
                findings.append(
                    Finding(
                        "warning" if always else "error",
                        f"{label}: AWS shows trust policies only the sub and aud claims of a "
                        f"GitLab token, not {claim}{seen}, so {operator} on {key} {outcome}. "
                        "Express refs through the sub condition instead.",
                    )
                )
    return findings


def _why_not(
    statement: Mapping[str, Any],
    label: str,
    *,
    result: _StatementResult,
    provider_arn: str | None,
    host: str,
    claims: Mapping[str, Any],
) -> list[Finding]:
    findings: list[Finding] = []
    if not result.principal:
        named = _federated(statement.get("Principal"))
        principal = statement.get("Principal")
        if not named:
            text = (
                f"{label}: its Principal {_show(principal)} is not a Federated principal; "
                f'web identity needs {{"Federated": "{provider_arn or "<provider ARN>"}"}}.'
            )
        else:
            text = (
                f"{label}: its Federated principal {_show(named)} is not the IAM OIDC provider "
                f"for this token ({provider_arn or f'one for {host}'})."
            )
            if provider_arn is not None:
                want = _PROVIDER_ARN.fullmatch(provider_arn)
                for arn in named:
                    have = _PROVIDER_ARN.fullmatch(arn)
                    if want and have and have["host"].lower() == want["host"].lower():
                        text += (
                            f" It names a provider in account {have['account']}; the provider "
                            "must be in the role's own account."
                        )
        findings.append(Finding("error", text))
    if not result.action:
        actions = statement.get("Action")
        text = f"{label}: its Action {_show(actions)} does not include {ACTION}."
        if any(str(a).lower() == "sts:assumerole" for a in _as_list(actions)):
            text += " sts:AssumeRole is a different action."
        findings.append(Finding("error", text))
    if result.malformed:
        findings.append(Finding("error", f"{label}: its Condition block is malformed."))
    for test in result.failed:
        findings.append(Finding("error", _failed_test_text(label, test, host, claims)))
    return findings


def _failed_test_text(label: str, test: _FailedTest, host: str, claims: Mapping[str, Any]) -> str:
    actual = (
        "nothing"
        if test.actual is None
        else _show(test.actual[0] if len(test.actual) == 1 else test.actual)
    )
    text = (
        f"{label}: {test.operator} on {test.key} expects {_show(test.expected)}; "
        f"this token has {actual}."
    )
    claim = test.key.rpartition(":")[2].lower()
    if claim == "aud":
        text += (
            " The aud condition must equal the 'aud:' under id_tokens: in .gitlab-ci.yml "
            "(and be an audience of the IAM OIDC provider)."
        )
    elif claim == "sub" and test.actual is not None:
        text += _sub_hint(test.expected, claims)
    return text


def _sub_hint(expected: object, claims: Mapping[str, Any]) -> str:
    own = sub_components(str(claims.get("sub", "")))
    if own is None:
        return ""
    hints: list[str] = []
    for value in _as_list(expected):
        want = sub_components(_as_string(value))
        if want is None:
            continue
        if tuple(want) != tuple(own):
            hints.append(
                f"it is written for the sub components {','.join(want)}, but this project's "
                f"sub has {','.join(own)} (ci_id_token_sub_claim_components)"
            )
            continue
        kind = own.get("ref_type", "ref")
        differs = {
            "project_path": "it admits project {want}, this job is in {own}",
            "ref_type": "it admits ref_type {want}, this job runs on a {own}",
            "ref": "it admits ref {want}, this job runs on " + kind + " {own}",
        }
        for name, text in differs.items():
            if name in want and not _wildcard(want[name]).fullmatch(own[name]):
                hints.append(text.format(want=want[name], own=own[name]))
                break
    return (" (" + "; ".join(dict.fromkeys(hints)) + ")") if hints else ""


# -- whom else a policy lets in ---------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class _SubProbe:
    """A ``sub`` a pattern admits, and what it stands for (``text`` follows "it lets in")."""

    severity: Severity
    category: str
    text: str
    sub: str


@dataclasses.dataclass(frozen=True)
class _Probe:
    """An outsider's request, and the sentence that says what getting in would mean."""

    severity: Severity
    category: str
    text: str
    example: str
    request: _Request


_VALID_PROJECT = re.compile(r"[\w][\w.-]*(?:/[\w][\w.-]*)+", re.ASCII)


def _fill(pattern: str, first: str, rest: str = "x") -> str:
    """``pattern`` with its first wildcard replaced by ``first`` and the others by ``rest``.

    A ``?`` takes one character of its filler.
    """
    out: list[str] = []
    filler = first
    for char in pattern:
        if char in _WILDCARDS:
            out.append(filler[:1] if char == "?" else filler)
            filler = rest
        else:
            out.append(char)
    return "".join(out)


def _glued(value: str) -> bool:
    """Whether the first wildcard of ``value`` extends a name (``main*``, ``*main``).

    ``release/*``, ``v1.*`` and ``v*`` start a new part of the name: GitLab can protect
    exactly that pattern. ``main*`` also matches ``main-evil``, which a protection rule for
    ``main`` does not cover.
    """
    index = _first_wildcard(value)
    before, after = value[:index], value[index + 1 :]
    if before:
        return len(before) >= 2 and before[-1].isalnum()
    return bool(after) and after[0].isalnum()


def _benign_type(ref_type: str | None) -> str:
    if ref_type is None or not has_wildcard(ref_type):
        return ref_type or "branch"
    return next((t for t in ("branch", "tag") if _wildcard(ref_type).fullmatch(t)), "branch")


def _approximate(pattern: str) -> dict[str, str]:
    """Components for a pattern whose wildcards span several (``project_path:g/p:*``).

    The literal text before the first wildcard is what the pattern pins; the rest is
    read as "anything".
    """
    literal = pattern[: _first_wildcard(pattern)]
    prefix = "project_path:"
    if not literal.startswith(prefix):
        project = "*"
    else:
        rest = literal[len(prefix) :]
        project = rest.split(":", 1)[0] if ":" in rest else rest + "*"
    return {"project_path": project, "ref_type": "*", "ref": "*"}


def _sub_probes(value: str, base: str, own_ref_type: str | None) -> list[_SubProbe]:
    """The subs that one ``sub`` condition value admits beyond what it evidently means."""
    exact = sub_components(value)
    if base != "StringLike" or not has_wildcard(value):
        if exact is None:
            return []
        probes = _shape_notes(exact, value)
        ref = exact.get("ref", "")
        if base == "StringEqualsIgnoreCase" and ref.swapcase() != ref:
            text = (
                f"refs whose name differs from {ref} only in case ({base} ignores case, Git "
                "and GitLab's protection rules do not)"
            )
            probes.insert(
                0,
                _SubProbe(
                    "security", "ref-case", text, format_sub({**exact, "ref": ref.swapcase()})
                ),
            )
        return probes
    pattern = _SubPattern(value, exact or _approximate(value), own_ref_type)
    found = pattern.project_probes()
    if not any(p.category == "other-group" for p in found):
        found += pattern.ref_type_probes() + pattern.ref_probes()
    if exact is not None:
        found += _shape_notes(exact, value)
    return found


class _SubPattern:
    """A ``StringLike`` sub pattern, read component by component."""

    def __init__(self, value: str, components: dict[str, str], own_ref_type: str | None) -> None:
        self.value = value
        self.components = components
        self.own_ref_type = own_ref_type
        self.matcher = _wildcard(value)
        tail = value.rpartition(":")[2]
        self.fallback_refs = ["x", "main"] + ([tail] if tail and not has_wildcard(tail) else [])

    def _example(self, **changes: str) -> str | None:
        """A sub in the pattern's shape with ``changes``, if the pattern admits it."""
        project = _fill(self.components["project_path"], "x")
        if not _VALID_PROJECT.fullmatch(project):
            project = "group/project"
        ref = self.components.get("ref")
        for fallback in self.fallback_refs:
            values = {
                "project_path": project,
                "ref_type": _benign_type(self.components.get("ref_type")),
                "ref": _fill(ref, fallback) if ref else fallback,
                **changes,
            }
            sub = format_sub({name: values[name] for name in self.components})
            if self.matcher.fullmatch(sub):
                return sub
        return None

    def _probe(
        self, severity: Severity, category: str, text: str, **changes: str
    ) -> list[_SubProbe]:
        sub = self._example(**changes)
        return [] if sub is None else [_SubProbe(severity, category, text, sub)]

    def project_probes(self) -> list[_SubProbe]:
        project = self.components["project_path"]
        if not has_wildcard(project):
            return []
        index = _first_wildcard(project)
        literal = project[:index]
        if "/" not in literal:
            text = (
                f"projects of groups whose name merely starts with {literal!r} (anyone can "
                "create such a group on a shared instance)"
                if literal
                else "projects of any group on the instance"
            )
            for filler in ("-evil/project", "-evil", _OUTSIDER_GROUP, "/project"):
                candidate = _fill(project, filler)
                if _VALID_PROJECT.fullmatch(candidate) and candidate.split("/")[0] != literal:
                    return self._probe("security", "other-group", text, project_path=candidate)
            return []
        rest = project[index + 1 :]
        whole_segment = project[index] == "*" and literal.endswith("/") and rest[:1] in ("", "/")
        if whole_segment and not has_wildcard(rest):
            text = (
                f"every project of {literal.rstrip('/')} and its subgroups, including any "
                "new project that someone allowed to create projects there adds"
            )
            return self._probe(
                "warning", "group-wide", text, project_path=_fill(project, "new-project")
            )
        text = f"other projects whose path merely starts with {literal!r}"
        return self._probe(
            "security", "project-sibling", text, project_path=_fill(project, "-evil")
        ) + self._probe("security", "project-nested", text, project_path=_fill(project, "/evil"))

    def ref_type_probes(self) -> list[_SubProbe]:
        ref_type = self.components.get("ref_type")
        if ref_type is None or not has_wildcard(ref_type):
            return []
        if not all(_wildcard(ref_type).fullmatch(t) for t in ("branch", "tag")):
            return []
        ref = self.components.get("ref")
        if ref is None or ref == "*":
            project = self.components["project_path"]
            text = f"every branch and every tag of {project}"
            return self._probe("note", "every-ref", text, ref_type="tag")
        other = "branch" if self.own_ref_type == "tag" else "tag"
        meant = "tag" if other == "branch" else "branch"
        text = (
            f"a {other} with the name the pattern means for a {meant} (ref_type {ref_type} "
            f"matches both, and the {meant}'s protection rule does not cover a {other})"
        )
        return self._probe("security", "ref-type", text, ref_type=other)

    def ref_probes(self) -> list[_SubProbe]:
        ref = self.components.get("ref")
        if ref is None or not has_wildcard(ref):
            return []
        ref_type = self.components.get("ref_type")
        kind = ref_type if ref_type in ("branch", "tag") else "ref"
        kinds = {"branch": "branches", "tag": "tags"}.get(kind, "refs")
        project = self.components["project_path"]
        if ref == "*":
            return self._probe("note", "every-ref", f"every {kind} of {project}", ref="any")
        if _glued(ref):
            index = _first_wildcard(ref)
            if index:
                stem, how, filler = ref[:index], "starts", "-evil"
            else:
                stem, how, filler = ref[1:], "ends", "evil-"
            text = (
                f"{kinds} whose name merely {how} with {stem!r}, which a protection rule for "
                f"{stem} does not cover"
            )
            return self._probe("security", "ref-prefix", text, ref=_fill(ref, filler))
        text = (
            f"every {kind} matching {ref}: protect exactly that pattern in GitLab, so "
            "only maintainers can create such refs"
        )
        return self._probe("note", "ref-pattern", text, ref=_fill(ref, "evil"))


def _first_wildcard(value: str) -> int:
    return min(value.find(c) for c in _WILDCARDS if c in value)


def _shape_notes(components: Mapping[str, str], value: str) -> list[_SubProbe]:
    """What a customised sub shape cannot say, whatever the policy does."""
    names = ",".join(components)
    if "ref_type" not in components and not has_wildcard(components["ref"]):
        return [
            _SubProbe(
                "note",
                "no-ref-type",
                f"a tag named {components['ref']} as well as the branch: this project's sub "
                f"({names}) does not say which kind of ref it is, so protect the tag name too",
                value,
            )
        ]
    if "ref" not in components and not has_wildcard(components["ref_type"]):
        return [
            _SubProbe(
                "note",
                "every-ref",
                f"every {components['ref_type']} of {components['project_path']}: this "
                f"project's sub ({names}) has no ref",
                value,
            )
        ]
    return []


def _sub_tests(statement: Mapping[str, Any], host: str) -> list[tuple[str, str]]:
    """(operator base, value) of the positive tests on ``<host>:sub`` in ``statement``."""
    tests: list[tuple[str, str]] = []
    conditions = statement.get("Condition")
    if not isinstance(conditions, Mapping):
        return tests
    sub_key = f"{host}:sub".lower()
    for operator, keys in conditions.items():
        _, base, _ = _split_operator(str(operator))
        if base not in ("StringEquals", "StringEqualsIgnoreCase", "StringLike"):
            continue
        if not isinstance(keys, Mapping):
            continue
        for key, expected in keys.items():
            if str(key).lower() == sub_key:
                tests += [(base, _as_string(v)) for v in _as_list(expected)]
    return tests


def _outsider_token(federated: str) -> tuple[str, str, str, str]:
    """(host, sub, aud, who) of a token from another web identity provider."""
    match = _PROVIDER_ARN.fullmatch(federated)
    host = match["host"] if match else federated
    if host == _GITHUB:
        return (
            host,
            "repo:outsider/repo:ref:refs/heads/main",
            "sts.amazonaws.com",
            ("any GitHub Actions workflow of any repository"),
        )
    who = WELL_KNOWN_PROVIDERS.get(host, f"any identity of {host}")
    return host, "outsider", _OUTSIDER_AUDIENCE, who


def _probes(
    statements: list[Mapping[str, Any]], index: int, job: _Request, claims: Mapping[str, Any]
) -> list[_Probe]:
    """The outsiders' requests worth trying against statement ``index``."""
    statement = statements[index]
    host = job.host
    provider_arn = job.federated or ""
    arn = _PROVIDER_ARN.fullmatch(provider_arn)
    partition, account = (arn["partition"], arn["account"]) if arn else ("aws", "<role account>")
    principal = statement.get("Principal")
    everyone = principal == "*" or "NotPrincipal" in statement
    federated = _federated(principal)
    probes: list[_Probe] = []

    # AWS principals calling sts:AssumeRole.
    aws = _aws_principals(principal)
    if everyone or "*" in aws:
        outsider = f"arn:{partition}:iam::{_OTHER_ACCOUNT}:role/outsider"
        request = _Request(ASSUME_ROLE, host, aws=outsider)
        probes.append(
            _Probe(
                "security",
                "any-aws",
                f"every IAM user and role of every AWS account through {ASSUME_ROLE}",
                f"{outsider}",
                request,
            )
        )
    for value in aws:
        if value != "*":
            account_of = value.split(":")[4] if value.count(":") >= 5 else value
            request = _Request(
                ASSUME_ROLE, host, aws=value if ":" in value else f"arn:aws:iam::{value}:root"
            )
            text = f"{value} (account {account_of}) through {ASSUME_ROLE}: make sure it should"
            probes.append(_Probe("note", f"aws:{value}", text, value, request))

    # Tokens of other web identity providers.
    others = [f for f in federated if f not in ("*", provider_arn)]
    if everyone or "*" in federated:
        others += [*WELL_KNOWN_PROVIDERS, f"arn:{partition}:iam::{account}:oidc-provider/{_GITHUB}"]
    for other in dict.fromkeys(others):
        other_host, sub, aud, who = _outsider_token(other)
        if other_host.lower() == host.lower():
            continue  # the same instance's provider in another account: a _why_not error
        context = {f"{other_host}:sub".lower(): [sub], f"{other_host}:aud".lower(): [aud]}
        request = _Request(ACTION, host, federated=other, context=context)
        text = f"tokens of {other}: {who}"
        probes.append(_Probe("security", f"idp:{other}", text, f"sub {sub!r}", request))

    # Tokens of this GitLab instance with other subs.
    own_sub = str(claims.get("sub", ""))
    own = sub_components(own_sub)
    own_ref_type = own.get("ref_type") if own else None
    aud = next(iter(job.context.get(f"{host}:aud".lower(), [])), _OUTSIDER_AUDIENCE)
    tests = _sub_tests(statement, host)
    for base, value in tests:
        for sub_probe in _sub_probes(value, base, own_ref_type):
            request = job.with_claims(sub=sub_probe.sub, aud=aud)
            probes.append(
                _Probe(
                    sub_probe.severity,
                    sub_probe.category,
                    sub_probe.text,
                    f"sub {sub_probe.sub!r}",
                    request,
                )
            )
    shape = tuple(own) if own else DEFAULT_SUB_SHAPE
    outsider_values = {"project_path": _OUTSIDER_GROUP, "ref_type": "branch", "ref": "main"}
    outsider_sub = format_sub({name: outsider_values[name] for name in shape})
    text = (
        f"projects of any group on {host}"
        if tests
        else f"any project on {host}: it does not restrict {host}:sub"
    )
    probes.append(
        _Probe(
            "security",
            "other-group",
            text,
            f"sub {outsider_sub!r}",
            job.with_claims(sub=outsider_sub, aud=aud),
        )
    )

    # The same jobs with a token minted for another audience.
    candidates = [own_sub] + [
        p.sub for base, value in tests for p in _sub_probes(value, base, own_ref_type)
    ]
    for sub in candidates:
        admitted = job.with_claims(sub=sub, aud=aud)
        if index in _decide(statements, admitted):
            probes.append(
                _Probe(
                    "warning",
                    "aud",
                    f"tokens that jobs requested for any audience: it does not pin {host}:aud "
                    "(AWS still demands an audience the IAM OIDC provider lists)",
                    f"aud {_OUTSIDER_AUDIENCE!r}",
                    job.with_claims(sub=sub, aud=_OUTSIDER_AUDIENCE),
                )
            )
            break
    return probes


def _exposure(
    statements: list[Mapping[str, Any]], job: _Request, claims: Mapping[str, Any]
) -> list[Finding]:
    """Every outsider's request the whole policy lets in, named by the statement that does."""
    findings: list[Finding] = []
    seen: set[tuple[int, str]] = set()
    for index, statement in enumerate(statements):
        if statement.get("Effect") != "Allow":
            continue
        for probe in _probes(statements, index, job, claims):
            severity = probe.severity
            suffix = ""
            allowing = _decide(statements, probe.request, allow_assumes=False)
            if not allowing:
                allowing = _decide(statements, probe.request, deny_assumes=False)
                if not allowing:
                    continue
                keys = sorted(
                    {
                        test.key
                        for i in allowing
                        for test in _evaluate(
                            statements[i], probe.request, assume_request_keys=False
                        ).failed
                    }
                )
                if severity != "note":
                    severity = "warning"
                suffix = f", unless its conditions on {', '.join(keys)} stop them"
            # Another statement that lets the request in reports it with its own probes.
            if index not in allowing or (index, probe.category) in seen:
                continue
            seen.add((index, probe.category))
            label = _label(statement, index + 1)
            findings.append(
                Finding(
                    severity, f"{label} lets in {probe.text}; for example {probe.example}{suffix}."
                )
            )
        principal = statement.get("Principal")
        everyone = principal == "*" or "*" in _federated(principal)
        if everyone and not any(key[0] == index and key[1] != "aud" for key in seen):
            findings.append(
                Finding(
                    "note",
                    f"{_label(statement, index + 1)} trusts every principal "
                    f"({_show(principal)}) and relies on its conditions alone; name the "
                    f'provider instead: {{"Federated": "{job.federated}"}}.',
                )
            )
    return findings
