"""IAM trust policies for GitLab ID tokens: build them, evaluate them, explain them.

One implementation of "the trust policy for these claims", shared by the
``gitlab-botocore trust-policy`` command, the local STS of :mod:`gitlab_botocore.testing.sts`
and the tests of the CloudFormation and Terraform examples.

What AWS can see of a GitLab token: for an OIDC provider other than the few AWS knows by
name (GitHub, Google, CircleCI, Oracle Cloud), STS puts only the ``sub`` and ``aud`` claims
into the request context, as ``<provider host>:sub`` and ``<provider host>:aud``. Conditions
on any other claim (``ref_protected``, ``environment``, ``project_path``...) test a key that
is absent: ``StringEquals`` on it never holds. So everything a trust policy can say about a
GitLab job, it says through ``sub``, by default
``project_path:<group>/<project>:ref_type:<branch|tag>:ref:<name>``.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import re
from collections.abc import Iterable, Mapping
from typing import Any, Literal
from urllib.parse import urlsplit

__all__ = [
    "ACTION",
    "CONTEXT_CLAIMS",
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
    "provider_host",
    "subject_pattern",
    "trust_policy_allows",
]

logger = logging.getLogger(__name__)

ACTION = "sts:AssumeRoleWithWebIdentity"
POLICY_VERSION = "2012-10-17"
# The only claims of a GitLab token that STS exposes as condition keys (see the module doc).
CONTEXT_CLAIMS = ("aud", "sub")
REF_TYPES = ("branch", "tag", "*")

Severity = Literal["error", "warning", "security"]

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


class UnenforceableConditionError(ValueError):
    """A condition was asked for that AWS cannot check for a GitLab token."""


# -- names ---------------------------------------------------------------------------------


def provider_host(issuer: str | None) -> str:
    """The IAM OIDC provider's name for an issuer: its URL without the scheme."""
    if not issuer:
        return "<issuer>"
    parts = urlsplit(issuer)
    return (parts.netloc + parts.path).rstrip("/") or issuer


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


def subject_pattern(project_path: str, *, ref_type: str = "branch", ref: str = "*") -> str:
    """The ``sub`` of GitLab's default shape for a project (or ``group/*``) and a ref pattern.

    The top-level group must be spelled out: on a shared instance anyone can create a group
    whose name matches ``my*``.
    """
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
    return f"project_path:{project_path}:ref_type:{ref_type}:ref:{ref}"


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
    ``release/*``); ``any_branch`` admits every branch of the project.
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
        project = str(token_claims.get("project_path", ""))
        own_type = str(token_claims.get("ref_type", ""))
        own_ref = str(token_claims.get("ref", ""))
        if sub != f"project_path:{project}:ref_type:{own_type}:ref:{own_ref}":
            raise ValueError(
                f"this token's sub ({sub}) is not in GitLab's default shape (the project "
                "customises it with ci_id_token_sub_claim_components): write the pattern "
                "for the refs you want by hand"
            )
        subject = subject_pattern(
            project,
            ref_type=ref_type if ref_type is not None else own_type,
            ref=ref if ref is not None else own_ref,
        )
    return build_trust_policy(
        provider_arn=provider_arn_for(issuer, account_id, partition=partition),
        audience=audience,
        subjects=[subject],
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


def _action_matches(actions: object) -> bool:
    return any(
        isinstance(a, str) and _wildcard(a, ignore_case=True).fullmatch(ACTION) is not None
        for a in _as_list(actions)
    )


def _federated(principal: object) -> list[str]:
    if not isinstance(principal, Mapping):
        return []
    return [str(p) for p in _as_list(principal.get("Federated", [])) if p is not None]


def _evaluate(
    statement: Mapping[str, Any],
    provider_arn: str | None,
    context: Mapping[str, list[str]],
    assume_holds: Iterable[str] = (),
) -> _StatementResult:
    skipped = {k.lower() for k in assume_holds}
    failed: list[_FailedTest] = []
    conditions = statement.get("Condition")
    malformed = conditions is not None and not isinstance(conditions, Mapping)
    if isinstance(conditions, Mapping):
        for operator, tests in conditions.items():
            if not isinstance(tests, Mapping):
                malformed = True
                continue
            for key, expected in tests.items():
                lowered = str(key).lower()
                if lowered in skipped:
                    continue
                actual = context.get(lowered)
                if not condition_holds(str(operator), expected, actual):
                    failed.append(_FailedTest(str(operator), str(key), expected, actual))
    return _StatementResult(
        principal=provider_arn is not None
        and provider_arn in _federated(statement.get("Principal")),
        action=_action_matches(statement.get("Action")),
        failed=tuple(failed),
        malformed=malformed,
    )


def _statements(policy: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    return [s for s in _as_list(policy.get("Statement", [])) if isinstance(s, Mapping)]


def trust_policy_allows(
    policy: Mapping[str, Any], provider_arn: str, context: Mapping[str, list[str]]
) -> bool:
    """Whether ``policy`` lets this provider's token assume the role.

    ``context`` maps lower-cased condition keys to their values (see
    :func:`condition_context`). A matching Deny wins.
    """
    return _allows(policy, provider_arn, context)


def _allows(
    policy: Mapping[str, Any],
    provider_arn: str | None,
    context: Mapping[str, list[str]],
    assume_holds: Iterable[str] = (),
) -> bool:
    allowed = False
    for statement in _statements(policy):
        if not _evaluate(statement, provider_arn, context, assume_holds).applies:
            continue
        effect = statement.get("Effect")
        if effect == "Deny":
            return False
        allowed = allowed or effect == "Allow"
    return allowed


# -- explaining ----------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Finding:
    """One thing worth knowing about a trust policy: an ``error`` that keeps this token out,
    a ``warning``, or a ``security`` problem (jobs outside the intended ones get in)."""

    severity: Severity
    message: str


@dataclasses.dataclass
class TrustPolicyReport:
    """Whether a trust policy admits a token, and why (not)."""

    admits: bool
    findings: list[Finding] = dataclasses.field(default_factory=list)

    def of_severity(self, severity: Severity) -> list[Finding]:
        return [f for f in self.findings if f.severity == severity]

    def text(self) -> str:
        """A human-readable summary, one finding per line."""
        verdict = "admits" if self.admits else "does not admit"
        head = f"The trust policy {verdict} this token."
        return "\n".join([head, *(f"{f.severity.upper()}: {f.message}" for f in self.findings)])


def check_trust_policy(
    policy: Mapping[str, Any], claims: Mapping[str, Any], *, provider_arn: str | None = None
) -> TrustPolicyReport:
    """Evaluate ``policy`` for a token with ``claims`` as IAM would, and explain the outcome.

    ``provider_arn`` is the IAM OIDC provider the token is checked against; by default the
    policy's Federated principal for the token's issuer. Conditions on request keys that a
    token cannot tell (``aws:SourceIp``, ``sts:RoleSessionName``...) are assumed to hold.
    """
    issuer = claims.get("iss")
    host = provider_host(issuer) if isinstance(issuer, str) and issuer else None
    findings: list[Finding] = []
    statements = _statements(policy)
    if provider_arn is not None:
        arn_host = _host_of(provider_arn)
        if host is not None and arn_host.lower() != host.lower():
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
    context = condition_context(claims, host)
    request_keys = _request_keys(statements, host)
    admits = _allows(policy, provider_arn, context, request_keys) and not any(
        f.severity == "error" for f in findings
    )

    for key in sorted(request_keys):
        findings.append(
            Finding(
                "warning",
                f"A condition on {key} depends on the request, not on the token; it was "
                "assumed to hold.",
            )
        )
    if not statements:
        findings.append(Finding("error", "The policy has no statements."))
    if provider_arn is None:
        findings.append(
            Finding(
                "error",
                f"No statement has an IAM OIDC provider for {host} as its Federated principal "
                f"(arn:aws:iam::<role account>:oidc-provider/{host}).",
            )
        )
    for number, statement in enumerate(statements, start=1):
        label = _label(statement, number)
        result = _evaluate(statement, provider_arn, context, request_keys)
        findings += _key_mistakes(statement, label, host, claims)
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
    findings += _security(statements, provider_arn, host)
    return TrustPolicyReport(admits=admits, findings=_unique(findings))


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
    statement: Mapping[str, Any], label: str, host: str, claims: Mapping[str, Any]
) -> list[Finding]:
    """Conditions that cannot work whatever the token: wrong keys, literal wildcards."""
    findings: list[Finding] = []
    conditions = statement.get("Condition")
    if not isinstance(conditions, Mapping):
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
    project = claims.get("project_path")
    ref_type = claims.get("ref_type")
    ref = claims.get("ref")
    if not (project and ref_type and ref):
        return ""
    hints: list[str] = []
    for value in _as_list(expected):
        parts = re.fullmatch(r"project_path:(.*):ref_type:(.*):ref:(.*)", _as_string(value))
        if parts is None:
            continue
        want_project, want_type, want_ref = parts.groups()
        if not _wildcard(want_project).fullmatch(str(project)):
            hints.append(f"it admits project {want_project}, this job is in {project}")
        elif not _wildcard(want_type).fullmatch(str(ref_type)):
            hints.append(f"it admits ref_type {want_type}, this job runs on a {ref_type}")
        elif not _wildcard(want_ref).fullmatch(str(ref)):
            hints.append(f"it admits ref {want_ref}, this job runs on {ref_type} {ref}")
    return (" (" + "; ".join(dict.fromkeys(hints)) + ")") if hints else ""


def _literal_namespace(value: str) -> bool:
    """Whether a ``sub`` pattern pins the top-level group (``project_path:<group>/...``)."""
    if not value.startswith("project_path:"):
        return not has_wildcard(value)
    project = value[len("project_path:") :]
    first_wildcard = min((project.find(c) for c in "*?" if c in project), default=len(project))
    return "/" in project[:first_wildcard]


def _security(
    statements: list[Mapping[str, Any]], provider_arn: str | None, host: str
) -> list[Finding]:
    findings: list[Finding] = []
    sub_key = f"{host}:sub".lower()
    for number, statement in enumerate(statements, start=1):
        if statement.get("Effect") != "Allow" or not _action_matches(statement.get("Action")):
            continue
        named = _federated(statement.get("Principal"))
        if not any(
            (m := _PROVIDER_ARN.fullmatch(arn)) and m["host"].lower() == host.lower()
            for arn in named
        ):
            continue
        label = _label(statement, number)
        restricting: list[str] = []
        conditions = statement.get("Condition")
        for operator, tests in conditions.items() if isinstance(conditions, Mapping) else []:
            qualifier, base, _ = _split_operator(str(operator))
            if base not in ("StringEquals", "StringEqualsIgnoreCase", "StringLike"):
                continue
            if qualifier == "ForAllValues:" or not isinstance(tests, Mapping):
                continue
            for key, expected in tests.items():
                if str(key).lower() == sub_key:
                    values = [_as_string(v) for v in _as_list(expected)]
                    if base != "StringLike":
                        restricting.append("literal")
                        continue
                    broad = [v for v in values if not _literal_namespace(v)]
                    if broad:
                        findings.append(
                            Finding(
                                "security",
                                f"{label}: the sub pattern {_show(broad)} does not pin the "
                                f"top-level group, so projects of other groups on {host} "
                                "can match it (anyone can create a group on a shared "
                                "instance). Spell out the group: project_path:mygroup/*.",
                            )
                        )
                    restricting.append("pattern")
        if not restricting:
            findings.append(
                Finding(
                    "security",
                    f"{label} does not restrict {host}:sub: any project on {host} can assume "
                    "this role. Add a sub condition naming your project and refs.",
                )
            )
    return findings
