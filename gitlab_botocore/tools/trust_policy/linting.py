"""Check a trust policy for a token: does it admit this job, why not, and whom else.

:func:`check_trust_policy` evaluates the policy for the token's request
(:mod:`.evaluation`), explains each statement that keeps the token out, flags conditions
that cannot work for any GitLab token, and adds what :mod:`.outsiders` finds.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from gitlab_botocore.explanations import provider_host, sub_components

from .evaluation import (
    _as_list,
    _as_string,
    _decide,
    _evaluate,
    _FailedTest,
    _federated,
    _provider_key,
    _Request,
    _split_operator,
    _StatementResult,
    _statements,
    _wildcard,
    condition_context,
    condition_holds,
)
from .naming import _PROVIDER_ARN, ACTION, CONTEXT_CLAIMS, _host_of, has_wildcard
from .outsiders import _exposure
from .report import _RANK, Finding, TrustPolicyReport, _label, _show

__all__ = ["check_trust_policy", "provider_arn_in"]


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
