"""Evaluate a trust policy as IAM does for ``AssumeRole*`` requests.

Condition operators (with ``IfExists``, ``ForAnyValue:``/``ForAllValues:`` and negation),
statements (``Principal "*"``, ``NotPrincipal``, ``NotAction``, malformed blocks) and the
decision (any applicable Deny wins, else any applicable Allow). The underscore names are
shared with the linting modules of this package.
"""

from __future__ import annotations

import dataclasses
import logging
import re
from collections.abc import Mapping
from typing import Any

from .naming import ACTION, CONTEXT_CLAIMS, _host_of

__all__ = ["claim_values", "condition_context", "condition_holds", "trust_policy_allows"]

logger = logging.getLogger(__name__)

_POSITIVE = {
    "StringEquals": "StringEquals",
    "StringNotEquals": "StringEquals",
    "StringEqualsIgnoreCase": "StringEqualsIgnoreCase",
    "StringNotEqualsIgnoreCase": "StringEqualsIgnoreCase",
    "StringLike": "StringLike",
    "StringNotLike": "StringLike",
}


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


def claim_values(value: object) -> list[str]:
    """A claim's or condition's values as IAM compares them: a list gives several.

    Booleans read ``true``/``false``, as in JSON.
    """
    return [_as_string(item) for item in _as_list(value)]


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
    wanted = claim_values(expected)

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

    Only ``sub`` and ``aud``: see the package documentation.
    """
    return {
        f"{host}:{name}".lower(): claim_values(claims[name])
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


def _provider_key(key: str, host: str) -> bool:
    """Whether ``key`` names an identity provider's claim (``<host>:<claim>``)."""
    prefix = key.rpartition(":")[0]
    return prefix.lower() == host.lower() or "." in prefix


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
