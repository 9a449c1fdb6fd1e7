"""Whom else a trust policy lets in.

For each Allow statement, the requests an outsider could make (a token of another project,
of a look-alike ref, of another identity provider, for another audience; an
``sts:AssumeRole`` call from another AWS account) are evaluated against the whole policy,
Deny statements included: each that gets in is a finding, with the example that got in.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from gitlab_botocore.explanations import DEFAULT_SUB_SHAPE, format_sub, sub_components

from .evaluation import (
    _as_list,
    _as_string,
    _aws_principals,
    _decide,
    _evaluate,
    _federated,
    _Request,
    _split_operator,
)
from .naming import _PROVIDER_ARN, ACTION, ASSUME_ROLE
from .report import Finding, Severity, _label, _show
from .sub_patterns import _OUTSIDER_GROUP, _sub_probes

__all__ = ["WELL_KNOWN_PROVIDERS"]

# Web identity providers STS accepts without an IAM OIDC provider in the account: a trust
# policy that admits every federated principal admits their users too.
WELL_KNOWN_PROVIDERS = {
    "accounts.google.com": "any Google account",
    "cognito-identity.amazonaws.com": "any Amazon Cognito identity",
    "graph.facebook.com": "any Facebook user",
    "www.amazon.com": "any Login with Amazon user",
}
_GITHUB = "token.actions.githubusercontent.com"
# What an outsider's request carries.
_OTHER_ACCOUNT = "999999999999"
_OUTSIDER_AUDIENCE = "https://outsider.example"


@dataclasses.dataclass(frozen=True)
class _Probe:
    """An outsider's request, and the sentence that says what getting in would mean."""

    severity: Severity
    category: str
    text: str
    example: str
    request: _Request


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
